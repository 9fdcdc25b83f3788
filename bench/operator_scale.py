"""Operator scale on the local control plane: a burst, a steady arrival, and many finished jobs.

1. Burst: N TrainingJobs applied `--concurrency` at once; time until the last launcher (the
   trainer Job) exists. The operator is compared with a baseline measured in the same run on
   the same API server, with the operator's own client: an operator that costs nothing, making
   only the writes every operator must make, fed the same way. Each TrainingJob is applied
   (`--concurrency` at once, one connection pool, like kubectl), and right after its apply,
   with as many jobs at once as the operator has workers and a pool like the operator's, it
   gets its children (ConfigMap, ServiceAccount, Role, RoleBinding at once, then the Job) and
   its first status. That status is the document the operator writes at launch, made by the
   pure functions its Reconciler calls, so every write has the operator's size. The API server
   is the limit here, and the TrainingJob's apply and status cost it about as much as the five
   children: a baseline of children alone would charge the operator for writes it cannot
   avoid. The ratio is what the operator adds to the least any operator costs.
2. Steady arrival: `--rate` jobs/s for `--duration` s, each applied at its scheduled time
   whatever the operator is doing (open loop), latency counted from that time, so a slow
   operator or API server shows in the latency instead of slowing the arrivals.
3. Resident: `--resident` jobs launched by one operator and finished, then that operator left
   idle for `--idle-seconds`: its memory with that many jobs known and its CPU while nothing
   happens but resyncs (each job's own, spread over FINISHED_RESYNC_SECONDS for a finished job,
   so any window of the idle time sees its share of them). This runs on a second
   control plane, started after the first is gone, whose kwok pods succeed a second after they
   start (the first keeps its pods running, so that no completions load the bursts).

Rounds swap the order of baseline and operator each time, so that a drift (etcd growing, its
compaction) favours neither; medians are reported. Each control-plane process's CPU and the
API server's writes per job are printed for every run, so a gap can be traced to its requests.

    .venv/bin/python bench/operator_scale.py [--jobs 500] [--rounds 5] [--concurrency 16]
        [--rate 10 --duration 60] [--resident 5000 --idle-seconds 150]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from trainwright.api import FINISHED_PHASES, TrainingJob, parse_job
from trainwright.api.status import Plan
from trainwright.controller.children import LaunchSettings, build_children
from trainwright.controller.constants import DEFAULT_TRAINER_IMAGE, MANAGED_BY, MANAGED_BY_LABEL, RECONCILE_WORKERS
from trainwright.controller.informer import Informer
from trainwright.controller.kube import Kube, load_configuration, resource_path
from trainwright.controller.observe import waiting_reason
from trainwright.controller.reconcile import (
    FINISHED_RESYNC_SECONDS, LauncherState, Observed, fields_to_write, parse_time, planned_status, reconcile, rfc3339,
)
from trainwright.controller.reconciler import create_children
from trainwright.planner import Catalog, default_catalog, plan_job
from trainwright.planner.catalog import CPU

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))
from devcluster import ControlPlane, OperatorProcess, fake_nodes, wait_for  # noqa: E402 - after the path

API_VERSION = "trainwright.dev/v1alpha1"
# Operator and baseline build the same children: the image is in the launcher's size.
LAUNCH = LaunchSettings(trainer_image=DEFAULT_TRAINER_IMAGE)
RESIDENT_RUN_SECONDS = 1.0  # a resident job's pod succeeds this long after it starts
WARM_UP_JOBS = 100  # a first, uncounted baseline burst of at most this many jobs
SETTLE_SECONDS = 5.0  # after the last job finished: its Events and the API server's follow-ups
TARGETS = {"ratio": 1.10, "steady_p99": 1.0, "rss_mb": 300.0, "idle_cpu_percent": 2.0}


def job_document(name: str, namespace: str) -> dict:
    return {"apiVersion": API_VERSION, "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"strategy": "fine-tune", "model": {"source": "hf://gpt2", "task": "causal-lm"},
                     "dataset": {"source": "builtin:demo-b", "samples": 1000},
                     "resources": {"gpus": 0, "cpusPerWorker": 1, "memoryPerWorker": "64Mi"}}}


def applier(namespace: str):
    """Applies job `index` as `kubectl apply` would create it; returns it as stored."""
    async def apply(kube: Kube, index: int) -> dict:
        return await kube.create(job_document(f"j{index}", namespace))
    return apply


def bench_nodes() -> list[dict]:
    """One huge fake node, so every pod schedules once and then just runs (no retry churn)."""
    [node] = [n for n in fake_nodes() if n["metadata"]["name"] == "cpu-node-0"]
    node = copy.deepcopy(node)
    node["metadata"]["name"] = "bench-node"
    capacity = {"cpu": "100000", "memory": "100Ti", "pods": "100000", "ephemeral-storage": "100Ti"}
    node["status"] = {"capacity": capacity, "allocatable": dict(capacity)}
    return [node]


def parsed(body: dict, catalog: Catalog) -> tuple[TrainingJob, Plan]:
    """The job and its plan, as the operator's Reconciler reads a stored TrainingJob."""
    meta = body["metadata"]
    job = parse_job({"apiVersion": body["apiVersion"], "kind": body["kind"],
                     "metadata": {"name": meta["name"], "namespace": meta["namespace"]}, "spec": body["spec"]})
    return job, plan_job(job.spec, catalog)


