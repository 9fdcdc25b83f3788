"""The container contract: the job from a file or inline JSON, the defaults, clear errors."""

import dataclasses
import json
import os
import subprocess
import sys

import pytest

import torch

from trainer_helpers import TINY_CLASSIFIER, TINY_GPT, cpu_plan, make_job, settings_for
from trainwright.trainer.environment import load_job, settings_from_env
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.runner import run_job

JOB = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
               {"source": "pvc://data/train.jsonl"}, name="contract")


def resolved(plan=True) -> dict:
    document = JOB.model_dump(mode="json", by_alias=True, exclude_none=True)
    if plan:
        document["status"] = {"plan": cpu_plan("scratch").to_wire()}
    return document


def test_inline_job_and_defaults():
    job = load_job({"TRAINWRIGHT_JOB": json.dumps(resolved())})
    settings = settings_from_env({}, job)
    assert settings.output_dir == "/workspace/output" and settings.checkpoint_dir == "/workspace/output/checkpoints"
    assert settings.pvc_root == "/mnt/pvc" and settings.metrics_port == 9090 and settings.reporters == ["console", "jsonl"]
    assert settings.workers == 1 and settings.job_name == "contract"


def test_job_file_and_overrides(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(json.dumps(resolved()))
    env = {"TRAINWRIGHT_JOB_FILE": str(path), "TRAINWRIGHT_OUTPUT_DIR": "/o", "TRAINWRIGHT_CHECKPOINT_DIR": "/ckpt",
           "TRAINWRIGHT_PVC_ROOT": "/pvc", "TRAINWRIGHT_REPORTERS": "jsonl,prometheus", "TRAINWRIGHT_METRICS_PORT": "9100",
           "TRAINWRIGHT_JOB_NAME": "j", "TRAINWRIGHT_JOB_NAMESPACE": "ml"}
    settings = settings_from_env(env, load_job(env))
    assert (settings.output_dir, settings.checkpoint_dir, settings.pvc_root) == ("/o", "/ckpt", "/pvc")
    assert settings.reporters == ["jsonl", "prometheus"] and settings.metrics_port == 9100
    assert (settings.job_name, settings.namespace) == ("j", "ml")


@pytest.mark.parametrize("env, message", [
    ({}, "set TRAINWRIGHT_JOB_FILE"),
    ({"TRAINWRIGHT_JOB": "{"}, "TRAINWRIGHT_JOB: not valid JSON"),
    ({"TRAINWRIGHT_JOB_FILE": "/nonexistent/job.yaml"}, "/nonexistent/job.yaml: cannot read the job"),
    ({"TRAINWRIGHT_JOB": json.dumps(resolved(plan=False))}, "status.plan is not set"),
    ({"TRAINWRIGHT_JOB": json.dumps({**resolved(), "kind": "Pod"})}, "kind: must be TrainingJob"),
])
def test_bad_job_input_is_one_clear_error(env, message):
    with pytest.raises(TrainerError, match=message):
        load_job(env)


def test_entrypoint_prints_one_line_and_exits_1_on_bad_data(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"text": "a", "label": 0}\n{"label": 1}\n')
    env = {**os.environ, "TRAINWRIGHT_JOB": json.dumps(resolved()), "TRAINWRIGHT_PVC_ROOT": str(tmp_path),
           "TRAINWRIGHT_OUTPUT_DIR": str(tmp_path / "out"), "TRAINWRIGHT_REPORTERS": "jsonl"}
    done = subprocess.run([sys.executable, "-m", "trainwright.trainer"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {tmp_path}/data/train.jsonl line 2: missing text field 'text' (spec.dataset.textField)")
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(torch.cuda.device_count() > 0, reason="needs a machine where CUDA sees no GPU")
def test_entrypoint_given_gpus_that_cuda_cannot_see_exits_1_with_one_line_before_training(tmp_path):
    env = {**os.environ, "TRAINWRIGHT_JOB": json.dumps(resolved()), "TRAINWRIGHT_POD_GPUS": "2",
           "TRAINWRIGHT_OUTPUT_DIR": str(tmp_path / "out"), "TRAINWRIGHT_REPORTERS": "jsonl"}
    done = subprocess.run([sys.executable, "-m", "trainwright.trainer"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: status.plan.gpus: ") and "given 2 GPU(s)" in line and "CUDA sees 0" in line
    assert not (tmp_path / "out").exists()


def test_the_trainer_creates_its_job_folders_on_an_empty_claim(tmp_path):
    """The claim is mounted whole: CLAIM/JOB/output and CLAIM/JOB/checkpoints do not exist yet."""
    job = make_job("scratch", {"task": "causal-lm", "architecture": TINY_GPT}, {"source": "builtin:patterns", "samples": 200},
                   {"epochs": 1}, {"everySteps": 2}, name="claimed")
    claim = tmp_path / "claim"
    claim.mkdir()
    settings = dataclasses.replace(settings_for(job, claim / "claimed" / "output"),
                                   checkpoint_dir=str(claim / "claimed" / "checkpoints"))
    run_job(settings)
    assert (claim / "claimed" / "output" / "model" / "config.json").exists()
    assert (claim / "claimed" / "output" / "metrics.jsonl").exists()
    assert any(p.name.startswith("step-") for p in (claim / "claimed" / "checkpoints").iterdir())


def test_a_sigterm_during_start_up_stops_the_trainer_with_a_checkpoint(tmp_path):
    """In a pod the trainer is PID 1, and a signal PID 1 does not handle is dropped: a SIGTERM
    before the handler existed was lost and the pod lived out its grace period. The entrypoint
    handles SIGTERM before its slow imports, so one that comes during them still stops it."""
    import signal
    import time

    job = make_job("scratch", {"task": "causal-lm", "architecture": TINY_GPT},
                   {"source": "builtin:patterns", "samples": 4000}, {"epochs": 50}, name="early")
    document = {**job.model_dump(mode="json", by_alias=True, exclude_none=True),
                "status": {"plan": cpu_plan("scratch").to_wire()}}
    env = {**os.environ, "TRAINWRIGHT_JOB": json.dumps(document), "TRAINWRIGHT_OUTPUT_DIR": str(tmp_path / "out"),
           "TRAINWRIGHT_CHECKPOINT_DIR": str(tmp_path / "checkpoints"), "TRAINWRIGHT_REPORTERS": "jsonl"}
    process = subprocess.Popen([sys.executable, "-m", "trainwright.trainer"], env=env, stderr=subprocess.PIPE, text=True)
    time.sleep(1.0)  # importing torch and transformers takes longer than this
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 143, stderr[-2000:]
    assert "stopped at step" in stderr, stderr[-2000:]
