"""The container contract: what the trainer reads from its environment (see docs/trainer.md)."""

import json
from collections.abc import Mapping
from pathlib import Path

import yaml

from trainwright.api import ManifestError, TrainingJob, parse_job
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.reporting import parse_reporter_names
from trainwright.trainer.runner import RunSettings

DEFAULT_OUTPUT_DIR = "/workspace/output"
DEFAULT_PVC_ROOT = "/mnt/pvc"
DEFAULT_REPORTERS = "console,jsonl"
DEFAULT_METRICS_PORT = 9090


def load_job(env: Mapping[str, str]) -> TrainingJob:
    """The resolved job from TRAINWRIGHT_JOB_FILE (YAML or JSON) or TRAINWRIGHT_JOB (JSON)."""
    if env.get("TRAINWRIGHT_JOB_FILE"):
        path = Path(env["TRAINWRIGHT_JOB_FILE"])
        try:
            document, where = yaml.safe_load(path.read_text()), str(path)
        except OSError as error:
            raise TrainerError(str(path), f"cannot read the job (TRAINWRIGHT_JOB_FILE): {error.strerror}") from None
        except yaml.YAMLError as error:
            raise TrainerError(str(path), f"not YAML or JSON: {error}") from None
    elif env.get("TRAINWRIGHT_JOB"):
        try:
            document, where = json.loads(env["TRAINWRIGHT_JOB"]), "TRAINWRIGHT_JOB"
        except json.JSONDecodeError as error:
            raise TrainerError("TRAINWRIGHT_JOB", f"not valid JSON: {error.msg}") from None
    else:
        raise TrainerError("environment", "set TRAINWRIGHT_JOB_FILE (a manifest path) or TRAINWRIGHT_JOB (the manifest as JSON)")
    try:
        job = parse_job(document, where)
    except ManifestError as error:
        raise TrainerError(where, "; ".join(error.problems)) from None
    if job.status is None or job.status.plan is None:
        raise TrainerError(where, "status.plan is not set: the trainer runs resolved jobs (the operator writes the plan)")
    return job


def settings_from_env(env: Mapping[str, str], job: TrainingJob) -> RunSettings:
    output = env.get("TRAINWRIGHT_OUTPUT_DIR") or DEFAULT_OUTPUT_DIR
    port_text = env.get("TRAINWRIGHT_METRICS_PORT") or str(DEFAULT_METRICS_PORT)
    if not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise TrainerError("TRAINWRIGHT_METRICS_PORT", f"{port_text!r} is not a port number")
    return RunSettings(
        job=job, plan=job.status.plan, output_dir=output,
        checkpoint_dir=env.get("TRAINWRIGHT_CHECKPOINT_DIR") or str(Path(output) / "checkpoints"),
        pvc_root=env.get("TRAINWRIGHT_PVC_ROOT") or DEFAULT_PVC_ROOT,
        reporters=parse_reporter_names(env.get("TRAINWRIGHT_REPORTERS") or DEFAULT_REPORTERS),
        metrics_port=int(port_text), workers=job.status.plan.workers,
        namespace=env.get("TRAINWRIGHT_JOB_NAMESPACE") or job.metadata.namespace,
        job_name=env.get("TRAINWRIGHT_JOB_NAME") or job.metadata.name,
    )


def check_pod_gpus(pod_gpus: int, visible: int) -> None:
    """A pod given GPUs trains on them or not at all: never silently on its CPUs."""
    if pod_gpus > visible:
        raise TrainerError("status.plan.gpus", f"this pod was given {pod_gpus} GPU(s) (TRAINWRIGHT_POD_GPUS) but CUDA "
                           f"sees {visible}: check the node's NVIDIA driver and device plugin; not training on CPU instead")


def pod_gpus(env: Mapping[str, str]) -> int:
    """The GPUs the operator gave this pod (0 outside a cluster, and on a Ray head)."""
    text = env.get("TRAINWRIGHT_POD_GPUS") or "0"
    if not text.isdigit():
        raise TrainerError("TRAINWRIGHT_POD_GPUS", f"{text!r} is not a GPU count")
    return int(text)

