"""Operator scale on the local control plane: apply N TrainingJobs, time until each launcher exists.

Baseline, measured in the same run on the same API server: a plain client creating the very
same children (ConfigMap, ServiceAccount, Role, RoleBinding, Job) for N jobs with the same
concurrency: the API server's own limit. Rounds alternate baseline and operator; medians are
reported.

    .venv/bin/python bench/operator_scale.py [--jobs 500] [--rounds 5] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config, watch
from kubernetes.client.exceptions import ApiException

from trainwright.api import parse_job
from trainwright.controller.children import LaunchSettings, build_children
from trainwright.controller.kube import Kube
from trainwright.devcluster import ControlPlane, OperatorProcess, fake_nodes, wait_for
from trainwright.planner import default_catalog, plan_job

ROOT = Path(__file__).resolve().parents[1]


def job_document(name: str, namespace: str) -> dict:
    return {"apiVersion": "trainwright.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"strategy": "fine-tune", "model": {"source": "hf://gpt2", "task": "causal-lm"},
                     "dataset": {"source": "builtin:demo-b", "samples": 1000},
                     "resources": {"gpus": 0, "cpusPerWorker": 1, "memoryPerWorker": "64Mi"}}}


def bench_nodes() -> list[dict]:
    """One huge fake node, so every pod schedules once and then just runs (no retry churn)."""
    [node] = [n for n in fake_nodes() if n["metadata"]["name"] == "cpu-node-0"]
    node = copy.deepcopy(node)
    node["metadata"]["name"] = "bench-node"
    capacity = {"cpu": "100000", "memory": "100Ti", "pods": "5000", "ephemeral-storage": "100Ti"}
    node["status"] = {"capacity": capacity, "allocatable": dict(capacity)}
    return [node]


class LauncherWatch:
    """Records when each trainer Job first appears in a namespace (a watch, not polling)."""

    def __init__(self, namespace: str):
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(namespace,), daemon=True)
        self.thread.start()

    def _run(self, namespace: str) -> None:
        api = client.BatchV1Api()
        while not self.stop.is_set():
            try:
                for event in watch.Watch().stream(api.list_namespaced_job, namespace, timeout_seconds=5):
                    name = event["object"].metadata.name
                    self.seen.setdefault(name.removesuffix("-trainer"), time.monotonic())
                    if self.stop.is_set():
                        return
            except Exception:  # noqa: BLE001 - a dropped watch is re-opened; ADDED events repeat harmlessly
                time.sleep(0.1)


def delete_namespace(kube: Kube, name: str) -> None:
    """Delete and wait, so one run's objects do not load the next."""
    kube.request("DELETE", f"/api/v1/namespaces/{name}")
    wait_for(lambda: not namespace_exists(kube, name), timeout=600)


def namespace_exists(kube: Kube, name: str) -> bool:
    try:
        kube.request("GET", f"/api/v1/namespaces/{name}")
        return True
    except ApiException as error:
        if error.status == 404:
            return False
        raise


def make_namespace(kube: Kube) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    kube.request("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    wait_for(lambda: kube.get("v1", "ServiceAccount", name, "default"), timeout=30)
    return name


def run_baseline(kube: Kube, jobs: int, concurrency: int) -> dict:
    namespace = make_namespace(kube)
    catalog = default_catalog()
    watcher = LauncherWatch(namespace)
    time.sleep(0.5)

    def create(index: int) -> float:
        start = time.monotonic()
        job = parse_job(job_document(f"j{index}", namespace))
        for child in build_children(job, plan_job(job.spec, catalog), str(uuid.uuid4()), LaunchSettings()):
            child["metadata"].pop("ownerReferences")
            kube.create(child)
        return start

    began = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        starts = dict(zip((f"j{i}" for i in range(jobs)), pool.map(create, range(jobs))))
    wait_for(lambda: len(watcher.seen) >= jobs, timeout=600)
    watcher.stop.set()
    latencies = [watcher.seen[n] - s for n, s in starts.items()]
    result = {"total": max(watcher.seen.values()) - began, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99)}
    delete_namespace(kube, namespace)
    return result


def run_operator(kube: Kube, cp: ControlPlane, jobs: int, concurrency: int, log: Path) -> dict:
    namespace = make_namespace(kube)
    operator = OperatorProcess(cp, log, args=["--namespace", namespace]).start()
    try:
        watcher = LauncherWatch(namespace)
        time.sleep(0.5)
        peak = [0]

        def sample_rss():
            while operator.process.poll() is None and not watcher.stop.is_set():
                peak[0] = max(peak[0], rss_bytes(operator.process.pid))
                time.sleep(0.2)
        threading.Thread(target=sample_rss, daemon=True).start()

        def create(index: int) -> float:
            start = time.monotonic()
            kube.create(job_document(f"j{index}", namespace))
            return start

        cpu_before = cpu_seconds(operator.process.pid)
        began = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            starts = dict(zip((f"j{i}" for i in range(jobs)), pool.map(create, range(jobs))))
        wait_for(lambda: len(watcher.seen) >= jobs, timeout=900)
        total = max(watcher.seen.values()) - began
        cpu = cpu_seconds(operator.process.pid) - cpu_before
        time.sleep(2)  # steady state with every job known, for the memory figure
        watcher.stop.set()
        latencies = [watcher.seen[n] - s for n, s in starts.items()]
        return {"total": total, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                "rss_mb": max(peak[0], rss_bytes(operator.process.pid)) / 2**20, "cpu": cpu}
    finally:
        operator.stop()
        delete_namespace(kube, namespace)


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
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    log = Path(tempfile.mkdtemp(prefix="trainwright-bench-")) / "operator.log"
    with ControlPlane(run_seconds=3600, nodes=bench_nodes()) as cp:
        cp.kubectl("apply", "-f", str(ROOT / "crds" / "trainingjobs.trainwright.dev.yaml"))
        cp.kubectl("wait", "--for=condition=Established", "crd/trainingjobs.trainwright.dev")
        config.load_kube_config(str(cp.kubeconfig))
        kube = Kube()
        baseline, operator = [], []
        for round_ in range(args.rounds):
            baseline.append(run_baseline(kube, args.jobs, args.concurrency))
            operator.append(run_operator(kube, cp, args.jobs, args.concurrency, log))
            print(f"round {round_ + 1}: plain client {baseline[-1]['total']:.2f}s, operator {operator[-1]['total']:.2f}s "
                  f"(p50 {operator[-1]['p50']:.3f}s, p99 {operator[-1]['p99']:.3f}s, RSS {operator[-1]['rss_mb']:.0f} MB, "
                  f"operator CPU {operator[-1]['cpu']:.1f}s)",
                  flush=True)

    def median(rows, key):
        return statistics.median(r[key] for r in rows)

    ratio = median(operator, "total") / median(baseline, "total")
    print(f"\n{args.jobs} jobs, {args.rounds} rounds, concurrency {args.concurrency} (medians)")
    print(f"plain client total   {median(baseline, 'total'):.2f}s  (launcher p50 {median(baseline, 'p50'):.3f}s, p99 {median(baseline, 'p99'):.3f}s)")
    print(f"operator total       {median(operator, 'total'):.2f}s  (launcher p50 {median(operator, 'p50'):.3f}s, p99 {median(operator, 'p99'):.3f}s)")
    print(f"ratio operator/plain {ratio:.2f}x   (target <= 1.25x)")
    print(f"operator peak RSS    {median(operator, 'rss_mb'):.0f} MB (target < 200 MB)")
    print(f"operator log: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
