"""Operator scale on the local control plane: apply N TrainingJobs, time until each launcher exists.

Baseline, measured in the same run on the same API server: a plain client creating the very
same children (ConfigMap, ServiceAccount, Role, RoleBinding, Job) for N jobs with the same
concurrency: the API server's own limit. Rounds alternate baseline and operator; medians are
reported.

    .venv/bin/python bench/operator_scale.py [--jobs 500] [--rounds 5] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client, config, watch

from trainwright.api import parse_job
from trainwright.controller.children import LaunchSettings, build_children
from trainwright.controller.kube import Kube
from trainwright.devcluster import ControlPlane, free_port, wait_for
from trainwright.planner import default_catalog, plan_job

ROOT = Path(__file__).resolve().parents[1]


def job_document(name: str, namespace: str) -> dict:
    return {"apiVersion": "trainwright.dev/v1alpha1", "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"strategy": "fine-tune", "model": {"source": "hf://gpt2", "task": "causal-lm"},
                     "dataset": {"source": "builtin:demo-b", "samples": 1000}, "resources": {"gpus": 1}}}


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
            for event in watch.Watch().stream(api.list_namespaced_job, namespace, timeout_seconds=5):
                name = event["object"].metadata.name
                self.seen.setdefault(name.removesuffix("-trainer"), time.monotonic())
                if self.stop.is_set():
                    return


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
    return {"total": max(watcher.seen.values()) - began, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99)}


def run_operator(kube: Kube, cp: ControlPlane, jobs: int, concurrency: int, log: Path) -> dict:
    namespace = make_namespace(kube)
    metrics_port, health_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "trainwright.cli", "operator", "--namespace", namespace,
         "--metrics-port", str(metrics_port), "--health-port", str(health_port)],
        env={**cp.env, "PYTHONUNBUFFERED": "1"}, stdout=log.open("a"), stderr=subprocess.STDOUT)
    try:
        import urllib.request
        wait_for(lambda: urllib.request.urlopen(f"http://127.0.0.1:{health_port}/healthz", timeout=2).status == 200,
                 timeout=60)
        watcher = LauncherWatch(namespace)
        time.sleep(0.5)
        peak = [0]

        def sample_rss():
            while process.poll() is None and not watcher.stop.is_set():
                peak[0] = max(peak[0], rss_bytes(process.pid))
                time.sleep(0.2)
        sampler = threading.Thread(target=sample_rss, daemon=True)
        sampler.start()

        def create(index: int) -> float:
            start = time.monotonic()
            kube.create(job_document(f"j{index}", namespace))
            return start

        began = time.monotonic()
        with ThreadPoolExecutor(concurrency) as pool:
            starts = dict(zip((f"j{i}" for i in range(jobs)), pool.map(create, range(jobs))))
        wait_for(lambda: len(watcher.seen) >= jobs, timeout=900)
        total = max(watcher.seen.values()) - began
        time.sleep(2)  # steady state with every job known, for the memory figure
        watcher.stop.set()
        latencies = [watcher.seen[n] - s for n, s in starts.items()]
        return {"total": total, "p50": percentile(latencies, 50), "p99": percentile(latencies, 99),
                "rss_mb": max(peak[0], rss_bytes(process.pid)) / 2**20}
    finally:
        process.terminate()
        process.wait(timeout=30)


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
    with ControlPlane(run_seconds=3600) as cp:
        cp.kubectl("apply", "-f", str(ROOT / "crds" / "trainingjobs.trainwright.dev.yaml"))
        cp.kubectl("wait", "--for=condition=Established", "crd/trainingjobs.trainwright.dev")
        config.load_kube_config(str(cp.kubeconfig))
        kube = Kube()
        baseline, operator = [], []
        for round_ in range(args.rounds):
            baseline.append(run_baseline(kube, args.jobs, args.concurrency))
            operator.append(run_operator(kube, cp, args.jobs, args.concurrency, log))
            print(f"round {round_ + 1}: plain client {baseline[-1]['total']:.2f}s, operator {operator[-1]['total']:.2f}s "
                  f"(p50 {operator[-1]['p50']:.3f}s, p99 {operator[-1]['p99']:.3f}s, RSS {operator[-1]['rss_mb']:.0f} MB)",
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
