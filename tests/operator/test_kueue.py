"""Kueue on the operator tier's control plane: the real Kueue controller (hack/build-kueue.sh) as a
host process, a ClusterQueue of 16 GPUs, and jobs labelled with a LocalQueue. Three 8-GPU jobs:
two run, the third is Pending (reason Queued, in the words of its Kueue Workload) and starts
when one finishes; once with batch Job launchers, once with KubeRay RayJobs.

This tier runs no KubeRay operator (as in test_operator.py, only its CRDs), so the RayJob test
plays KubeRay's part the operator and Kueue see: a suspended RayJob reads Suspended, an admitted
one gets its head and worker pods (kwok runs them) and reads Running, a finished one loses its
pods and reads Complete, SUCCEEDED.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest
import yaml

from devcluster import Kueue, KueueMissing, find_kueue, wait_for
from operatorkit import claims

ROOT = Path(__file__).resolve().parents[2]
SCRATCH = yaml.safe_load((ROOT / "examples" / "scratch.yaml").read_text())  # 8 GPUs in one pod
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
CLUSTER_QUEUE, LOCAL_QUEUE = "trainwright-gpus", "gpus"
QUOTA = {"cpu": 256, "memory": "2Ti", "nvidia.com/gpu": 16}
NO_GPU_QUOTA = "insufficient unused quota for nvidia.com/gpu"


@pytest.fixture(scope="module")
def kueue(cluster):
    """Kueue running against the tier's control plane for this module, with KubeRay's CRDs
    installed first (Kueue sets up its RayJob integration for the CRDs it finds). What this
    module installed of KubeRay is removed afterwards: other tests expect no KubeRay."""
    try:
        find_kueue()
    except KueueMissing as exc:
        message = f"needs Kueue: {exc}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    had_kuberay = cluster.kubectl_run("get", "crd", "rayjobs.ray.io").returncode == 0
    kuberay_crds = [] if had_kuberay else cluster.install_kuberay_crds()
    process = Kueue(cluster)
    try:
        process.start()
        process.cluster_queue(CLUSTER_QUEUE, QUOTA)
        yield process
        # Kueue removes its finalizers from the Workloads of the deleted test namespaces.
        cluster.kubectl("delete", "clusterqueue", CLUSTER_QUEUE, "--wait=false", check=False)
        try:
            wait_for(lambda: not json.loads(cluster.kubectl("get", "workloads", "-A", "-o", "json"))["items"],
                     timeout=60, message="Kueue to let the Workloads of the deleted namespaces go")
        except TimeoutError:
            pass  # only their namespaces stay Terminating
    finally:
        process.stop()
        if kuberay_crds:
            cluster.kubectl("delete", "crd", *kuberay_crds, "--wait=true", timeout=120)


# -- helpers


def queued_job(name: str, **resources) -> dict:
    """The scratch example (8 GPUs), labelled with the LocalQueue."""
    job = copy.deepcopy(SCRATCH)
    job["metadata"] = {"name": name, "labels": {QUEUE_LABEL: LOCAL_QUEUE}}
    job["spec"]["resources"].update(resources)
    return job


def listed(cluster, kinds: str, namespace: str) -> dict[tuple[str, str], dict]:
    """{(kind, name): object} of one `kubectl get` of several kinds: a consistent enough moment."""
    items = json.loads(cluster.kubectl("get", kinds, "-n", namespace, "-o", "json"))["items"]
    return {(item["kind"], item["metadata"]["name"]): item for item in items}


def queued_condition(status: dict) -> dict | None:
    """The Pending condition when the job is Pending because its launcher is queued."""
    if status.get("phase") != "Pending":
        return None
    return next((c for c in status.get("conditions") or []
                 if c["type"] == "Pending" and c["status"] == "True" and c["reason"] == "Queued"), None)


def two_running_one_queued(objects: dict, names: list[str], launcher_kind: str):
    """(the running two, the queued one, its Pending condition, its launcher) or None."""
    statuses = {n: (objects.get(("TrainingJob", n)) or {}).get("status") or {} for n in names}
    running = sorted(n for n, s in statuses.items() if s.get("phase") == "Running")
    waiting = [(n, queued_condition(s)) for n, s in statuses.items() if queued_condition(s)]
    if len(running) != 2 or len(waiting) != 1 or NO_GPU_QUOTA not in waiting[0][1]["message"]:
        return None
    name, condition = waiting[0]
    return running, name, condition, objects.get((launcher_kind, f"{name}-trainer"))


def summary(cluster, namespace: str) -> str:
    """One line per job and launcher: what a timed-out wait saw."""
    lines = []
    for (kind, name), obj in sorted(listed(cluster, "trainingjobs,jobs,rayjobs", namespace).items()):
        status = obj.get("status") or {}
        if kind == "TrainingJob":
            condition = next((c for c in status.get("conditions") or [] if c["type"] == status.get("phase")), {})
            lines.append(f"{name}: {status.get('phase')} {condition.get('reason')}: {condition.get('message')}")
        else:
            lines.append(f"  {kind} {name}: suspend={obj['spec'].get('suspend')} "
                         f"{status.get('jobDeploymentStatus', '')}{status.get('conditions', '')}")
    return "\n".join(lines)


def all_succeeded(cluster, namespace: str, names: list[str]) -> dict[str, dict]:
    objects = listed(cluster, "trainingjobs", namespace)
    statuses = {n: objects[("TrainingJob", n)].get("status") or {} for n in names}
    failed = {n: s for n, s in statuses.items() if s.get("phase") in ("Failed", "BudgetExceeded")}
    assert not failed, failed
    return statuses if all(s.get("phase") == "Succeeded" for s in statuses.values()) else None


def assert_queued_by_kueue(kueue: Kueue, namespace: str, name: str, condition: dict, launcher: dict) -> None:
    """The queued job's launcher is suspended, carries the label, and the condition's message
    is its Kueue Workload's (found by owner reference, as the operator finds it)."""
    assert launcher["spec"]["suspend"] is True, launcher["spec"]
    assert launcher["metadata"]["labels"][QUEUE_LABEL] == LOCAL_QUEUE
    workload = kueue.workload_of(namespace, launcher["metadata"]["uid"])
    assert workload is not None, f"no Workload owned by {launcher['kind']} {name}-trainer"
    assert workload["spec"]["queueName"] == LOCAL_QUEUE
    assert workload["metadata"]["name"] in condition["message"], condition
    quota = next(c for c in workload["status"]["conditions"] if c["type"] == "QuotaReserved")
    # Kueue's own words, e.g. "couldn't assign flavors to pod set main: insufficient unused quota
    # for nvidia.com/gpu in flavor default-flavor, 8 more needed" (or, admitted since, True).
    assert quota["status"] == "True" or quota["message"] in condition["message"], (quota, condition)


