"""What a run is given: `RunSettings`, and the job's fingerprint. Torch-free, so that the container
entrypoint, the Ray driver and the environment contract read it without importing the training
code, and `runner` and `distributed` both import it instead of each other."""

import hashlib
import json
from dataclasses import dataclass, field

from trainwright.api import Plan, TrainingJob
from trainwright.api import pod_contract as pod


@dataclass
class RunSettings:
    """Everything a worker needs; picklable, so Ray can ship it."""

    job: TrainingJob
    plan: Plan
    output_dir: str
    checkpoint_dir: str
    pvc_root: str = pod.PVC_ROOT
    reporters: list[str] = field(default_factory=lambda: ["console", "jsonl"])
    metrics_port: int = pod.METRICS_PORT
    workers: int = 1
    namespace: str | None = None
    job_name: str | None = None  # defaults to metadata.name
    log_every: int | None = None


def job_fingerprint(settings: RunSettings) -> dict[str, str]:
    """What a checkpoint must have been written by to be resumed here: the strategy and the spec's
    model, dataset and training (hashed), the parts that shape the weights and the data order."""
    spec = settings.job.spec
    parts = {"strategy": settings.plan.strategy, "model": spec.model.to_wire(), "dataset": spec.dataset.to_wire(),
             "training": spec.training.to_wire()}
    return {name: hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16] for name, value in parts.items()}