def launch_status(body: dict, job: TrainingJob, plan: Plan, price_per_hour: float, now: datetime) -> dict:
    """The status fields the operator writes when it launches this new job, by the path of
    `Reconciler._reconcile`: the plan into the status, then the decision with the launcher
    there, launchedAt, and the fields that differ from the (empty) status."""
    meta = body["metadata"]
    current = planned_status({}, plan, now)
    observed = Observed(LauncherState(exists=True), 0, {}, now, waiting_reason([]), namespace=meta["namespace"],
                        generation=meta.get("generation"), created=parse_time(meta.get("creationTimestamp")))
    decision = reconcile(job.spec, current, observed, price_per_hour)
    decision.status["launchedAt"] = rfc3339(now)
    return fields_to_write({}, {"plan": current["plan"], **decision.status}, now)


class Watch:
    """List and watch one resource with the operator's own informer, in a thread with its own
    event loop, so that timing costs the bench little CPU; `record(events, now)` sees each batch."""

    def __init__(self, cp: ControlPlane, path: str, selector: str, record: Callable[[list, float], None]):
        self.loop = asyncio.new_event_loop()
        self.task = self.loop.create_task(self._run(cp, path, selector, record))
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.task,), daemon=True)
        self.thread.start()

    async def _run(self, cp: ControlPlane, path: str, selector: str, record) -> None:
        async with Kube(load_configuration(str(cp.kubeconfig))) as kube:
            informer = Informer(kube, path, selector, lambda events: record(events, time.monotonic()))
            try:
                await informer.run()
            except asyncio.CancelledError:
                pass

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(timeout=10)


class LauncherWatch(Watch):
    """When each trainer Job first appeared in a namespace, by its TrainingJob's name."""

    def __init__(self, cp: ControlPlane, namespace: str):
        self.seen: dict[str, float] = {}

        def record(events, now):
            for _, job in events:
                self.seen.setdefault(job["metadata"]["name"].removesuffix("-trainer"), now)
        super().__init__(cp, resource_path("batch/v1", "Job", namespace), f"{MANAGED_BY_LABEL}={MANAGED_BY}", record)


class FinishedWatch(Watch):
    """When each TrainingJob in a namespace first had a finished phase."""

    def __init__(self, cp: ControlPlane, namespace: str):
        self.finished: dict[str, float] = {}

        def record(events, now):
            for kind, job in events:
                if kind != "DELETED" and (job.get("status") or {}).get("phase") in FINISHED_PHASES:
                    self.finished.setdefault(job["metadata"]["name"], now)
        super().__init__(cp, resource_path(API_VERSION, "TrainingJob", namespace), "", record)


def delete_namespace(cp: ControlPlane, name: str) -> None:
    """Delete and wait, so one run's objects do not load the next."""
    cp.api("DELETE", f"/api/v1/namespaces/{name}", ok=(200, 202, 404))
    wait_for(lambda: cp.api("GET", f"/api/v1/namespaces/{name}", ok=(200, 404)).get("kind") == "Status", timeout=600)


def make_namespace(cp: ControlPlane) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    cp.api("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    wait_for(lambda: cp.api("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default", ok=(200, 404)).get("kind")
             == "ServiceAccount", timeout=30)
    return name


def start_operator(cp: ControlPlane, namespace: str, log: Path) -> OperatorProcess:
    return OperatorProcess(cp, log, args=["--namespace", namespace, "--trainer-image", LAUNCH.trainer_image]).start()


