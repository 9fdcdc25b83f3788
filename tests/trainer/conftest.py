"""Trainer tier: real torch and Ray on CPU, tiny models and data made here; never a model hub."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny models: one thread is fastest and contends least

import pytest  # noqa: E402
import torch  # noqa: E402

from trainwright.api import TrainingJob, parse_job  # noqa: E402
from trainwright.api.status import Plan  # noqa: E402
from trainwright.trainer.runner import RunSettings  # noqa: E402

torch.set_num_threads(1)

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


@pytest.fixture(scope="session")
def base_model(tmp_path_factory):
    """A small classifier trained (briefly) on demo task A, saved with save_pretrained under a fake PVC root."""
    from trainwright.trainer.runner import run_job

    root = tmp_path_factory.mktemp("pvc")
    job = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
                   {"source": "builtin:topics", "samples": 1200}, {"epochs": 4, "learningRate": 5e-3})
    run_job(settings_for(job, root / "models" / "base"))
    return root, "pvc://models/base/model"
