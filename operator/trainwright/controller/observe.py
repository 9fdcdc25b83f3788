"""Pure readings of the children's state: launcher and pods -> what reconcile needs."""

from datetime import datetime

from trainwright.controller.constants import KUEUE_QUEUE_LABEL
from trainwright.controller.reconcile import LauncherState, parse_time

GPU_RESOURCE = "nvidia.com/gpu"


def _condition(obj: dict, type_: str) -> dict | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or []
                 if c.get("type") == type_ and c.get("status") == "True"), None)


def batch_job_state(job: dict | None) -> LauncherState:
    if job is None or job.get("metadata", {}).get("deletionTimestamp"):
        return LauncherState(exists=False)
    status = job.get("status") or {}
    failed = _condition(job, "Failed")
    complete = _condition(job, "Complete")
    return LauncherState(
        exists=True,
        uid=job["metadata"].get("uid", ""),
        active=status.get("active", 0) or 0,
        failures=status.get("failed", 0) or 0,
        succeeded=complete is not None,
        failed=failed is not None,
        suspended=bool((job.get("spec") or {}).get("suspend")),
        message=(failed or complete or {}).get("message", ""),
    )


# KubeRay's jobDeploymentStatus once a RayJob has failed for good. A Ray job that FAILED with
# retries left (spec.backoffLimit) goes to Retrying instead, with jobStatus still FAILED, and then
# New, on a new RayCluster: that attempt is a restart, counted in status.failed, not the end.
_RAY_FAILED_FOR_GOOD = ("Failed", "ValidationFailed")


def ray_job_state(ray_job: dict | None) -> LauncherState:
    """KubeRay RayJob: jobStatus SUCCEEDED/FAILED/STOPPED, jobDeploymentStatus Complete/Failed/Retrying/Suspended."""
    if ray_job is None or ray_job.get("metadata", {}).get("deletionTimestamp"):
        return LauncherState(exists=False)
    status = ray_job.get("status") or {}
    job_status = status.get("jobStatus", "")
    deployment = status.get("jobDeploymentStatus", "")
    return LauncherState(
        exists=True,
        uid=ray_job["metadata"].get("uid", ""),
        active=1 if job_status == "RUNNING" and deployment == "Running" else 0,
        failures=status.get("failed", 0) or 0,
        succeeded=job_status == "SUCCEEDED",
        failed=deployment in _RAY_FAILED_FOR_GOOD or (deployment == "Complete" and job_status != "SUCCEEDED"),
        # Kueue suspends and un-suspends spec.suspend; KubeRay follows in jobDeploymentStatus.
        suspended=deployment == "Suspended" or bool((ray_job.get("spec") or {}).get("suspend")),
        message=status.get("message", ""),
    )


def owned_workload(workloads: list[dict], owner_uid: str) -> dict | None:
    """Kueue's Workload for the launcher with this UID: the one it owns."""
    return next((w for w in workloads if owner_uid and any(
        o.get("uid") == owner_uid for o in (w.get("metadata") or {}).get("ownerReferences") or [])), None)


# The Workload's conditions that say why it still waits, in the order they matter.
_WAITING_CONDITIONS = (("Evicted", "True"), ("QuotaReserved", "False"), ("Admitted", "False"))


def queued_message(workload: dict | None, queue: str | None) -> str:
    """Why a suspended launcher waits, in Kueue's words: its Workload's condition message
    (e.g. QuotaReserved False: "couldn't assign flavors to pod set main: insufficient unused
    quota for nvidia.com/gpu in flavor default-flavor, 8 more needed")."""
    if workload is None:
        return (f"queued in Kueue LocalQueue {queue!r}: waiting for Kueue to make its Workload" if queue
                else "the launcher is suspended (queued)")
    name = workload["metadata"].get("name", "")
    queue = (workload.get("spec") or {}).get("queueName") or queue
    conditions = {c.get("type"): c for c in (workload.get("status") or {}).get("conditions") or []}
    for type_, status in _WAITING_CONDITIONS:
        condition = conditions.get(type_)
        if condition and condition.get("status") == status and condition.get("message"):
            return f"queued in Kueue LocalQueue {queue!r} (Workload {name}): {condition['message']}"
    if (conditions.get("Admitted") or {}).get("status") == "True":
        return f"admitted by Kueue from LocalQueue {queue!r} (Workload {name}): starting"
    return f"queued in Kueue LocalQueue {queue!r} (Workload {name})"


