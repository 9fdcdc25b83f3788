"""Progress reporters behind one interface: console, JSON lines, Prometheus, Kubernetes status.

The loop calls `on_step` at its report interval (the only time it syncs with the device),
`on_eval` after each evaluation and `on_checkpoint` after each checkpoint; `close` at the end.
`Throttled` limits a slow reporter (the status patch) to one call per interval, plus the last.
"""

import json
import time
from pathlib import Path
from typing import Callable, Protocol

from trainwright.api.status import Progress
from trainwright.api import pod_contract as pod
from trainwright.trainer.errors import TrainerError

REPORTER_NAMES = ("console", "jsonl", "prometheus", "kubernetes")
KUBERNETES_INTERVAL_SECONDS = 5.0


class Reporter(Protocol):
    def on_step(self, progress: Progress) -> None: ...
    def on_eval(self, metrics: dict[str, float]) -> None: ...
    def on_checkpoint(self, step: int, path: str) -> None: ...
    def close(self) -> None: ...


def now_rfc3339() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


class Reporters:
    """Many reporters as one."""

    def __init__(self, reporters: list[Reporter]):
        self.reporters = list(reporters)

    def on_step(self, progress: Progress) -> None:
        for reporter in self.reporters:
            reporter.on_step(progress)

    def on_eval(self, metrics: dict[str, float]) -> None:
        for reporter in self.reporters:
            reporter.on_eval(metrics)

    def on_checkpoint(self, step: int, path: str) -> None:
        for reporter in self.reporters:
            reporter.on_checkpoint(step, path)

    def close(self) -> None:
        for reporter in self.reporters:
            reporter.close()


class Throttled:
    """Passes `on_step` on at most once per `interval` seconds; `close` sends the last one held back."""

    def __init__(self, reporter: Reporter, interval: float, clock: Callable[[], float] = time.monotonic):
        self.reporter, self.interval, self.clock = reporter, interval, clock
        self.last_sent: float | None = None
        self.pending: Progress | None = None

    def on_step(self, progress: Progress) -> None:
        now = self.clock()
        if self.last_sent is None or now - self.last_sent >= self.interval:
            self.reporter.on_step(progress)
            self.last_sent, self.pending = now, None
        else:
            self.pending = progress

    def on_eval(self, metrics: dict[str, float]) -> None:
        self.reporter.on_eval(metrics)

    def on_checkpoint(self, step: int, path: str) -> None:
        self.reporter.on_checkpoint(step, path)

    def close(self) -> None:
        if self.pending is not None:
            self.reporter.on_step(self.pending)
            self.pending = None
        self.reporter.close()