def started_after_one_finished(statuses: dict[str, dict], first_two: list[str], third: str) -> None:
    finished = min(statuses[n]["completionTime"] for n in first_two)
    assert statuses[third]["startTime"] >= finished, statuses  # RFC 3339 in UTC: ordered as text


# -- batch Jobs


def test_three_8_gpu_jobs_on_16_gpus_of_quota_two_run_and_the_third_waits_in_kueue(cluster, operator, kueue, namespace):
    claims(cluster, namespace, "ckpt", "corpus")
    kueue.local_queue(LOCAL_QUEUE, CLUSTER_QUEUE, namespace=namespace)
    names = [f"gpt-{i}" for i in range(3)]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all([queued_job(n) for n in names]))

    # Pods run POD_RUN_SECONDS (8 s): one `kubectl get` of jobs and launchers per look.
    running, waiting, condition, launcher = wait_for(
        lambda: two_running_one_queued(listed(cluster, "trainingjobs,jobs", namespace), names, "Job"),
        timeout=60, message=lambda: f"two jobs Running and one Queued:\n{summary(cluster, namespace)}")
    assert_queued_by_kueue(kueue, namespace, waiting, condition, launcher)

    statuses = wait_for(lambda: all_succeeded(cluster, namespace, names), timeout=90,
                        message=lambda: f"all three Succeeded:\n{summary(cluster, namespace)}")
    started_after_one_finished(statuses, running, waiting)
    for name in names:
        assert statuses[name]["cost"]["gpuSeconds"] > 0


# -- RayJobs, with this test as KubeRay


