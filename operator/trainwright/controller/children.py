"""Pure builders of a TrainingJob's children: (job, plan, settings) -> manifest dict.

Names are deterministic, so a retried or restarted create finds what is already there.
"""

import json
import math
from dataclasses import dataclass

from trainwright.api import API_VERSION, KIND, TrainingJob
from trainwright.api import pod_contract as pod
from trainwright.api.status import Plan
from trainwright.controller import constants as c
from trainwright.planner.estimate import checkpoint_seconds
from trainwright.planner.models import parameter_count

RAY_AGENT_PORT = 52365  # the dashboard agent of every Ray node
RAY_HEALTH_PATH = "/api/local_raylet_healthz"
RAY_HEAD_PORTS = [{"name": "gcs-server", "containerPort": 6379}, {"name": "dashboard", "containerPort": 8265},
                  {"name": "client", "containerPort": 10001}]
SUBMITTER_RESOURCES = {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
# The trainer pods' terminationGracePeriodSeconds: on SIGTERM the trainer finishes its step (or
# its evaluation batch), writes a checkpoint and exits 143 (docs/trainer.md), and the kubelet must
# not SIGKILL it first. The write is sized as the planner sizes checkpoints (weights and two Adam
# moments, 4 bytes each, at CHECKPOINT_BYTES_PER_SECOND), doubled for a slower volume, plus a margin
# for the step in flight, the process's exit and the last status patch; with checkpoint.uri, one
# more write's time for the copy to object storage. A trainer exits as soon as it has written, so
# a generous period costs nothing unless the trainer hangs.
GRACE_MARGIN_SECONDS = 60
GRACE_WRITE_FACTOR = 2
GRACE_UNKNOWN_MODEL_SECONDS = 300  # a model whose parameter count the plan cannot know (pvc:// without model.parameters)


@dataclass(frozen=True)
class LaunchSettings:
    trainer_image: str = c.DEFAULT_TRAINER_IMAGE
    image_pull_policy: str = "IfNotPresent"


def child_name(job_name: str, role: str) -> str:
    return f"{job_name}-{role}"


def config_map_name(job_name: str) -> str:
    return child_name(job_name, "job")


def service_account_name(job_name: str) -> str:
    return child_name(job_name, "trainer")


def launcher_name(job_name: str) -> str:
    return child_name(job_name, "trainer")


def _labels(job: TrainingJob, plan: Plan) -> dict:
    labels = {
        c.MANAGED_BY_LABEL: c.MANAGED_BY,
        c.NAME_LABEL: c.TRAINER_NAME,
        c.JOB_LABEL: job.metadata.name,
        c.STRATEGY_LABEL: plan.strategy,
    }
    job_labels = job.metadata.model_extra.get("labels") or {}
    labels.update({k: v for k, v in job_labels.items() if k in c.PASSED_THROUGH_LABELS})
    return labels


def queue_of(job: TrainingJob) -> str | None:
    """The Kueue LocalQueue the job's label names (None: the job is not Kueue's)."""
    return (job.metadata.model_extra.get("labels") or {}).get(c.KUEUE_QUEUE_LABEL) or None


def owner_reference(name: str, uid: str) -> dict:
    return {"apiVersion": API_VERSION, "kind": KIND, "name": name, "uid": uid,
            "controller": True, "blockOwnerDeletion": True}


def _metadata(job: TrainingJob, plan: Plan, name: str, uid: str) -> dict:
    return {"name": name, "namespace": job.metadata.namespace, "labels": _labels(job, plan),
            "ownerReferences": [owner_reference(job.metadata.name, uid)]}


def resolved_job(job: TrainingJob, plan: Plan) -> dict:
    """What the trainer reads: the manifest with the plan in its status."""
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": {"name": job.metadata.name, "namespace": job.metadata.namespace},
            "spec": job.spec.to_wire(), "status": {"plan": plan.to_wire()}}


def build_config_map(job: TrainingJob, plan: Plan, uid: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _metadata(job, plan, config_map_name(job.metadata.name), uid),
            "data": {pod.JOB_FILE_KEY: json.dumps(resolved_job(job, plan), indent=2)}}


def build_service_account(job: TrainingJob, plan: Plan, uid: str) -> dict:
    return {"apiVersion": "v1", "kind": "ServiceAccount",
            "metadata": _metadata(job, plan, service_account_name(job.metadata.name), uid)}


