"""A run killed at any point resumes from its newest checkpoint and ends with the same weights
as a run that was never interrupted (CPU, same seed)."""

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time

import torch
from torch.optim.optimizer import register_optimizer_step_post_hook

from trainer_helpers import TINY_CLASSIFIER, Evaluations, assert_same_weights, cpu_plan, make_job, settings_for
from trainer_helpers import saved_weights as weights
from trainwright.trainer.runner import run_job

JOB = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
               {"source": "builtin:topics", "samples": 3000}, {"epochs": 3, "learningRate": 3e-3, "batchSize": 8},
               {"everySteps": 25, "keep": 2}, name="resume")


def write_resolved_job(path):
    document = JOB.model_dump(mode="json", by_alias=True, exclude_none=True)
    document["status"] = {"plan": cpu_plan("scratch").to_wire()}
    path.write_text(json.dumps(document))
    return path


def entrypoint(job_file, output):
    env = {**os.environ, "TRAINWRIGHT_JOB_FILE": str(job_file), "TRAINWRIGHT_OUTPUT_DIR": str(output),
           "TRAINWRIGHT_REPORTERS": "jsonl", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "trainwright.trainer"], env=env, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(output, process, timeout=120):
    deadline = time.monotonic() + timeout
    checkpoints = output / "checkpoints"
    while time.monotonic() < deadline:
        if checkpoints.is_dir() and any(p.name.startswith("step-") for p in checkpoints.iterdir()):
            return
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.01)
    raise AssertionError("no checkpoint appeared")


def reference(_cache={}):
    """The uninterrupted run's final weights (trained once, in this process)."""
    if "weights" not in _cache:
        import tempfile
        from pathlib import Path

        output = Path(tempfile.mkdtemp(prefix="resume-reference-"))
        run_job(settings_for(JOB, output))
        _cache["weights"] = weights(output)
    return _cache["weights"]


def test_killed_run_resumes_to_identical_weights(tmp_path):
    job_file = write_resolved_job(tmp_path / "job.json")
    output = tmp_path / "out"
    process = entrypoint(job_file, output)
    wait_for_checkpoint(output, process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (output / "model").exists(), "the run finished before the kill: make it longer"
    resumed = entrypoint(job_file, output)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert_same_weights(weights(output), reference())
    events = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "checkpoint" and events[-1]["step"] == 900


def test_sigterm_checkpoints_and_exits_143_then_resumes(tmp_path):
    job_file = write_resolved_job(tmp_path / "job.json")
    output = tmp_path / "out"
    process = entrypoint(job_file, output)
    wait_for_checkpoint(output, process)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    steps = sorted(p.name for p in (output / "checkpoints").iterdir())
    assert len(steps) <= 2 and not any(s.startswith(".tmp") for s in steps)  # keep: 2, nothing half-written
    resumed = entrypoint(job_file, output)
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert_same_weights(weights(output), reference())


def run_in_process(tmp_path, stop_at=None, reporter=None):
    """prepare + train with a checkpointer; `stop_at` interrupts after that step (like SIGTERM)."""
    from trainwright.trainer.checkpoint import Checkpointer
    from trainwright.trainer.loop import train
    from trainwright.trainer.runner import prepare

    job = make_job("hybrid", {"task": "sequence-classification", "source": "builtin:tiny-classifier",
                              "head": [{"type": "linear", "size": 16}, {"type": "dropout", "p": 0.2}]},
                   {"source": "builtin:living", "samples": 400},
                   {"epochs": 3, "freezeEpochs": 1, "earlyStopping": {"metric": "val_accuracy", "patience": 5}},
                   {"everySteps": 7, "keep": 1})
    prepared = prepare(settings_for(job, tmp_path), torch.device("cpu"))
    with stop_after(stop_at) as should_stop:
        result = train(prepared.built, prepared.train_set, prepared.validation, prepared.config, device=torch.device("cpu"),
                       checkpointer=Checkpointer(tmp_path / "checkpoints", 1), num_labels=2, reporter=reporter,
                       should_stop=should_stop)
    return prepared.built.model.state_dict(), result


@contextlib.contextmanager
def stop_after(steps):
    """A stop flag that rises once `steps` optimizer steps are done (the loop asks after every step
    and before every evaluation batch)."""
    done = itertools.count(1)
    taken = [0]

    def count(optimizer, args, kwargs):
        taken[0] = next(done)

    hook = register_optimizer_step_post_hook(count)
    try:
        yield lambda: steps is not None and taken[0] >= steps
    finally:
        hook.remove()


def test_resume_across_an_epoch_end_repeats_its_evaluation_exactly(tmp_path):
    reference_weights, reference_result = run_in_process(tmp_path / "a")
    # 20 steps per epoch: stop right before epoch 0's evaluation, then in the middle of epoch 1
    for stop_at, evaluated_after_resume in ((20, [0, 1, 2]), (33, [1, 2])):
        directory = tmp_path / f"stop-{stop_at}"
        _, interrupted = run_in_process(directory, stop_at)
        assert interrupted.interrupted and interrupted.step == stop_at
        evaluations = Evaluations()
        weights_after, resumed = run_in_process(directory, reporter=evaluations)
        assert [int(m["epoch"]) for m in evaluations.seen] == evaluated_after_resume
        assert resumed.metrics == reference_result.metrics and resumed.step == reference_result.step
        assert_same_weights(weights_after, reference_weights)
