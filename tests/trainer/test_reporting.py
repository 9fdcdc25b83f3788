"""Reporters: the throttle, the JSON-lines file, the trainer's /metrics, and the factory."""

import json
import urllib.request

import pytest

from trainwright.api.status import Progress
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.reporting import (
    ConsoleReporter, JsonlReporter, PrometheusReporter, Throttled, build_reporters, parse_reporter_names,
)


class Recorder:
    def __init__(self):
        self.steps, self.closed = [], False

    def on_step(self, progress): self.steps.append(progress.step)
    def on_eval(self, metrics): pass
    def on_checkpoint(self, step, path): pass
    def close(self): self.closed = True


def test_throttle_passes_one_report_per_interval_and_the_last_on_close():
    now = [0.0]
    recorder = Recorder()
    throttled = Throttled(recorder, interval=5.0, clock=lambda: now[0])
    for step in range(1, 13):  # one report a second
        throttled.on_step(Progress(step=step))
        now[0] += 1.0
    throttled.close()
    assert recorder.steps == [1, 6, 11, 12] and recorder.closed


def test_throttle_sends_nothing_extra_when_the_last_report_went_through():
    recorder = Recorder()
    throttled = Throttled(recorder, interval=5.0, clock=lambda: 0.0)
    throttled.on_step(Progress(step=1))
    throttled.close()
    assert recorder.steps == [1]


def test_jsonl_reporter_writes_camel_case_progress_and_events(tmp_path):
    reporter = JsonlReporter(tmp_path / "metrics.jsonl")
    reporter.on_step(Progress(step=3, totalSteps=10, loss=0.5, samplesPerSecond=100.0))
    reporter.on_eval({"val_loss": 0.4})
    reporter.on_checkpoint(3, "/c/step-3")
    reporter.close()
    events = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert events[0] == {"event": "step", "step": 3, "totalSteps": 10, "epoch": 0, "loss": 0.5, "samplesPerSecond": 100.0}
    assert events[1]["val_loss"] == 0.4 and events[2]["step"] == 3


def test_prometheus_reporter_serves_trainer_metrics():
    reporter = PrometheusReporter(0, {"job": "demo"})
    try:
        reporter.on_step(Progress(step=7, totalSteps=20, loss=1.25, samplesPerSecond=50.0, etaSeconds=3.0))
        reporter.on_eval({"val_accuracy": 0.9, "epoch": 0.0})
        reporter.on_checkpoint(7, "/c")
        text = urllib.request.urlopen(f"http://127.0.0.1:{reporter.port}/metrics", timeout=5).read().decode()
    finally:
        reporter.close()
    assert 'trainwright_trainer_step{job="demo"} 7.0' in text
    assert 'trainwright_trainer_loss{job="demo"} 1.25' in text
    assert 'trainwright_trainer_validation_metric{job="demo",metric="val_accuracy"} 0.9' in text
    assert 'trainwright_trainer_checkpoints_total{job="demo"} 1.0' in text


def test_console_reporter_prints_plain_lines_off_a_terminal(capsys):
    from rich.console import Console

    reporter = ConsoleReporter("demo", Console(file=None, force_terminal=False, stderr=True))
    reporter.on_step(Progress(step=5, totalSteps=10, epoch=1, loss=0.25, samplesPerSecond=99.0, etaSeconds=4.0))
    reporter.on_eval({"epoch": 1.0, "val_loss": 0.3})
    reporter.close()
    err = capsys.readouterr().err
    assert "demo step 5/10 epoch 1 loss 0.2500 99 samples/s eta 4s" in err and "val_loss 0.3000" in err


def test_unknown_reporter_names_are_refused_with_the_choices():
    with pytest.raises(TrainerError, match="TRAINWRIGHT_REPORTERS: unknown reporter 'graphite'; use a comma list of console"):
        parse_reporter_names("console, graphite")
    with pytest.raises(TrainerError, match="unknown reporter"):
        build_reporters(["nope"], output_dir=".")


def test_kubernetes_reporter_needs_the_job_name_and_namespace(tmp_path):
    with pytest.raises(TrainerError, match="TRAINWRIGHT_JOB_NAME"):
        build_reporters(["kubernetes"], output_dir=tmp_path)