def install_crd(cp: ControlPlane) -> None:
    cp.kubectl("apply", "-f", str(ROOT / "crds" / "trainingjobs.trainwright.dev.yaml"))
    cp.kubectl("wait", "--for=condition=Established", "crd/trainingjobs.trainwright.dev")


def create_all(cp: ControlPlane, jobs: int, concurrency: int, first, then=None) -> dict[str, float]:
    """For each job `first(kube, index)`, `concurrency` jobs at a time, with a client of its
    own like `kubectl` (the applies); then, if given, `then(kube, index, what_first_returned)`
    with as many jobs at a time as the operator has workers and a client like the operator's,
    so that its requests never queue the applies behind them. Returns when each job's first
    request began."""
    async def run() -> list[float]:
        first_limit, then_limit = asyncio.Semaphore(concurrency), asyncio.Semaphore(RECONCILE_WORKERS)
        configuration = load_configuration(str(cp.kubeconfig))
        async with Kube(configuration, connections=4 * concurrency) as applies, Kube(configuration) as writes:
            async def one(index: int) -> float:
                async with first_limit:
                    start = time.monotonic()
                    result = await first(applies, index)
                if then is not None:
                    async with then_limit:
                        await then(writes, index, result)
                return start
            return await asyncio.gather(*(one(i) for i in range(jobs)))
    return dict(zip((f"j{i}" for i in range(jobs)), asyncio.run(run())))


def components_cpu(cp: ControlPlane) -> dict[str, float]:
    """CPU seconds used so far by each control-plane process (API server, etcd, kwok, ...)."""
    return {name: cpu_seconds(process.pid) for name, process in cp._procs.items() if process.poll() is None}


def cpu_since(cp: ControlPlane, before: dict[str, float]) -> dict[str, float]:
    return {name: seconds - before.get(name, 0.0) for name, seconds in components_cpu(cp).items()}


def requests_served(cp: ControlPlane) -> Counter:
    """The API server's request count so far, by verb and resource (its own /metrics)."""
    counts: Counter = Counter()
    for line in cp.api("GET", "/metrics").splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            resource = labels["resource"] + (f"/{labels['subresource']}" if labels["subresource"] else "")
            counts[f"{labels['verb']} {resource}"] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def requests_since(cp: ControlPlane, before: Counter, reads: bool = False) -> Counter:
    """Requests served since `before`, leaving out the watches, and unless `reads` the reads
    that run all along."""
    skip = ("WATCH",) if reads else ("WATCH", "GET", "LIST")
    return Counter({k: v for k, v in (requests_served(cp) - before).items() if not k.startswith(skip)})


def run_baseline(cp: ControlPlane, jobs: int, concurrency: int) -> dict:
    """An operator that costs nothing: each TrainingJob applied (`concurrency` at once), and
    right after its apply, with as many jobs at once as the operator has workers, the launcher's
    children in the operator's order (create_children), then the status the operator would write."""
    namespace = make_namespace(cp)
    catalog = default_catalog()
    price = catalog.get(CPU).price_per_hour
    watcher = LauncherWatch(cp, namespace)
    time.sleep(0.5)

    async def launch(kube: Kube, index: int, body: dict) -> None:
        job, plan = parsed(body, catalog)
        await create_children(kube, build_children(job, plan, body["metadata"]["uid"], LAUNCH))
        status = launch_status(body, job, plan, price, datetime.now(timezone.utc))
        await kube.request("PATCH", resource_path(API_VERSION, "TrainingJob", namespace, job.metadata.name) + "/status",
                           {"status": status}, content_type="application/merge-patch+json")

    components, served = components_cpu(cp), requests_served(cp)
    began = time.monotonic()
    starts = create_all(cp, jobs, concurrency, applier(namespace), then=launch)
    wait_for(lambda: len(watcher.seen) >= jobs, timeout=600)
    watcher.stop()
    result = {**launch_times(watcher.seen, starts, began), "components": cpu_since(cp, components),
              "requests": requests_since(cp, served)}
    delete_namespace(cp, namespace)
    return result