class JsonlReporter:
    """One JSON object per event in `metrics.jsonl` (appended to, so a resumed run continues it)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.handle = self.path.open("a", encoding="utf-8")

    def _write(self, event: dict) -> None:
        self.handle.write(json.dumps(event) + "\n")
        self.handle.flush()

    def on_step(self, progress: Progress) -> None:
        self._write({"event": "step", **progress.to_wire()})

    def on_eval(self, metrics: dict[str, float]) -> None:
        self._write({"event": "eval", "time": now_rfc3339(), **metrics})

    def on_checkpoint(self, step: int, path: str) -> None:
        self._write({"event": "checkpoint", "time": now_rfc3339(), "step": step, "path": path})

    def close(self) -> None:
        self.handle.close()


class ConsoleReporter:
    """A rich progress bar (loss, samples/s, ETA) on a terminal; plain lines otherwise (logs)."""

    def __init__(self, title: str = "training", console=None):
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeRemainingColumn

        self.console = console or Console(stderr=True)
        self.title = title
        self.bar = None
        if self.console.is_terminal:
            self.bar = Bar(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[rate]} samples/s"),
                TimeRemainingColumn(), console=self.console,
            )
            self.bar.start()
        self.task = None

    def on_step(self, p: Progress) -> None:
        loss = "-" if p.loss is None else f"{p.loss:.4f}"
        rate = "-" if p.samplesPerSecond is None else f"{p.samplesPerSecond:,.0f}"
        if self.bar is None:
            eta = "-" if p.etaSeconds is None else f"{p.etaSeconds:.0f}s"
            self.console.print(f"{self.title} step {p.step}/{p.totalSteps} epoch {p.epoch} loss {loss} "
                               f"{rate} samples/s eta {eta}", highlight=False)
            return
        if self.task is None:
            self.task = self.bar.add_task(self.title, total=p.totalSteps, loss=loss, rate=rate)
        self.bar.update(self.task, completed=p.step, loss=loss, rate=rate, description=f"{self.title} epoch {p.epoch}")

    def on_eval(self, metrics: dict[str, float]) -> None:
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k != "epoch")
        self.console.print(f"{self.title} eval epoch {metrics.get('epoch', '?'):.0f}: {shown}", highlight=False)

    def on_checkpoint(self, step: int, path: str) -> None:
        pass  # the bar is the signal; checkpoints go to jsonl and the status

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class PrometheusReporter:
    """The trainer's own /metrics: `trainwright_trainer_*` gauges and counters on `port`."""

    def __init__(self, port: int, labels: dict[str, str] | None = None):
        from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

        self.registry = CollectorRegistry()
        names = list(labels or {})
        self.labels = labels or {}

        def gauge(name, doc, extra=()):
            return Gauge(f"trainwright_trainer_{name}", doc, names + list(extra), registry=self.registry)

        self.step = gauge("step", "Optimizer steps done.")
        self.total_steps = gauge("total_steps", "Optimizer steps planned.")
        self.epoch = gauge("epoch", "Current epoch, from 0.")
        self.loss = gauge("loss", "Recent training loss.")
        self.samples = gauge("samples_per_second", "Training throughput over all workers.")
        self.eta = gauge("eta_seconds", "Estimated seconds left.")
        self.data_wait = gauge("data_wait_seconds", "Mean time per step spent waiting for data, over the last report interval.")
        self.data_wait_share = gauge("data_wait_share", "Share of the last report interval spent waiting for data.")
        self.validation = gauge("validation_metric", "Latest validation metrics.", ["metric"])
        self.checkpoints = Counter("trainwright_trainer_checkpoints", "Checkpoints written.", names, registry=self.registry)
        self.checkpoint_step = gauge("checkpoint_step", "Step of the newest checkpoint.")
        self.server, self.thread = start_http_server(port, registry=self.registry)

    @property
    def port(self) -> int:
        return self.server.server_port

    def _set(self, metric, value) -> None:
        if value is not None:
            (metric.labels(**self.labels) if self.labels else metric).set(value)

    def on_step(self, p: Progress) -> None:
        for metric, value in ((self.step, p.step), (self.total_steps, p.totalSteps), (self.epoch, p.epoch),
                              (self.loss, p.loss), (self.samples, p.samplesPerSecond), (self.eta, p.etaSeconds)):
            self._set(metric, value)
        metrics = p.metrics or {}
        self._set(self.data_wait, metrics.get("data_wait_seconds"))
        self._set(self.data_wait_share, metrics.get("data_wait_share"))

    def on_eval(self, metrics: dict[str, float]) -> None:
        for name, value in metrics.items():
            if name.startswith("val_"):
                self.validation.labels(**self.labels, metric=name).set(value)

    def on_checkpoint(self, step: int, path: str) -> None:
        (self.checkpoints.labels(**self.labels) if self.labels else self.checkpoints).inc()
        self._set(self.checkpoint_step, step)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def parse_reporter_names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in REPORTER_NAMES]
    if unknown:
        raise TrainerError(pod.REPORTERS_ENV, f"unknown reporter {unknown[0]!r}; use a comma list of {', '.join(REPORTER_NAMES)}")
    return names


def build_reporters(names: list[str], *, output_dir: str | Path, metrics_port: int = pod.METRICS_PORT,
                    job_name: str | None = None, namespace: str | None = None, title: str = "training") -> Reporters:
    """Reporters by name; the Kubernetes one is throttled to one status patch per 5 s."""
    reporters: list[Reporter] = []
    for name in names:
        if name == "console":
            reporters.append(ConsoleReporter(title))
        elif name == "jsonl":
            reporters.append(JsonlReporter(Path(output_dir) / "metrics.jsonl"))
        elif name == "prometheus":
            reporters.append(PrometheusReporter(metrics_port, {"job": job_name} if job_name else None))
        elif name == "kubernetes":
            if not job_name or not namespace:
                raise TrainerError(pod.REPORTERS_ENV, f"the kubernetes reporter needs {pod.JOB_NAME_ENV} and {pod.JOB_NAMESPACE_ENV}")
            try:
                from trainwright.trainer.kube_reporter import KubernetesReporter
            except ImportError as error:
                raise TrainerError(pod.REPORTERS_ENV, f"the kubernetes reporter is not available: {error}") from None
            try:
                kubernetes = KubernetesReporter(job_name, namespace)
            except RuntimeError as error:
                raise TrainerError(pod.REPORTERS_ENV, f"the kubernetes reporter cannot start: {error}") from None
            reporters.append(Throttled(kubernetes, KUBERNETES_INTERVAL_SECONDS))
        else:
            raise TrainerError(pod.REPORTERS_ENV, f"unknown reporter {name!r}; one of {', '.join(REPORTER_NAMES)}")
    return Reporters(reporters)


