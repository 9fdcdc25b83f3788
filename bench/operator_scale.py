"""Operator scale on the local control plane: apply N TrainingJobs, time until each launcher exists.

Baselines, measured in the same run on the same API server: a plain client (the operator's own
client) creating the very same children (ConfigMap, ServiceAccount, Role, RoleBinding, Job) for
N jobs the way the operator does (prerequisites at once, then the launcher), once with as many
jobs at once as the TrainingJobs are applied with, once with as many as the operator handles
(the API server's own limit). A third baseline is an operator that costs nothing: TrainingJobs
applied as in the operator run, each followed at once by its children and first status (the
writes no operator can avoid), as many jobs at a time as the operator has workers.
Rounds alternate the baselines and the operator; medians are reported, with each control-plane
process's CPU and the API server's writes per job, so a gap can be traced to its requests.

    .venv/bin/python bench/operator_scale.py [--jobs 500] [--rounds 5] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timezone
from collections import Counter
from pathlib import Path


from trainwright.api import parse_job
from trainwright.controller.children import LaunchSettings, build_children
from trainwright.controller.constants import MANAGED_BY, MANAGED_BY_LABEL, RECONCILE_WORKERS
from trainwright.controller.informer import Informer
from trainwright.controller.kube import Kube, load_configuration, resource_path
from trainwright.controller.reconcile import launched_status
from trainwright.planner import default_catalog, plan_job
from trainwright.planner.catalog import CPU

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "hack"))
from devcluster import ControlPlane, OperatorProcess, fake_nodes, wait_for  # noqa: E402 - after the path


def job_document(name: str, namespace: str) -> dict:
    return {"apiVersion": "trainwright.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"strategy": "fine-tune", "model": {"source": "hf://gpt2", "task": "causal-lm"},
                     "dataset": {"source": "builtin:demo-b", "samples": 1000},
                     "resources": {"gpus": 0, "cpusPerWorker": 1, "memoryPerWorker": "64Mi"}}}


def applier(namespace: str):
    """Applies job `index` as `kubectl apply` would create it; returns its uid."""
    async def apply(kube: Kube, index: int) -> str:
        return (await kube.create(job_document(f"j{index}", namespace)))["metadata"]["uid"]
    return apply


def bench_nodes() -> list[dict]:
    """One huge fake node, so every pod schedules once and then just runs (no retry churn)."""
    [node] = [n for n in fake_nodes() if n["metadata"]["name"] == "cpu-node-0"]
    node = copy.deepcopy(node)
    node["metadata"]["name"] = "bench-node"
    capacity = {"cpu": "100000", "memory": "100Ti", "pods": "5000", "ephemeral-storage": "100Ti"}
    node["status"] = {"capacity": capacity, "allocatable": dict(capacity)}
    return [node]


class LauncherWatch:
    """Records when each trainer Job first appears in a namespace: the operator's own informer,
    in a thread with its own event loop, so timing costs the bench little CPU."""

    def __init__(self, cp: ControlPlane, namespace: str):
        self.seen: dict[str, float] = {}
        self.loop = asyncio.new_event_loop()
        self.task = self.loop.create_task(self._run(cp, namespace))
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self.task,), daemon=True)
        self.thread.start()

    async def _run(self, cp: ControlPlane, namespace: str) -> None:
        def record(events):
            now = time.monotonic()
            for _, job in events:
                self.seen.setdefault(job["metadata"]["name"].removesuffix("-trainer"), now)

        async with Kube(load_configuration(str(cp.kubeconfig))) as kube:
            informer = Informer(kube, resource_path("batch/v1", "Job", namespace), f"{MANAGED_BY_LABEL}={MANAGED_BY}",
                                record)
            try:
                await informer.run()
            except asyncio.CancelledError:
                pass

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.task.cancel)
        self.thread.join(timeout=10)


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


def create_all(cp: ControlPlane, jobs: int, concurrency: int, first, then=None) -> dict[str, float]:
    """For each job `first(kube, index)`, `concurrency` jobs at a time, then, if given,
    `then(kube, index, what_first_returned)`, as many jobs at a time as the operator has
    workers; with the operator's own client. Returns when each job's first request began."""
    async def run() -> list[float]:
        first_limit, then_limit = asyncio.Semaphore(concurrency), asyncio.Semaphore(RECONCILE_WORKERS)
        async with Kube(load_configuration(str(cp.kubeconfig)), connections=4 * concurrency) as kube:
            async def one(index: int) -> float:
                async with first_limit:
                    start = time.monotonic()
                    result = await first(kube, index)
                if then is not None:
                    async with then_limit:
                        await then(kube, index, result)
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


def requests_since(cp: ControlPlane, before: Counter) -> Counter:
    """Requests served since `before`, leaving out the watches and reads that run all along."""
    return Counter({k: v for k, v in (requests_served(cp) - before).items() if not k.startswith(("WATCH", "GET", "LIST"))})


def run_baseline(cp: ControlPlane, jobs: int, concurrency: int, with_job: bool) -> dict:
    """A plain client making the operator's writes itself, as the operator orders them: the
    launcher's prerequisites at once, then the launcher; `concurrency` jobs at a time.
    `with_job`: an operator that costs nothing. Each TrainingJob is applied (`concurrency` at
    once, like the operator run), and right after its apply, with as many jobs at once as the
    operator has workers, its children are created and its first status written."""
    namespace = make_namespace(cp)
    catalog = default_catalog()
    watcher = LauncherWatch(cp, namespace)
    time.sleep(0.5)

    def parsed(index: int):
        document = job_document(f"j{index}", namespace)
        job = parse_job(document)
        return document, job, plan_job(job.spec, catalog)

    async def create_children(kube: Kube, index: int, uid: str | None) -> None:
        document, job, plan = parsed(index)
        *prerequisites, launcher = build_children(job, plan, uid or str(uuid.uuid4()), LaunchSettings())
        if uid is None:  # no owner: the garbage collector would remove children of a missing one
            for child in (*prerequisites, launcher):
                child["metadata"].pop("ownerReferences")
        await asyncio.gather(*(kube.create(child) for child in prerequisites))
        await kube.create(launcher)
        if uid is not None:
            status = launched_status(job, plan, {}, 1, catalog.get(CPU).price_per_hour, datetime.now(timezone.utc))
            await kube.request("PATCH", resource_path(document["apiVersion"], "TrainingJob", namespace, job.metadata.name)
                               + "/status", {"status": status}, content_type="application/merge-patch+json")

    async def children_only(kube: Kube, index: int) -> None:
        await create_children(kube, index, None)

    components, served = components_cpu(cp), requests_served(cp)
    began = time.monotonic()
    starts = (create_all(cp, jobs, concurrency, applier(namespace), then=create_children) if with_job
              else create_all(cp, jobs, concurrency, children_only))
    wait_for(lambda: len(watcher.seen) >= jobs, timeout=600)
    watcher.stop()
    result = {**launch_times(watcher, starts, began), "components": cpu_since(cp, components),
              "requests": requests_since(cp, served)}
    delete_namespace(cp, namespace)
    return result


def run_operator(cp: ControlPlane, jobs: int, concurrency: int, log: Path) -> dict:
    namespace = make_namespace(cp)
    operator = OperatorProcess(cp, log, args=["--namespace", namespace]).start()
    try:
        watcher = LauncherWatch(cp, namespace)
        time.sleep(0.5)
        peak = [0]

        def sample_rss():
            while operator.process.poll() is None and watcher.thread.is_alive():
                peak[0] = max(peak[0], rss_bytes(operator.process.pid))
                time.sleep(0.2)
        threading.Thread(target=sample_rss, daemon=True).start()

        cpu_before, components, served = cpu_seconds(operator.process.pid), components_cpu(cp), requests_served(cp)
        began = time.monotonic()
        starts = create_all(cp, jobs, concurrency, applier(namespace))
        applied = time.monotonic() - began
        wait_for(lambda: len(watcher.seen) >= jobs, timeout=900)
        cpu = cpu_seconds(operator.process.pid) - cpu_before
        spent, requests = cpu_since(cp, components), requests_since(cp, served)
        time.sleep(2)  # steady state with every job known, for the memory figure
        watcher.stop()
        return {**launch_times(watcher, starts, began), "applied": applied,
                "rss_mb": max(peak[0], rss_bytes(operator.process.pid)) / 2**20, "cpu": cpu,
                "components": spent, "requests": requests}
    finally:
        operator.stop()
        delete_namespace(cp, namespace)


def launch_times(watcher: LauncherWatch, starts: dict[str, float], began: float) -> dict:
    """Total time to the last launcher, and each job's apply-to-launcher latency (p50, p99)."""
    latencies = [watcher.seen[name] - start for name, start in starts.items()]
    return {"total": max(watcher.seen.values()) - began, "p50": percentile(latencies, 50),
            "p99": percentile(latencies, 99)}


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a live process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid: int) -> int:
    """Peak resident set size (VmHWM) of a live process."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=16, help="TrainingJobs applied at once")
    args = parser.parse_args()
    log = Path(tempfile.mkdtemp(prefix="trainwright-bench-")) / "operator.log"
    baselines = {  # name: (jobs at once, with the TrainingJob and its status)
        f"plain client, children, {args.concurrency} jobs at once (as applied)": (args.concurrency, False),
        f"plain client, children, {RECONCILE_WORKERS} jobs at once (the API server's limit)": (RECONCILE_WORKERS, False),
        f"plain client, TrainingJobs applied {args.concurrency} at once, each then given its children and first "
        f"status, {RECONCILE_WORKERS} at once (an operator that costs nothing)": (args.concurrency, True)}
    with ControlPlane(run_seconds=3600, nodes=bench_nodes()) as cp:
        cp.kubectl("apply", "-f", str(ROOT / "crds" / "trainingjobs.trainwright.dev.yaml"))
        cp.kubectl("wait", "--for=condition=Established", "crd/trainingjobs.trainwright.dev")
        plain: dict[str, list[dict]] = {name: [] for name in baselines}
        operator = []
        for round_ in range(args.rounds):
            for name, (concurrency, with_job) in baselines.items():
                plain[name].append(run_baseline(cp, args.jobs, concurrency, with_job))
            operator.append(run_operator(cp, args.jobs, args.concurrency, log))
            last = operator[-1]
            print(f"round {round_ + 1}: plain client " + ", ".join(f"{rows[-1]['total']:.2f}s" for rows in plain.values())
                  + f"; operator {last['total']:.2f}s (all applied at {last['applied']:.2f}s; p50 {last['p50']:.3f}s, "
                  f"p99 {last['p99']:.3f}s, RSS {last['rss_mb']:.0f} MB, operator CPU {last['cpu']:.1f}s)", flush=True)
            for name, rows in (*plain.items(), ("operator", operator)):
                print(f"  CPU seconds, {name}: " + ", ".join(
                    f"{component} {seconds:.1f}" for component, seconds in rows[-1]["components"].items()), flush=True)
                print("    writes per job until the last launcher: " + ", ".join(
                    f"{key} {count / args.jobs:.2f}" for key, count in rows[-1]["requests"].most_common()), flush=True)

    def median(rows, key):
        return statistics.median(r[key] for r in rows)

    print(f"\n{args.jobs} jobs, {args.rounds} rounds, {args.concurrency} TrainingJobs applied at once (medians)")
    print(f"operator: total {median(operator, 'total'):.2f}s, launcher p50 {median(operator, 'p50'):.3f}s, "
          f"p99 {median(operator, 'p99'):.3f}s (target < 2 s), peak RSS {median(operator, 'rss_mb'):.0f} MB "
          f"(target < 200 MB at 1,000 jobs), CPU {median(operator, 'cpu'):.1f}s")
    for name, rows in plain.items():
        ratio = median(operator, "total") / median(rows, "total")
        target = " (target <= 1.25x)" if "children," in name and "TrainingJob" not in name else ""
        print(f"{name}: total {median(rows, 'total'):.2f}s (p50 {median(rows, 'p50'):.3f}s, p99 "
              f"{median(rows, 'p99'):.3f}s); operator/plain {ratio:.2f}x{target}")
    print(f"operator log: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