def queue_label_patch(queue: str | None, workload: dict | None) -> dict | None:
    """A merge patch that moves a suspended launcher to the job's queue when the job's label
    names another LocalQueue than its Workload's (Kueue follows the launcher's label). None when
    they agree, when no Workload is there to compare with, or when the label was removed: a
    launcher taken out of Kueue would leave its Workload queued, so it stays where it is."""
    if not queue or workload is None or (workload.get("spec") or {}).get("queueName") == queue:
        return None
    return {"metadata": {"labels": {KUEUE_QUEUE_LABEL: queue}}}


def pod_devices(pod: dict, cpu_job: bool) -> int:
    """GPUs the pod holds; a CPU job counts each pod as one worker."""
    if cpu_job:
        return 1
    return sum(int((c.get("resources") or {}).get("limits", {}).get(GPU_RESOURCE, 0))
               for c in (pod.get("spec") or {}).get("containers") or [])


def pod_run_window(pod: dict, now: datetime) -> tuple[datetime, datetime] | None:
    """When the pod held its devices: from the kubelet's start (image pulls included: the GPU is
    already taken) to its containers' last finish, or to now while it runs."""
    status = pod.get("status") or {}
    phase = status.get("phase")
    containers = status.get("containerStatuses") or []
    starts = [parse_time(s.get("state", {}).get("running", {}).get("startedAt")) for s in containers]
    start = parse_time(status.get("startTime")) or min([s for s in starts if s], default=None)
    if start is None or phase in (None, "Pending"):
        return None
    if phase == "Running":
        return start, now
    ends = [parse_time(s.get("state", {}).get("terminated", {}).get("finishedAt")) for s in containers]
    end = max([e for e in ends if e], default=None)
    return (start, end) if end else None


def pods_usage(pods: list[dict], cpu_job: bool, now: datetime) -> tuple[int, dict[str, float]]:
    """(running pods, device-seconds of each pod there now, by UID)."""
    running = sum(1 for p in pods if (p.get("status") or {}).get("phase") == "Running"
                  and not p["metadata"].get("deletionTimestamp"))
    seconds = {}
    for pod in pods:
        window = pod_run_window(pod, now)
        seconds[pod["metadata"]["uid"]] = (max(0.0, (window[1] - window[0]).total_seconds()) * pod_devices(pod, cpu_job)
                                           if window else 0.0)
    return running, seconds


def running_devices(pods: list[dict], cpu_job: bool) -> int:
    """Devices held by the pods running now: the rate the job's cost grows at."""
    return sum(pod_devices(p, cpu_job) for p in pods
               if (p.get("status") or {}).get("phase") == "Running" and not p["metadata"].get("deletionTimestamp"))


# Container waiting reasons that say what the pod lacks (a Secret or ConfigMap not there yet:
# `secret "s3-creds" not found`), as opposed to the ordinary ones of a starting pod.
_WAITING_FOR_CONFIG = ("CreateContainerConfigError", "CreateContainerError")


def waiting_reason(pods: list[dict]) -> str:
    """Why a pod is not running yet, as the scheduler or kubelet put it ('' when none says)."""
    for pod in pods:
        status = pod.get("status") or {}
        if status.get("phase") not in (None, "Pending"):
            continue
        for condition in status.get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                return f"{condition.get('reason', 'Unschedulable')}: {condition.get('message', '')}".strip()
        for container in status.get("containerStatuses") or []:
            waiting = (container.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") in _WAITING_FOR_CONFIG:
                return f"{waiting['reason']}: {waiting.get('message', '')}".strip()
    return ""
