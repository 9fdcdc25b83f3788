"""Ray Train with 2 CPU workers (DDP over gloo) learns like one process with the same global batch;
the driver never reads the data or builds the model, and the workers' input errors reach it as one line."""

import json

import pytest

from trainer_helpers import TINY_CLASSIFIER, make_job, settings_for
from trainwright.trainer import runner
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.runner import run_job


def losses(output):
    events = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    return [e["loss"] for e in events if e["event"] == "step"]


def job(batch_size):
    return make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
                    {"source": "builtin:topics", "samples": 1200}, {"epochs": 4, "learningRate": 5e-3, "batchSize": batch_size})


@pytest.fixture(scope="module")
def ray_session():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    yield
    ray.shutdown()


def test_two_ray_workers_train_like_one_process(tmp_path, ray_session, monkeypatch):
    single = run_job(settings_for(job(16), tmp_path / "single"))

    def not_in_the_driver(*args, **kwargs):
        raise AssertionError("the Ray driver read the data or built the model")

    monkeypatch.setattr(runner, "prepare", not_in_the_driver)  # the workers are other processes: theirs is intact
    monkeypatch.setattr(runner, "_build_model", not_in_the_driver)
    distributed = run_job(settings_for(job(8), tmp_path / "ray", workers=2))  # 2 x 8 = the same global batch
    assert distributed.workers == 2 and distributed.result.step == single.result.step
    assert (distributed.trainable_parameters, distributed.total_parameters) == (
        single.trainable_parameters, single.total_parameters)  # counted by rank 0
    ray_losses, single_losses = losses(tmp_path / "ray"), losses(tmp_path / "single")
    assert ray_losses[-1] < 0.7 * ray_losses[0]
    assert abs(ray_losses[-1] - single_losses[-1]) < 0.25
    assert distributed.result.metrics["val_accuracy"] > 0.6  # 4 classes: chance is 0.25
    assert (tmp_path / "ray" / "model" / "config.json").exists()


def test_bad_data_in_the_workers_is_one_clear_error_in_the_driver(tmp_path, ray_session):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"text": "a b", "label": 0}\n{"label": 1}\n')
    bad = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
                   {"source": "pvc://data/train.jsonl"})
    with pytest.raises(TrainerError) as raised:
        run_job(settings_for(bad, tmp_path / "out", workers=2, pvc_root=tmp_path))
    assert str(raised.value) == f"{tmp_path}/data/train.jsonl line 2: missing text field 'text' (spec.dataset.textField)"