def build_role(job: TrainingJob, plan: Plan, uid: str) -> dict:
    """Patch this one TrainingJob's status, nothing else."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": _metadata(job, plan, service_account_name(job.metadata.name), uid),
            "rules": [{"apiGroups": [c.API[0]], "resources": [f"{c.API[2]}/status"],
                       "resourceNames": [job.metadata.name], "verbs": ["get", "patch"]}]}


def build_role_binding(job: TrainingJob, plan: Plan, uid: str) -> dict:
    name = service_account_name(job.metadata.name)
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": _metadata(job, plan, name, uid),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": job.metadata.namespace}]}


def claims_of(job: TrainingJob) -> list[tuple[str, str]]:
    """(field, claim) for every PersistentVolumeClaim the job's pods mount."""
    found = [(field, source.removeprefix("pvc://").split("/", 1)[0])
             for field, source in (("model.source", job.spec.model.source), ("dataset.source", job.spec.dataset.source))
             if source and source.startswith("pvc://")]
    if job.spec.checkpoint.pvc:
        found.append(("checkpoint.pvc", job.spec.checkpoint.pvc))
    return found


def dependencies_of(job: TrainingJob) -> list[tuple[str, str, str]]:
    """(spec field, kind, name) of every object the job's pods need to start: the job waits
    for each, rather than failing, as a pod waits for its claim. Not objectStorage.secret: the
    operator has no access to Secrets at all (`create secrets` would let it mint any
    ServiceAccount's token); its pods wait for it in the kubelet, and the job shows why
    (observe.waiting_reason)."""
    return [(field, "PersistentVolumeClaim", claim) for field, claim in claims_of(job)]


def object_storage_env(job: TrainingJob) -> list[dict]:
    """The trainer's credentials for s3:// sources: the Secret's two keys by reference (the
    values never pass through the operator, the pod spec or the job's status), and the server
    and region as plain values."""
    storage = job.spec.objectStorage
    if storage is None:
        return []
    env = [{"name": key, "valueFrom": {"secretKeyRef": {"name": storage.secret, "key": key}}}
           for key in (pod.OBJECT_STORE_KEY_ID_ENV, pod.OBJECT_STORE_SECRET_KEY_ENV)]
    if storage.endpoint:
        env.append({"name": pod.OBJECT_STORE_ENDPOINT_ENV, "value": storage.endpoint})
    if storage.region:
        env.append({"name": pod.OBJECT_STORE_REGION_ENV, "value": storage.region})
    return env


def _source_claims(job: TrainingJob) -> list[str]:
    """Claims named by pvc:// sources, mounted read-only under PVC_ROOT (each once)."""
    return list(dict.fromkeys(claim for field, claim in claims_of(job) if field != "checkpoint.pvc"))


