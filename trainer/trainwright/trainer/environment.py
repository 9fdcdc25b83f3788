"""The container contract: what the trainer reads from its environment (see docs/trainer.md)."""

import json
from collections.abc import Mapping
from pathlib import Path

import yaml

from trainwright.api import ManifestError, TrainingJob, parse_job
from trainwright.api import pod_contract as pod
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.reporting import parse_reporter_names
from trainwright.trainer.settings import RunSettings


def load_job(env: Mapping[str, str]) -> TrainingJob:
    """The resolved job from TRAINWRIGHT_JOB_FILE (YAML or JSON) or TRAINWRIGHT_JOB (JSON)."""
    if env.get(pod.JOB_FILE_ENV):
        path = Path(env[pod.JOB_FILE_ENV])
        try:
            document, where = yaml.safe_load(path.read_text()), str(path)
        except OSError as error:
            raise TrainerError(str(path), f"cannot read the job ({pod.JOB_FILE_ENV}): {error.strerror}") from None
        except yaml.YAMLError as error:
            raise TrainerError(str(path), f"not YAML or JSON: {error}") from None
    elif env.get(pod.JOB_ENV):
        try:
            document, where = json.loads(env[pod.JOB_ENV]), pod.JOB_ENV
        except json.JSONDecodeError as error:
            raise TrainerError(pod.JOB_ENV, f"not valid JSON: {error.msg}") from None
    else:
        raise TrainerError("environment", f"set {pod.JOB_FILE_ENV} (a manifest path) or {pod.JOB_ENV} (the manifest as JSON)")
    try:
        job = parse_job(document, where)
    except ManifestError as error:
        raise TrainerError(where, "; ".join(error.problems)) from None
    if job.status is None or job.status.plan is None:
        raise TrainerError(where, "status.plan is not set: the trainer runs resolved jobs (the operator writes the plan)")
    return job


def settings_from_env(env: Mapping[str, str], job: TrainingJob) -> RunSettings:
    output = env.get(pod.OUTPUT_DIR_ENV) or pod.OUTPUT_DIR
    port_text = env.get(pod.METRICS_PORT_ENV) or str(pod.METRICS_PORT)
    if not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise TrainerError(pod.METRICS_PORT_ENV, f"{port_text!r} is not a port number")
    return RunSettings(
        job=job, plan=job.status.plan, output_dir=output,
        checkpoint_dir=env.get(pod.CHECKPOINT_DIR_ENV) or str(Path(output) / "checkpoints"),
        pvc_root=env.get(pod.PVC_ROOT_ENV) or pod.PVC_ROOT,
        reporters=parse_reporter_names(env.get(pod.REPORTERS_ENV) or pod.LOCAL_REPORTERS),
        metrics_port=int(port_text), workers=job.status.plan.workers,
        namespace=env.get(pod.JOB_NAMESPACE_ENV) or job.metadata.namespace,
        job_name=env.get(pod.JOB_NAME_ENV) or job.metadata.name,
    )


def check_pod_gpus(pod_gpus: int, visible: int) -> None:
    """A pod given GPUs trains on them or not at all: never silently on its CPUs."""
    if pod_gpus > visible:
        raise TrainerError("status.plan.gpus", f"this pod was given {pod_gpus} GPU(s) ({pod.POD_GPUS_ENV}) but CUDA "
                           f"sees {visible}: check the node's NVIDIA driver and device plugin; not training on CPU instead")


def pod_gpus(env: Mapping[str, str]) -> int:
    """The GPUs the operator gave this pod (0 outside a cluster, and on a Ray head)."""
    text = env.get(pod.POD_GPUS_ENV) or "0"
    if not text.isdigit():
        raise TrainerError(pod.POD_GPUS_ENV, f"{text!r} is not a GPU count")
    return int(text)

