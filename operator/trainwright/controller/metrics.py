"""/metrics: a custom collector over the jobs the operator knows, so a deleted job's series vanish."""

import contextlib
import threading
import time
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from trainwright.api import PHASES

JOB_LABELS = ["namespace", "name", "strategy"]


@dataclass(frozen=True)
class JobSnapshot:
    namespace: str
    name: str
    strategy: str
    phase: str
    gpus: int
    progress_ratio: float | None
    eta_seconds: float | None
    gpu_seconds: float
    cost_usd: float
    estimated_cost_usd: float | None
    projected_cost_usd: float | None
    budget_usd: float | None
    samples_per_second: float | None
    loss: float | None


def snapshot_of(body: dict) -> JobSnapshot:
    """What /metrics shows of one TrainingJob, read from its spec and status."""
    spec, status = body.get("spec") or {}, body.get("status") or {}
    plan, progress, cost = status.get("plan") or {}, status.get("progress") or {}, status.get("cost") or {}
    return JobSnapshot(
        namespace=body["metadata"]["namespace"], name=body["metadata"]["name"],
        strategy=plan.get("strategy") or spec.get("strategy", "auto"),
        phase=status.get("phase") or "Pending", gpus=plan.get("gpus", 0),
        progress_ratio=progress.get("ratio"),
        eta_seconds=cost["etaSeconds"] if cost.get("etaSeconds") is not None else progress.get("etaSeconds"),
        gpu_seconds=cost.get("gpuSeconds", 0.0), cost_usd=cost.get("usd", 0.0),
        estimated_cost_usd=plan.get("estimatedCostUSD"), projected_cost_usd=cost.get("projectedUSD"),
        budget_usd=(spec.get("budget") or {}).get("maxCostUSD"),
        samples_per_second=progress.get("samplesPerSecond"), loss=progress.get("loss"),
    )


class JobStore:
    """The latest snapshot of every job, keyed by (namespace, name); thread-safe."""

    def __init__(self):
        self._jobs: dict[tuple[str, str], JobSnapshot] = {}
        self._lock = threading.Lock()
        self.last_event = 0.0
        # Whether this replica exports the jobs' series: with leader election only the leader
        # does, or every sum over jobs would count each job once per replica.
        self.exporting_jobs = True

    def put(self, snapshot: JobSnapshot) -> None:
        with self._lock:
            self._jobs[(snapshot.namespace, snapshot.name)] = snapshot
            self.last_event = time.time()

    def remove(self, namespace: str, name: str) -> None:
        with self._lock:
            self._jobs.pop((namespace, name), None)
            self.last_event = time.time()

    def all(self) -> list[JobSnapshot]:
        with self._lock:
            return list(self._jobs.values())


class JobCollector:
    def __init__(self, store: JobStore):
        self.store = store

    def collect(self):
        jobs = self.store.all() if self.store.exporting_jobs else []
        phase = GaugeMetricFamily("trainwright_job_phase", "1 for the job's current phase.", labels=JOB_LABELS + ["phase"])
        gauges = {
            "progress_ratio": GaugeMetricFamily("trainwright_job_progress_ratio", "Fraction of training steps done.", labels=JOB_LABELS),
            "eta_seconds": GaugeMetricFamily("trainwright_job_eta_seconds", "Projected seconds left, from the measured throughput.", labels=JOB_LABELS),
            "gpus": GaugeMetricFamily("trainwright_job_gpus", "GPUs the job runs on.", labels=JOB_LABELS),
            "estimated_cost_usd": GaugeMetricFamily("trainwright_job_estimated_cost_dollars", "The planner's cost estimate.", labels=JOB_LABELS),
            "projected_cost_usd": GaugeMetricFamily("trainwright_job_projected_cost_dollars", "Accrued cost plus the steps left at the measured rate.", labels=JOB_LABELS),
            "budget_usd": GaugeMetricFamily("trainwright_job_budget_dollars", "spec.budget.maxCostUSD.", labels=JOB_LABELS),
            "samples_per_second": GaugeMetricFamily("trainwright_job_samples_per_second", "Training throughput.", labels=JOB_LABELS),
            "loss": GaugeMetricFamily("trainwright_job_loss", "Recent training loss.", labels=JOB_LABELS),
        }
        gpu_seconds = CounterMetricFamily("trainwright_job_gpu_seconds", "GPU-seconds accrued.", labels=JOB_LABELS)
        cost = CounterMetricFamily("trainwright_job_cost_dollars", "Cost accrued in dollars.", labels=JOB_LABELS)
        for job in jobs:
            labels = [job.namespace, job.name, job.strategy]
            for name in PHASES:
                phase.add_metric(labels + [name], 1.0 if job.phase == name else 0.0)
            for attribute, family in gauges.items():
                value = getattr(job, attribute)
                if value is not None:
                    family.add_metric(labels, float(value))
            gpu_seconds.add_metric(labels, job.gpu_seconds)
            cost.add_metric(labels, job.cost_usd)
        yield phase
        yield from gauges.values()
        yield gpu_seconds
        yield cost
        last = GaugeMetricFamily("trainwright_operator_last_watch_event_timestamp_seconds",
                                 "Unix time of the last TrainingJob watch event.")
        last.add_metric([], self.store.last_event)
        yield last
        leading = GaugeMetricFamily("trainwright_operator_leader",
                                    "1 when this replica acts on jobs (and exports their series), 0 in standby.")
        leading.add_metric([], 1.0 if self.store.exporting_jobs else 0.0)
        yield leading


class OperatorMetrics:
    def __init__(self, store: JobStore):
        self.registry = CollectorRegistry()
        self.registry.register(JobCollector(store))
        self.handler_runs = Counter("trainwright_operator_handler_runs", "Handler runs.",
                                    ["handler", "result"], registry=self.registry)
        self.handler_duration = Histogram("trainwright_operator_handler_duration_seconds", "Handler run time.",
                                          ["handler", "result"], registry=self.registry)
        self.jobs_known = Gauge("trainwright_operator_jobs", "TrainingJobs the operator knows.",
                                registry=self.registry)
        self.jobs_known.set_function(lambda: len(store.all()))

    def observe(self, handler: str, result: str, seconds: float) -> None:
        self.handler_runs.labels(handler, result).inc()
        self.handler_duration.labels(handler, result).observe(seconds)

    @contextlib.contextmanager
    def timed(self, handler: str):
        """Count and time a piece of work (a reconcile, a launch) by result."""
        start, result = time.perf_counter(), "error"
        try:
            yield
            result = "success"
        finally:
            self.observe(handler, result, time.perf_counter() - start)