def cpu_quantity(cores: float) -> str:
    """Cores as a Kubernetes quantity: whole cores as they are, fractions in millicores."""
    millicores = round(cores * 1000)
    return str(millicores // 1000) if millicores % 1000 == 0 else f"{millicores}m"


RESTRICTED_CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESTRICTED_POD_SECURITY = {
    "runAsNonRoot": True, "runAsUser": c.NON_ROOT_UID, "runAsGroup": c.NON_ROOT_UID,
    "fsGroup": c.NON_ROOT_UID, "seccompProfile": {"type": "RuntimeDefault"},
}


def termination_grace_seconds(job: TrainingJob, plan: Plan) -> int:
    """Seconds between SIGTERM and SIGKILL that let the trainer write its checkpoint (above)."""
    parameters = parameter_count(job.spec, plan.strategy)
    if parameters is None:
        return GRACE_UNKNOWN_MODEL_SECONDS
    adapter_only = plan.strategy == "fine-tune" and job.spec.model.adapter is not None  # no moments for the base
    write = checkpoint_seconds(parameters, 1.0 if adapter_only else 0.0, 1)
    copies = 1 if job.spec.checkpoint.uri else 0  # the copy to checkpoint.uri, at the same rate
    return math.ceil(GRACE_MARGIN_SECONDS + (GRACE_WRITE_FACTOR + copies) * write)


def workers_per_pod(plan: Plan) -> int:
    """Ray Train workers in one pod: every pod of a plan hosts the same number."""
    return max(1, plan.workers // max(1, plan.pods))


def build_pod_spec(job: TrainingJob, plan: Plan, settings: LaunchSettings, gpus: int, workers: int = 1) -> dict:
    """The trainer pod: restricted security, job file, checkpoint and data volumes, GPU limits;
    CPU for the ``workers`` Ray Train workers (or GPUs) it hosts."""
    name = job.metadata.name
    resources = job.spec.resources
    requests = {"cpu": cpu_quantity(resources.cpusPerWorker * max(1, gpus, workers)), "memory": resources.memoryPerWorker}
    limits = {"memory": resources.memoryPerWorker}
    if gpus:
        requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(gpus)
    volumes = [
        {"name": "job", "configMap": {"name": config_map_name(name)}},
        {"name": "tmp", "emptyDir": {}},
        {"name": "workspace", "emptyDir": {}},
    ]
    mounts = [
        {"name": "job", "mountPath": pod.JOB_MOUNT, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
        {"name": "workspace", "mountPath": "/workspace"},
    ]
    env = {
        pod.JOB_FILE_ENV: pod.JOB_FILE,
        pod.OUTPUT_DIR_ENV: pod.OUTPUT_DIR,
        pod.PVC_ROOT_ENV: pod.PVC_ROOT,
        pod.REPORTERS_ENV: pod.POD_REPORTERS,
        pod.METRICS_PORT_ENV: str(pod.METRICS_PORT),
        pod.JOB_NAME_ENV: name,
        pod.JOB_NAMESPACE_ENV: job.metadata.namespace,
        pod.POD_GPUS_ENV: str(gpus),  # the trainer refuses to run on CPU when these are not visible
        pod.PROCESS_DIR_ENV: pod.PROCESS_DIR,  # for the Ray pods' preStop hook
        "HF_HOME": "/tmp/hf",
    }
    if job.spec.checkpoint.pvc:
        volumes.append({"name": "checkpoints", "persistentVolumeClaim": {"claimName": job.spec.checkpoint.pvc}})
        mounts.append({"name": "checkpoints", "mountPath": pod.CLAIM_MOUNT})
        env[pod.CHECKPOINT_DIR_ENV] = pod.claim_checkpoint_dir(name)
        env[pod.OUTPUT_DIR_ENV] = pod.claim_output_dir(name)
    for claim in _source_claims(job):
        volumes.append({"name": f"pvc-{claim}", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}})
        mounts.append({"name": f"pvc-{claim}", "mountPath": f"{pod.PVC_ROOT}/{claim}", "readOnly": True})
    container = {
        "name": c.TRAINER_CONTAINER,
        "image": settings.trainer_image,
        "imagePullPolicy": settings.image_pull_policy,
        "command": ["python", "-m", "trainwright.trainer"],
        "env": [{"name": k, "value": v} for k, v in env.items()] + object_storage_env(job),
        "ports": [{"name": "metrics", "containerPort": pod.METRICS_PORT}],
        "resources": {"requests": requests, "limits": limits},
        "volumeMounts": mounts,
        "securityContext": RESTRICTED_CONTAINER_SECURITY,
    }
    return {
        "serviceAccountName": service_account_name(name),
        "restartPolicy": "Never",
        "terminationGracePeriodSeconds": termination_grace_seconds(job, plan),
        "securityContext": RESTRICTED_POD_SECURITY,
        "containers": [container],
        "volumes": volumes,
    }


def build_trainer_job(job: TrainingJob, plan: Plan, uid: str, settings: LaunchSettings) -> dict:
    """One pod: a fine-tune, a hybrid, or a scratch run whose Ray workers fit one node."""
    metadata = _metadata(job, plan, launcher_name(job.metadata.name), uid)
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": metadata,
        "spec": {
            "backoffLimit": job.spec.backoffLimit,
            "completions": 1, "parallelism": 1,
            # Queued: created suspended (as Kueue's webhook would make it), and Kueue
            # un-suspends it when it admits it.
            "suspend": queue_of(job) is not None,
            "template": {"metadata": {"labels": metadata["labels"]},
                         "spec": build_pod_spec(job, plan, settings, plan.gpusPerPod, workers_per_pod(plan))},
        },
    }


def build_ray_job(job: TrainingJob, plan: Plan, uid: str, settings: LaunchSettings) -> dict:
    """A KubeRay RayJob: a head (Ray and the driver) plus one group of worker pods (whole GPU
    nodes, or workersPerPod CPU workers each); the entrypoint is the trainer."""
    metadata = _metadata(job, plan, launcher_name(job.metadata.name), uid)
    head = build_pod_spec(job, plan, settings, 0)
    worker = build_pod_spec(job, plan, settings, plan.gpusPerPod, workers_per_pod(plan))
    submitter = build_pod_spec(job, plan, settings, 0)
    for pod_spec, role in ((head, "ray-head"), (worker, "ray-worker"), (submitter, "ray-job-submitter")):
        # KubeRay starts Ray in head and workers, and `ray job submit` in the submitter, only
        # where the container has no command of its own.
        container = pod_spec["containers"][0]
        container.pop("command")
        container["name"] = role
        if role != "ray-job-submitter":
            # Ray's own health endpoint, over HTTP: KubeRay's default probes run wget, which
            # the trainer image does not carry.
            probe = {"httpGet": {"path": RAY_HEALTH_PATH, "port": RAY_AGENT_PORT}, "periodSeconds": 5,
                     "timeoutSeconds": 2, "failureThreshold": 12}
            container["readinessProbe"] = container["livenessProbe"] = probe
            # PID 1 is `ray start`, which ends the node at once on SIGTERM: the hook first stops
            # the trainer processes here, each at a step boundary with a checkpoint (prestop.py).
            container["lifecycle"] = {"preStop": {"exec": {"command": pod.PRE_STOP_COMMAND}}}
    # KubeRay finds the head's services by these port names (it adds them only to a container
    # that declares no ports, and the trainer's metrics port is one).
    head["containers"][0]["ports"] = RAY_HEAD_PORTS
    # The submitter only waits on the job: it needs none of a worker's resources, nor the keys.
    submitter["containers"][0]["resources"] = SUBMITTER_RESOURCES
    keys = {e["name"] for e in object_storage_env(job)}
    submitter["containers"][0]["env"] = [e for e in submitter["containers"][0]["env"] if e["name"] not in keys]
    return {
        "apiVersion": f"{c.RAY_GROUP}/{c.RAY_VERSION}", "kind": "RayJob", "metadata": metadata,
        "spec": {
            "entrypoint": "python -m trainwright.trainer",
            "shutdownAfterJobFinishes": True,  # Kueue requires it: the cluster goes with the job
            "suspend": queue_of(job) is not None,  # queued: Kueue un-suspends it when it admits it
            "backoffLimit": job.spec.backoffLimit,
            "submitterPodTemplate": {"metadata": {"labels": metadata["labels"]}, "spec": submitter},
            "rayClusterSpec": {
                # No training worker on the head: the driver runs there.
                "headGroupSpec": {"rayStartParams": {"num-cpus": "0", "num-gpus": "0"},
                                  "template": {"metadata": {"labels": metadata["labels"]}, "spec": head}},
                "workerGroupSpecs": [{
                    "groupName": "gpu-workers" if plan.gpus else "cpu-workers",
                    "replicas": plan.pods, "minReplicas": plan.pods, "maxReplicas": plan.pods,
                    "rayStartParams": ({"num-gpus": str(plan.gpusPerPod)} if plan.gpus
                                       else {"num-cpus": str(workers_per_pod(plan))}),
                    "template": {"metadata": {"labels": metadata["labels"]}, "spec": worker},
                }],
            },
        },
    }


def build_launcher(job: TrainingJob, plan: Plan, uid: str, settings: LaunchSettings) -> dict:
    builder = build_ray_job if plan.launcher == "rayjob" else build_trainer_job
    return builder(job, plan, uid, settings)


def build_children(job: TrainingJob, plan: Plan, uid: str, settings: LaunchSettings) -> list[dict]:
    """All children, in creation order: what the launcher's pods need exists before them."""
    return [
        build_config_map(job, plan, uid),
        build_service_account(job, plan, uid),
        build_role(job, plan, uid),
        build_role_binding(job, plan, uid),
        build_launcher(job, plan, uid, settings),
    ]