def run_operator(cp: ControlPlane, jobs: int, concurrency: int, log: Path) -> dict:
    namespace = make_namespace(cp)
    operator = start_operator(cp, namespace, log)
    try:
        watcher = LauncherWatch(cp, namespace)
        time.sleep(0.5)
        cpu_before, components, served = cpu_seconds(operator.process.pid), components_cpu(cp), requests_served(cp)
        began = time.monotonic()
        starts = create_all(cp, jobs, concurrency, applier(namespace))
        applied = time.monotonic() - began
        wait_for(lambda: len(watcher.seen) >= jobs, timeout=900)
        cpu = cpu_seconds(operator.process.pid) - cpu_before
        spent, requests = cpu_since(cp, components), requests_since(cp, served)
        time.sleep(2)  # steady state with every job known, for the memory figure
        watcher.stop()
        return {**launch_times(watcher.seen, starts, began), "applied": applied,
                "rss_mb": peak_mb(operator.process.pid), "cpu": cpu, "components": spent, "requests": requests}
    finally:
        operator.stop()
        delete_namespace(cp, namespace)


def run_steady(cp: ControlPlane, rate: float, duration: float, log: Path) -> dict:
    """Jobs applied at `rate` per second for `duration` seconds, each at its scheduled time
    (open loop: an apply never waits for an earlier one); latency from the scheduled time."""
    namespace, count = make_namespace(cp), int(rate * duration)
    operator = start_operator(cp, namespace, log)
    try:
        watcher = LauncherWatch(cp, namespace)
        # Steady state, not start-up: /healthz answers before the operator's watches have
        # listed, so one job goes first and the arrivals begin once its launcher exists.
        cp.kubectl("apply", "-f", "-", input=json.dumps(job_document("warm-up", namespace)))
        wait_for(lambda: "warm-up" in watcher.seen, timeout=120, message="the operator launching a first job")
        cpu_before, components, served = cpu_seconds(operator.process.pid), components_cpu(cp), requests_served(cp)

        async def run() -> list[tuple[float, float]]:
            async with Kube(load_configuration(str(cp.kubeconfig)), connections=RECONCILE_WORKERS) as kube:
                began = time.monotonic() + 0.1

                async def one(index: int) -> tuple[float, float]:
                    scheduled = began + index / rate
                    await asyncio.sleep(max(0.0, scheduled - time.monotonic()))
                    late = time.monotonic() - scheduled
                    await kube.create(job_document(f"j{index}", namespace))
                    return scheduled, late
                return await asyncio.gather(*(one(i) for i in range(count)))

        applies = asyncio.run(run())
        wait_for(lambda: len(watcher.seen) >= count + 1, timeout=600)
        cpu = cpu_seconds(operator.process.pid) - cpu_before
        spent, requests = cpu_since(cp, components), requests_since(cp, served)
        watcher.stop()
        latencies = [watcher.seen[f"j{i}"] - scheduled for i, (scheduled, _) in enumerate(applies)]
        return {"p50": percentile(latencies, 50), "p99": percentile(latencies, 99), "max": max(latencies),
                "late": max(late for _, late in applies), "rss_mb": peak_mb(operator.process.pid), "cpu": cpu,
                "components": spent, "requests": requests}
    finally:
        operator.stop()
        delete_namespace(cp, namespace)


