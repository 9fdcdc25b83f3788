"""The pure pieces: learning-rate shape, metrics, packing, checkpoint rotation, sources."""

import math

import pytest
import torch

from trainwright.trainer.checkpoint import Checkpointer
from trainwright.trainer.data import pack_blocks
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.evaluation import improved, macro_f1
from trainwright.trainer.schedule import MIN_RATIO, lr_factor
from trainwright.trainer.sources import resolve_source


def test_learning_rate_warms_up_then_decays_to_a_tenth():
    factors = [lr_factor(s, 100, 10) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert lr_factor(100, 100, 10) == pytest.approx(MIN_RATIO)
    assert lr_factor(55, 100, 10) == pytest.approx(MIN_RATIO + (1 - MIN_RATIO) * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_macro_f1_and_improvement_direction():
    predictions, labels = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1])
    assert macro_f1(predictions, labels, 2) == pytest.approx((2 / 3 + 0.8) / 2)
    assert improved("val_loss", 0.5, 0.6, 0.0) and not improved("val_loss", 0.59, 0.6, 0.05)
    assert improved("val_accuracy", 0.7, 0.6, 0.0) and not improved("val_accuracy", 0.5, 0.6, 0.0)


def test_packing_joins_documents_with_a_separator_into_full_blocks():
    assert pack_blocks([[1, 2, 3], [4, 5]], block=3, separator=0) == [[1, 2, 3], [0, 4, 5]]
    assert pack_blocks([[1, 2]], block=8, separator=None) == [[1, 2]]


def test_checkpoints_keep_the_newest_and_replace_a_repeated_step(tmp_path):
    checkpoints = Checkpointer(tmp_path, keep=2)
    for step in (10, 20, 30):
        checkpoints.save(step, {"step": step})
    (tmp_path / ".tmp-step-000000040-999999").mkdir()  # a crashed writer's leftover
    checkpoints.save(30, {"step": 30, "again": True})
    assert checkpoints.steps() == [20, 30] and checkpoints.load(checkpoints.latest())["again"]
    assert not list(tmp_path.glob(".tmp-*")) and not list(tmp_path.glob(".old-*"))


def test_sources_map_pvc_to_the_mount_root():
    assert resolve_source("pvc://data/a/b.jsonl", "/mnt/pvc").value == "/mnt/pvc/data/a/b.jsonl"
    assert resolve_source("hf://gpt2", "/x").kind == "hf" and resolve_source("builtin:topics", "/x").value == "topics"
    assert resolve_source("file:///d/x.csv", "/x").value == "/d/x.csv"
    s3 = resolve_source("s3://bucket/key", "/x", "spec.dataset.source")
    assert (s3.kind, s3.value, s3.field) == ("s3", "s3://bucket/key", "spec.dataset.source")
