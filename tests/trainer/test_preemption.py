"""Preemption across Ray workers: a real SIGTERM to the driver (`trainwright run --workers 2`) or to
one Ray worker process stops every worker at the same step, rank 0 writes a checkpoint, the run
exits 143, and running again resumes to weights bit-identical to an uninterrupted run."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from trainer_helpers import TINY_CLASSIFIER, assert_same_weights, make_job, settings_for
from trainer_helpers import saved_weights as weights
from trainwright.trainer.runner import run_job

pytestmark = pytest.mark.slow

# 2 workers x 8 = 16 a step, 2400 training rows: 150 steps an epoch, 300 in all; a checkpoint every 20
JOB = make_job("scratch", {"task": "sequence-classification", "architecture": TINY_CLASSIFIER},
               {"source": "builtin:topics", "samples": 3000}, {"epochs": 2, "learningRate": 3e-3, "batchSize": 8},
               {"everySteps": 20, "keep": 2}, name="preempt")
TOTAL_STEPS = 300


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted 2-worker run's final weights."""
    output = tmp_path_factory.mktemp("preempt-reference")
    outcome = run_job(settings_for(JOB, output, workers=2))
    assert outcome.result.step == TOTAL_STEPS and not outcome.result.interrupted
    return weights(output)


def start_run(tmp_path: Path, output: Path) -> subprocess.Popen:
    manifest = tmp_path / "job.json"
    manifest.write_text(json.dumps(JOB.model_dump(mode="json", by_alias=True, exclude_none=True)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRAINWRIGHT_PROCESS_DIR": str(tmp_path / "processes")}
    return subprocess.Popen(
        [sys.executable, "-m", "trainwright.cli", "run", str(manifest), "--workers", "2", "--output", str(output),
         "--reporters", "jsonl", "--no-calibration"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)  # Ray forwards the workers' lines


def wait_for_checkpoint(output: Path, process: subprocess.Popen, timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        checkpoints = output / "checkpoints"
        if checkpoints.is_dir() and any(p.name.startswith("step-") for p in checkpoints.iterdir()):
            return
        if process.poll() is not None:
            raise AssertionError(f"exited {process.returncode} before a checkpoint:\n{process.stdout.read()}")
        time.sleep(0.05)
    raise AssertionError("no checkpoint appeared")


def ray_workers(driver: int) -> list[psutil.Process]:
    return [p for p in psutil.Process(driver).children(recursive=True)
            if any("RayTrainWorker" in part for part in p.cmdline())]


def finish(process: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    try:
        stderr, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stderr, _ = process.communicate()
        raise AssertionError(f"did not finish in {timeout} s:\n{stderr[-3000:]}")
    return process.returncode, stderr


def stopped_line(stderr: str) -> re.Match:
    match = re.search(r"stopped at step (\d+) of (\d+) \(([^)]*)\); checkpoint written in ([0-9.]+) s: (\S+)", stderr)
    assert match, stderr[-3000:]
    return match


def interrupt_and_resume(tmp_path: Path, reference: dict, interrupt) -> re.Match:
    output = tmp_path / "out"
    process = start_run(tmp_path, output)
    wait_for_checkpoint(output, process)
    interrupt(process)
    code, stderr = finish(process)
    assert code == 143, stderr[-3000:]
    stopped = stopped_line(stderr)
    step = int(stopped.group(1))
    assert 0 < step < TOTAL_STEPS, "the run finished before the signal: make it longer"
    assert Path(stopped.group(5)).name == f"step-{step:09d}" and Path(stopped.group(5)).is_dir()
    assert not (output / "model").exists()
    assert not any(p.name.startswith(".tmp") for p in (output / "checkpoints").iterdir())
    resumed = start_run(tmp_path, output)
    code, stderr = finish(resumed)
    assert code == 0, stderr[-3000:]
    assert f"resumed from {output / 'checkpoints' / f'step-{step:09d}'} at step {step} of {TOTAL_STEPS}" in stderr
    assert_same_weights(weights(output), reference)
    return stopped


def test_sigterm_to_the_driver_stops_every_worker_with_a_checkpoint_then_resumes(tmp_path, reference):
    stopped = interrupt_and_resume(tmp_path, reference, lambda process: os.kill(process.pid, signal.SIGTERM))
    assert stopped.group(3) == "SIGTERM to the driver"


def test_sigterm_to_one_ray_worker_stops_every_worker_with_a_checkpoint_then_resumes(tmp_path, reference):
    def rank_1(process):
        """The worker that is not rank 0: rank 0 is the one that wrote the first checkpoint."""
        checkpoints = tmp_path / "out" / "checkpoints"
        writer = json.loads(next(checkpoints.glob("step-*/meta.json")).read_text())["writtenBy"]["pid"]
        deadline = time.monotonic() + 60
        while len(found := ray_workers(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        [other] = [p.pid for p in found if p.pid != writer]
        os.kill(other, signal.SIGTERM)

    stopped = interrupt_and_resume(tmp_path, reference, rank_1)
    assert stopped.group(3) == "a stop request on another rank"  # rank 0 stopped because rank 1 was signalled


def test_the_ray_pods_prestop_hook_stops_the_driver_and_both_workers_with_a_checkpoint_then_resumes(tmp_path, reference):
    """What a RayJob pod's preStop hook does before the kubelet stops `ray start`: SIGTERM to every
    trainer process that registered (here all three are in one place), then wait for them to exit."""
    hook = {}

    def run_the_hook(process):
        deadline = time.monotonic() + 60
        while len(ray_workers(process.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        expected = sorted([process.pid] + [p.pid for p in ray_workers(process.pid)])
        began = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "trainwright.trainer.prestop"], capture_output=True, text=True,
                              env={**os.environ, "TRAINWRIGHT_PROCESS_DIR": str(tmp_path / "processes")}, timeout=300)
        hook.update(expected=expected, seconds=time.monotonic() - began, stderr=done.stderr, code=done.returncode,
                    driver_exited=process.poll() is not None)

    interrupt_and_resume(tmp_path, reference, run_the_hook)
    assert hook["code"] == 0, hook["stderr"]
    assert f"SIGTERM to trainer processes {hook['expected']}" in hook["stderr"]
    assert "all stopped" in hook["stderr"] and hook["driver_exited"], hook["stderr"]  # it waited for the checkpoint