def act_as_kuberay(cluster, namespace: str, finish: frozenset[str] = frozenset()) -> dict[str, dict]:
    """One pass of what KubeRay's operator does that the operator and Kueue look at; the
    RayJobs of the TrainingJobs named in ``finish`` that run are finished (their pods deleted,
    Complete and SUCCEEDED)."""
    finish = frozenset(f"{n}-trainer" for n in finish)
    ray_jobs = {n: o for (kind, n), o in listed(cluster, "rayjobs", namespace).items() if kind == "RayJob"}
    for name, ray_job in ray_jobs.items():
        status = ray_job.get("status") or {}
        deployment = status.get("jobDeploymentStatus", "")
        if ray_job["spec"].get("suspend"):
            if deployment != "Suspended":
                set_ray_status(cluster, namespace, name, jobDeploymentStatus="Suspended")
        elif deployment in ("", "Suspended"):
            for pod in ray_pods(ray_job):
                cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(pod))
            set_ray_status(cluster, namespace, name, jobDeploymentStatus="Running", jobStatus="RUNNING",
                           rayClusterName=f"{name}-raycluster")
        elif deployment == "Running" and name in finish:
            cluster.kubectl("delete", "pods", "-n", namespace, "-l", f"ray.io/cluster={name}-raycluster", "--wait=false")
            set_ray_status(cluster, namespace, name, jobDeploymentStatus="Complete", jobStatus="SUCCEEDED",
                           message="the trainer finished")
    return ray_jobs


def set_ray_status(cluster, namespace: str, name: str, **fields) -> None:
    cluster.kubectl("patch", "rayjob", name, "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": fields}))


def ray_pods(ray_job: dict) -> list[dict]:
    """The head and worker pods of the RayJob's cluster, from its templates (as admitted by Kueue)."""
    name, cluster_spec = ray_job["metadata"]["name"], ray_job["spec"]["rayClusterSpec"]
    owner = {"apiVersion": "ray.io/v1", "kind": "RayJob", "name": name, "uid": ray_job["metadata"]["uid"]}
    groups = [("head", cluster_spec["headGroupSpec"]["template"], 1)]
    groups += [(g["groupName"], g["template"], g["replicas"]) for g in cluster_spec["workerGroupSpecs"]]
    pods = []
    for group, template, replicas in groups:
        for i in range(replicas):
            labels = {**(template.get("metadata") or {}).get("labels", {}), "ray.io/cluster": f"{name}-raycluster"}
            pods.append({"apiVersion": "v1", "kind": "Pod",
                         "metadata": {"name": f"{name}-{group}-{i}", "labels": labels, "ownerReferences": [owner]},
                         "spec": copy.deepcopy(template["spec"])})
    return pods


def test_the_same_with_rayjob_launchers(cluster, operator, kueue, namespace):
    claims(cluster, namespace, "ckpt", "corpus")
    kueue.local_queue(LOCAL_QUEUE, CLUSTER_QUEUE, namespace=namespace)
    names = [f"ray-{i}" for i in range(3)]
    # 8 GPUs as two pods of 4: a RayJob (a head, 2 GPU workers and the submitter).
    cluster.kubectl("apply", "-n", namespace, "-f", "-",
                    input=yaml.safe_dump_all([queued_job(n, gpus=8, gpusPerNode=4) for n in names]))

    def look(finish=frozenset()):
        act_as_kuberay(cluster, namespace, finish)
        return listed(cluster, "trainingjobs,rayjobs", namespace)

    running, waiting, condition, launcher = wait_for(
        lambda: two_running_one_queued(look(), names, "RayJob"), timeout=60,
        message=lambda: f"two jobs Running and one Queued:\n{summary(cluster, namespace)}")
    assert_queued_by_kueue(kueue, namespace, waiting, condition, launcher)
    [workers] = launcher["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert workers["replicas"] == 2 and workers["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "4"

    # One finishes: Kueue admits the third, which runs.
    def third_running():
        objects = look(finish=frozenset(running[:1]))
        phases = {n: ((objects.get(("TrainingJob", n)) or {}).get("status") or {}).get("phase") for n in names}
        return phases if phases[running[0]] == "Succeeded" and phases[waiting] == "Running" else None

    phases = wait_for(third_running, timeout=60,
                      message=lambda: f"{waiting} Running after {running[0]} finished:\n{summary(cluster, namespace)}")
    assert phases[running[1]] == "Running", phases

    def finished():
        act_as_kuberay(cluster, namespace, finish=frozenset(names))
        return all_succeeded(cluster, namespace, names)

    statuses = wait_for(finished, timeout=60, message=lambda: f"all three Succeeded:\n{summary(cluster, namespace)}")
    started_after_one_finished(statuses, running[:1], waiting)
    for name in names:
        assert statuses[name]["cost"]["gpuSeconds"] > 0