def operator_counter(text: str, name: str, **labels: str) -> float:
    """The sum of one metric's samples with these labels, from a Prometheus text page."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            found = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}")[0]))
            if all(found.get(k) == v for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
    return total


def run_resident(jobs: int, concurrency: int, idle_seconds: float, log: Path) -> dict:
    """`jobs` jobs launched by one operator and finished, on a control plane of their own (its
    pods succeed at once); then that operator, idle, measured for `idle_seconds`."""
    with ControlPlane(run_seconds=RESIDENT_RUN_SECONDS, nodes=bench_nodes()) as cp:
        install_crd(cp)
        namespace = make_namespace(cp)
        operator = start_operator(cp, namespace, log)
        try:
            pid = operator.process.pid
            launched, finished = LauncherWatch(cp, namespace), FinishedWatch(cp, namespace)
            time.sleep(0.5)
            began = time.monotonic()
            create_all(cp, jobs, concurrency, applier(namespace))
            applied = time.monotonic() - began
            wait_for(lambda: len(finished.finished) >= jobs, timeout=max(900.0, jobs * 0.5),
                     message=lambda: f"{jobs} jobs finished ({len(finished.finished)} so far)")
            result = {"applied": applied, "launched": max(launched.seen.values()) - began,
                      "half_finished": percentile(list(finished.finished.values()), 50) - began,
                      "finished": max(finished.finished.values()) - began}
            launched.stop()
            finished.stop()
            time.sleep(SETTLE_SECONDS)

            metrics = operator.metrics()  # read outside the window: a scrape of every job's series costs CPU
            components, served = components_cpu(cp), requests_served(cp)
            cpu_before, idle_began, rss_peak = cpu_seconds(pid), time.monotonic(), 0
            while time.monotonic() - idle_began < idle_seconds:
                time.sleep(min(1.0, idle_seconds - (time.monotonic() - idle_began)))
                rss_peak = max(rss_peak, memory_bytes(pid)["VmRSS"])
            cpu, idle = cpu_seconds(pid) - cpu_before, time.monotonic() - idle_began
            memory = memory_bytes(pid)
            after = operator.metrics()
            reconciles = (operator_counter(after, "trainwright_operator_handler_runs_total", handler="reconcile")
                          - operator_counter(metrics, "trainwright_operator_handler_runs_total", handler="reconcile"))
            return {**result, "known": operator_counter(after, "trainwright_operator_jobs"), "idle": idle,
                    "cpu_percent": 100 * cpu / idle, "cpu": cpu, "reconciles": reconciles,
                    "rss_mb": memory["VmRSS"] / 2**20, "rss_peak_idle_mb": max(rss_peak, memory["VmRSS"]) / 2**20,
                    "hwm_mb": memory["VmHWM"] / 2**20, "components": cpu_since(cp, components),
                    "requests": requests_since(cp, served, reads=True)}
        finally:
            operator.stop()


def launch_times(seen: dict[str, float], starts: dict[str, float], began: float) -> dict:
    """Total time to the last launcher, and each job's apply-to-launcher latency (p50, p99)."""
    latencies = [seen[name] - start for name, start in starts.items()]
    return {"total": max(seen.values()) - began, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99)}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def memory_bytes(pid: int) -> dict[str, int]:
    """Resident set now (VmRSS) and at its peak (VmHWM) of a live process."""
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "VmHWM"):
            found[key] = int(line.split()[1]) * 1024
    return found


