"""Helpers of the e2e tier: TrainingJobs sized for the 2-core node, and ways to watch them."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from devcluster import wait_for

SYSTEM_NS = "tw-system"
JOBS_NS = "tw-e2e"
RAY_NS = "kuberay-system"
RELEASE = "trainwright"
CLAIMS = ("data", "models", "ckpt")
FINISHED = ("Succeeded", "Failed", "BudgetExceeded")


def kget(cluster, *args: str) -> dict:
    return json.loads(cluster.kubectl("get", *args, "-o", "json"))


def apply(cluster, *documents: dict, namespace: str | None = None) -> None:
    ns = ["-n", namespace] if namespace else []
    cluster.kubectl("apply", *ns, "-f", "-", input="\n---\n".join(json.dumps(d) for d in documents))


# --------------------------------------------------------------------------- jobs


def training_job(name: str, strategy: str, model: dict, dataset: str, *, training: dict | None = None,
                 resources: dict | None = None, **spec) -> dict:
    """A TrainingJob sized for this 2-core node: CPU only, small requests, frequent checkpoints."""
    return {
        "apiVersion": "trainwright.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": name, "namespace": JOBS_NS},
        "spec": {
            "strategy": strategy, "model": model,
            "dataset": {"source": dataset, "samples": 1600, "validationSplit": 0.1},
            "resources": {"gpus": 0, "cpusPerWorker": 1, "memoryPerWorker": "3Gi", **(resources or {})},
            "training": {"epochs": 3, "batchSize": 8, "maxSeqLength": 32, "seed": 0, **(training or {})},
            "checkpoint": {"pvc": "ckpt", "everySteps": 50, "keep": 2},
            **spec,
        },
    }


def status_of(cluster, name: str) -> dict:
    proc = cluster.kubectl_run("get", "trainingjob", name, "-n", JOBS_NS, "-o", "json")
    return (json.loads(proc.stdout).get("status") or {}) if proc.returncode == 0 else {}


def wait_phase(cluster, name: str, phases, timeout: float = 300) -> dict:
    phases = (phases,) if isinstance(phases, str) else tuple(phases)

    def reached() -> dict | None:
        status = status_of(cluster, name)
        phase = status.get("phase")
        if phase in FINISHED and phase not in phases:
            raise AssertionError(f"{name} ended {phase}, not {phases}: {yaml.safe_dump(status)}\n{trainer_logs(cluster, name)}")
        return status if phase in phases else None

    return wait_for(reached, timeout=timeout, interval=1,
                    message=lambda: f"{name} to reach {phases}; status {status_of(cluster, name)}\n{trainer_logs(cluster, name)}")


def pods_of(cluster, name: str, namespace: str = JOBS_NS) -> list[dict]:
    return kget(cluster, "pods", "-n", namespace, "-l", f"trainwright.dev/job={name}")["items"]


def trainer_logs(cluster, name: str) -> str:
    out = []
    for pod in pods_of(cluster, name):
        proc = cluster.kubectl_run("logs", "-n", JOBS_NS, pod["metadata"]["name"], "--all-containers", "--tail=30")
        out.append(f"--- {pod['metadata']['name']} ({pod['status'].get('phase')}):\n{proc.stdout}{proc.stderr}")
    return "\n".join(out)


def get_tj_row(cluster, name: str) -> dict[str, str]:
    """`kubectl get tj NAME` as a person reads it: column name -> value."""
    lines = cluster.kubectl("get", "tj", name, "-n", JOBS_NS).splitlines()
    header, row = lines[0], lines[1]
    starts = [i for i, ch in enumerate(header) if ch != " " and (i == 0 or header[i - 1] == " ")]
    bounds = list(zip(starts, [*starts[1:], None]))
    return {header[a:b].strip(): row[a:b].strip() for a, b in bounds}


def metrics_records(claim_dir: Path, name: str) -> list[dict]:
    path = claim_dir / name / "output" / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def pod_memory(pod: dict) -> dict[str, int]:
    """The pod's memory cgroup as the kernel keeps it (cgroup v1, the kubelet's cgroupfs layout):
    its high-water mark (page cache included), its limit and the anonymous memory it holds now."""
    uid = pod["metadata"]["uid"]
    folder = next(Path("/sys/fs/cgroup/memory/kubepods").rglob(f"pod{uid}"), None)
    if folder is None:
        return {}
    stat = dict(line.split() for line in (folder / "memory.stat").read_text().splitlines())
    return {"max_usage": int((folder / "memory.max_usage_in_bytes").read_text()),
            "limit": int((folder / "memory.limit_in_bytes").read_text()), "rss": int(stat["total_rss"])}
