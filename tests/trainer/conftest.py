"""Trainer tier: real torch and Ray on CPU, tiny models and data made here; never a model hub."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] = "1"
os.environ.setdefault("OMP_NUM_THREADS", "1")  # tiny models: one thread is fastest and contends least

import pytest  # noqa: E402
import torch  # noqa: E402

from trainer_helpers import TINY_CLASSIFIER, make_job, settings_for  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture
def s3_env(s3_server, monkeypatch):
    """The variables a trainer pod gets from the operator (Secret keys, endpoint, region)."""
    for key, value in s3_server.env().items():
        monkeypatch.setenv(key, value)
    return s3_server.env()


@pytest.fixture(scope="session")
def base_model(tmp_path_factory):
    """A small classifier trained (briefly) on demo task A, saved with save_pretrained under a fake PVC root."""
    from trainwright.trainer.runner import run_job

    root = tmp_path_factory.mktemp("pvc")
    job = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
                   {"source": "builtin:topics", "samples": 1200}, {"epochs": 4, "learningRate": 5e-3})
    run_job(settings_for(job, root / "models" / "base"))
    return root, "pvc://models/base/model"