def peak_mb(pid: int) -> float:
    """The peak resident set (VmHWM) of a live process so far, in MiB."""
    return memory_bytes(pid)["VmHWM"] / 2**20


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def print_costs(name: str, row: dict, jobs: int) -> None:
    print(f"  CPU seconds, {name}: " + ", ".join(
        f"{component} {seconds:.1f}" for component, seconds in row["components"].items()), flush=True)
    print("    writes per job until the last launcher: " + ", ".join(
        f"{key} {count / jobs:.2f}" for key, count in row["requests"].most_common()), flush=True)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500, help="jobs in each burst")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16, help="TrainingJobs applied at once in a burst")
    parser.add_argument("--rate", type=float, default=10.0, help="steady arrival: jobs per second")
    parser.add_argument("--duration", type=float, default=60.0, help="steady arrival: seconds (0: none)")
    parser.add_argument("--resident", type=int, default=5000, help="finished jobs the idle operator knows (0: none)")
    parser.add_argument("--idle-seconds", type=float, default=150.0,
                        help=f"idle time measured; a finished job is resynced every {FINISHED_RESYNC_SECONDS:.0f} s")
    args = parser.parse_args()
    log = Path(tempfile.mkdtemp(prefix="trainwright-bench-")) / "operator.log"
    steady_jobs = int(args.rate * args.duration)
    baseline, operator, steady = [], [], []
    began = time.monotonic()
    with ControlPlane(run_seconds=3600, nodes=bench_nodes()) if args.rounds else contextlib.nullcontext() as cp:
        if args.rounds:
            install_crd(cp)
            # The API server's and this process's first requests are slower: not in round 1.
            warm_up = run_baseline(cp, min(args.jobs, WARM_UP_JOBS), args.concurrency)
            print(f"warm-up: baseline of {min(args.jobs, WARM_UP_JOBS)} jobs, {warm_up['total']:.2f}s (not counted)",
                  flush=True)
        for round_ in range(args.rounds):
            if round_ % 2 == 0:
                baseline.append(run_baseline(cp, args.jobs, args.concurrency))
                operator.append(run_operator(cp, args.jobs, args.concurrency, log))
            else:
                operator.append(run_operator(cp, args.jobs, args.concurrency, log))
                baseline.append(run_baseline(cp, args.jobs, args.concurrency))
            base, last = baseline[-1], operator[-1]
            print(f"round {round_ + 1}: baseline {base['total']:.2f}s (p50 {base['p50']:.3f}s, "
                  f"p99 {base['p99']:.3f}s); "
                  f"operator {last['total']:.2f}s (all applied at {last['applied']:.2f}s; p50 {last['p50']:.3f}s, "
                  f"p99 {last['p99']:.3f}s, peak RSS {last['rss_mb']:.0f} MB, operator CPU {last['cpu']:.1f}s); "
                  f"operator/baseline {last['total'] / base['total']:.2f}x", flush=True)
            print_costs("baseline", base, args.jobs)
            print_costs("operator", last, args.jobs)
            if steady_jobs:
                steady.append(run_steady(cp, args.rate, args.duration, log))
                s = steady[-1]
                print(f"  steady {args.rate:g} jobs/s for {args.duration:g}s: apply-to-launcher p50 {s['p50']:.3f}s, "
                      f"p99 {s['p99']:.3f}s, max {s['max']:.3f}s (applies at most {s['late'] * 1000:.0f} ms late; "
                      f"peak RSS {s['rss_mb']:.0f} MB, operator CPU {s['cpu']:.1f}s)", flush=True)
                print_costs("operator, steady", s, steady_jobs)
    resident = None
    if args.resident:
        print(f"resident: {args.resident} jobs on a control plane whose pods succeed {RESIDENT_RUN_SECONDS:g}s after "
              f"they start, then {args.idle_seconds:g}s idle", flush=True)
        resident = run_resident(args.resident, args.concurrency, args.idle_seconds, log)
        print("  CPU seconds, idle: " + ", ".join(
            f"{component} {seconds:.1f}" for component, seconds in resident["components"].items()), flush=True)
        print(f"    requests in {resident['idle']:.0f}s idle (all clients): " + ", ".join(
            f"{key} {count}" for key, count in resident["requests"].most_common()), flush=True)

    def median(rows, key):
        return statistics.median(r[key] for r in rows)

    results = []  # (measured, target, ok)
    print(f"\nsummary (rounds: {args.rounds}, medians; {time.monotonic() - began:.0f}s in all; operator log: {log})")
    if args.rounds:
        ratio = median(operator, "total") / median(baseline, "total")
        print(f"burst of {args.jobs}, {args.concurrency} applied at once: operator {median(operator, 'total'):.2f}s "
              f"(launcher p50 {median(operator, 'p50'):.3f}s, p99 {median(operator, 'p99'):.3f}s, peak RSS "
              f"{median(operator, 'rss_mb'):.0f} MB, CPU {median(operator, 'cpu'):.1f}s); baseline "
              f"{median(baseline, 'total'):.2f}s (p50 {median(baseline, 'p50'):.3f}s, "
              f"p99 {median(baseline, 'p99'):.3f}s)")
        results.append(("burst: operator/baseline total", f"{ratio:.2f}x", f"<= {TARGETS['ratio']:.2f}x",
                        ratio <= TARGETS["ratio"]))
    if steady:
        p99 = median(steady, "p99")
        results.append((f"steady {args.rate:g} jobs/s for {args.duration:g}s: apply-to-launcher p99",
                        f"{p99:.3f}s (p50 {median(steady, 'p50'):.3f}s, max {median(steady, 'max'):.3f}s)",
                        f"< {TARGETS['steady_p99']:g}s", p99 < TARGETS["steady_p99"]))
    if resident:
        print(f"resident {args.resident}: all applied in {resident['applied']:.1f}s, all launched in "
              f"{resident['launched']:.1f}s, half finished in {resident['half_finished']:.1f}s, all in "
              f"{resident['finished']:.1f}s; the operator knew {resident['known']:.0f} jobs and ran "
              f"{resident['reconciles']:.0f} reconciles in "
              f"{resident['idle']:.0f}s idle (CPU {resident['cpu']:.2f}s, peak VmRSS while idle "
              f"{resident['rss_peak_idle_mb']:.0f} MB)")
        for name, key in (("VmRSS", "rss_mb"), ("VmHWM", "hwm_mb")):
            results.append((f"resident {args.resident}, idle: operator {name}", f"{resident[key]:.0f} MB",
                            f"< {TARGETS['rss_mb']:.0f} MB", resident[key] < TARGETS["rss_mb"]))
        results.append((f"resident {args.resident}, idle: operator CPU", f"{resident['cpu_percent']:.2f}% of one core",
                        f"< {TARGETS['idle_cpu_percent']:g}%", resident["cpu_percent"] < TARGETS["idle_cpu_percent"]))
    for name, measured, target, ok in results:
        print(f"  {verdict(ok)}  {name}: {measured} (target {target})")
    missed = sum(not ok for *_, ok in results)
    print(f"{len(results) - missed} of {len(results)} targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
