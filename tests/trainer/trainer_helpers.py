"""Builders the trainer tests share: tiny architectures, jobs, plans and run settings."""

from pathlib import Path

from trainwright.api import TrainingJob, parse_job
from trainwright.api.status import Plan
from trainwright.trainer.settings import RunSettings

TINY_CLASSIFIER = {"family": "classifier", "layers": 1, "hidden": 32, "heads": 2, "vocabSize": 128, "contextLength": 64}
TINY_GPT = {"family": "gpt", "layers": 1, "hidden": 32, "heads": 2, "vocabSize": 128, "contextLength": 64}


def make_job(strategy: str, model: dict, dataset: dict, training: dict | None = None, checkpoint: dict | None = None,
             name: str = "t") -> TrainingJob:
    return parse_job({
        "apiVersion": "trainwright.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": name},
        "spec": {
            "strategy": strategy, "model": model, "dataset": {"validationSplit": 0.2, **dataset},
            "resources": {"gpus": 0},
            "training": {"epochs": 2, "batchSize": 16, "maxSeqLength": 32, "seed": 0, "warmupRatio": 0.0, **(training or {})},
            "checkpoint": {"everySteps": 1000, "keep": 2, **(checkpoint or {})},
        },
    })


def cpu_plan(strategy: str, workers: int = 1) -> Plan:
    return Plan(strategy=strategy, reason="test", gpus=0, launcher="job", workers=workers, pods=1, gpusPerPod=0)


def settings_for(job: TrainingJob, output, workers: int = 1, pvc_root=".", reporters=("jsonl",)) -> RunSettings:
    return RunSettings(job=job, plan=cpu_plan(job.spec.strategy, workers), output_dir=str(output),
                       checkpoint_dir=str(output / "checkpoints"), pvc_root=str(pvc_root), reporters=list(reporters),
                       workers=workers)


class Evaluations:
    """A reporter that keeps each evaluation's metrics and each step report, in order."""

    def __init__(self):
        self.seen: list[dict] = []

        self.progress: list = []  # every step report, in order

    def on_step(self, progress):
        self.progress.append(progress)

    def on_checkpoint(self, step, path): pass
    def close(self): pass

    def on_eval(self, metrics):
        self.seen.append(metrics)


def saved_weights(output) -> dict:
    """The model a run saved in `output`, tensor by name."""
    from safetensors.torch import load_file

    return load_file(Path(output) / "model" / "model.safetensors")


def assert_same_weights(a: dict, b: dict) -> None:
    """Bit for bit: a resumed run must end exactly where an uninterrupted one does."""
    import torch

    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
