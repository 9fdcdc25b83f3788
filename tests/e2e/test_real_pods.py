"""Every TrainingJob path on real pods: the images built from this tree, `helm install`,
`kubectl apply`, trainers in containers that report progress, checkpoints on real volumes.

The tests share one real node and one namespace, and run in file order (each job is small
enough for the 2-core machine, one at a time).
"""

from __future__ import annotations

import json
import time
from datetime import datetime

import pytest

from chartkit import CHART, Prometheus
from devcluster import free_port, wait_for
from e2ekit import (JOBS_NS, RELEASE, SYSTEM_NS, apply, get_tj_row, kget, metrics_records, pod_memory, pods_of,
                    status_of, trainer_logs, training_job, wait_phase)

FINE_TUNE_MODEL = {"source": "pvc://models/base", "task": "sequence-classification", "adapter": {"type": "lora", "rank": 4}}
HYBRID_MODEL = {"source": "pvc://models/base", "task": "sequence-classification",
                "head": [{"type": "linear", "size": 16}, {"type": "gelu"}]}
SCRATCH_MODEL = {"task": "causal-lm", "architecture": {"family": "gpt", "layers": 1, "hidden": 32, "heads": 2,
                                                       "vocabSize": 128, "contextLength": 64}}


def _time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def pod_seconds(pod: dict) -> float:
    """How long the pod's trainer container ran, from the kubelet's own record."""
    state = pod["status"]["containerStatuses"][0]["state"]
    if "terminated" in state:
        return _time(state["terminated"]["finishedAt"]) - _time(state["terminated"]["startedAt"])
    if "running" in state:
        return time.time() - _time(state["running"]["startedAt"])
    return 0.0


def run_and_watch(cluster, job: dict, timeout: float = 420) -> tuple[dict, list[str]]:
    """Apply the job and poll `kubectl get tj` until it finishes; the Progress column's values seen."""
    name = job["metadata"]["name"]
    apply(cluster, job)
    seen: list[str] = []

    def finished() -> dict | None:
        row = get_tj_row(cluster, name)
        if row.get("PROGRESS") and (not seen or seen[-1] != row["PROGRESS"]):
            seen.append(row["PROGRESS"])
        status = status_of(cluster, name)
        if status.get("phase") in ("Failed", "BudgetExceeded"):
            raise AssertionError(f"{name} is {status['phase']}: {status}\n{trainer_logs(cluster, name)}")
        return status if status.get("phase") == "Succeeded" else None

    status = wait_for(finished, timeout=timeout, interval=1,
                      message=lambda: f"{name} Succeeded; status {status_of(cluster, name)}\n{trainer_logs(cluster, name)}")
    return status, seen


# --------------------------------------------------------------------------- the operator


def test_operator_deployment_is_ready_by_its_probes_under_restricted_pod_security(real_cluster, release):
    cluster = real_cluster
    namespace = kget(cluster, "namespace", SYSTEM_NS)
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = kget(cluster, "pods", "-n", SYSTEM_NS, "-l", "app.kubernetes.io/name=trainwright")["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    pod = pods[0]
    assert pod["spec"]["serviceAccountName"] == release["spec"]["template"]["spec"]["serviceAccountName"]
    assert pod["spec"]["nodeName"] == "trainwright-node"
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] and status["restartCount"] == 0, status
    assert status["imageID"] and "localhost/trainwright/operator" in status["image"], status
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    # Its own process answers as its ServiceAccount: the log has no permission errors.
    logs = cluster.kubectl("logs", "-n", SYSTEM_NS, pod["metadata"]["name"])
    assert "Forbidden" not in logs and " 403" not in logs, logs[-3000:]


# --------------------------------------------------------------------------- one pod


@pytest.mark.parametrize(("strategy", "model"), [("fine-tune", FINE_TUNE_MODEL), ("hybrid", HYBRID_MODEL)])
def test_trainer_pod_trains_reports_progress_and_leaves_model_and_metrics_on_the_claim(
        real_cluster, jobs_namespace, strategy, model):
    cluster = real_cluster
    name = f"e2e-{strategy}"
    job = training_job(name, strategy, model, "pvc://data/living.jsonl", training={"epochs": 4, "freezeEpochs": 1}
                       if strategy == "hybrid" else {"epochs": 4})
    status, progress_seen = run_and_watch(cluster, job)

    assert status["plan"]["strategy"] == strategy and status["plan"]["launcher"] == "job"
    assert len(progress_seen) >= 2, f"`kubectl get tj` showed progress {progress_seen} only"
    assert status["progress"]["ratio"] == 1 and status["progress"]["step"] == status["progress"]["totalSteps"]
    pods = pods_of(cluster, name)
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Succeeded"
    assert "localhost/trainwright/trainer" in pods[0]["status"]["containerStatuses"][0]["image"]
    # What it made is on the claim, where the next pod (or a person) finds it.
    output = jobs_namespace["ckpt"] / name / "output"
    assert (output / "model").is_dir() and any((output / "model").iterdir())
    records = metrics_records(jobs_namespace["ckpt"], name)
    evals = [r for r in records if r.get("event") == "eval" or "val_loss" in r]
    assert records and evals, records[-3:]
    # Cost comes from the real pod's own times at the catalog's CPU price.
    ran = pod_seconds(pods[0])
    assert ran > 1
    assert status["cost"]["gpuSeconds"] == pytest.approx(ran, rel=0.25, abs=3), (status["cost"], ran)
    assert status["cost"]["usd"] > 0


# --------------------------------------------------------------------------- across pods


def test_scratch_job_trains_across_a_ray_cluster_of_real_pods(real_cluster, jobs_namespace, kuberay):
    cluster = real_cluster
    name = "e2e-scratch-ray"
    job = training_job(name, "scratch", SCRATCH_MODEL, "pvc://data/patterns.jsonl",
                       resources={"workers": 2, "workersPerPod": 1, "cpusPerWorker": 0.5, "memoryPerWorker": "3Gi"},
                       training={"epochs": 2})
    apply(cluster, job)

    def ray_pods() -> list[dict] | None:
        pods = [p for p in kget(cluster, "pods", "-n", JOBS_NS, "-l", "ray.io/is-ray-node=yes")["items"]
                if p["metadata"]["labels"].get("trainwright.dev/job") == name]
        running = [p for p in pods if p["status"].get("phase") == "Running"]
        return running if len(running) == 3 else None

    pods = wait_for(ray_pods, timeout=300, interval=1,
                    message=lambda: f"a head and 2 workers Running; status {status_of(cluster, name)}\n{trainer_logs(cluster, name)}")
    kinds = sorted(p["metadata"]["labels"]["ray.io/node-type"] for p in pods)
    assert kinds == ["head", "worker", "worker"], kinds
    assert len({p["status"]["podIP"] for p in pods}) == 3
    status = wait_phase(cluster, name, "Succeeded", timeout=420)
    assert status["plan"]["launcher"] == "rayjob" and status["plan"]["workers"] == 2 and status["plan"]["pods"] == 2
    ray_cluster = kget(cluster, "rayclusters", "-n", JOBS_NS)["items"]
    assert ray_cluster or status["phase"] == "Succeeded"
    records = metrics_records(jobs_namespace["ckpt"], name)
    steps = [r for r in records if "samples_per_second" in r or "samplesPerSecond" in r]
    assert steps, records[-3:]
    # The same data and model with 1 worker in 1 pod, for the record (this node has 2 cores).
    single, _ = run_and_watch(cluster, training_job(f"{name}-single", "scratch", SCRATCH_MODEL, "pvc://data/patterns.jsonl",
                                                    resources={"cpusPerWorker": 0.5}, training={"epochs": 2}))
    assert single["plan"]["launcher"] == "job" and single["plan"]["workers"] == 1
    two, one = status["progress"]["samplesPerSecond"], single["progress"]["samplesPerSecond"]
    print(f"scratch samples/s: 2 Ray workers in 2 pods {two:.0f}, 1 worker in 1 pod {one:.0f} ({two / one:.2f}x)")


def test_a_job_asking_for_gpus_never_trains_on_cpu(real_cluster, jobs_namespace):
    cluster = real_cluster
    name = "e2e-wants-gpu"
    job = training_job(name, "fine-tune", FINE_TUNE_MODEL, "pvc://data/living.jsonl",
                       resources={"gpus": 1, "gpuType": "nvidia-l4", "cpusPerWorker": 1, "memoryPerWorker": "1Gi"})
    apply(cluster, job)
    # No GPU on this node: the pod cannot even be scheduled, and nothing trains.
    wait_for(lambda: any(c.get("reason") == "Unschedulable" for p in pods_of(cluster, name)
                         for c in p["status"].get("conditions", [])),
             timeout=60, message=lambda: f"the GPU pod Unschedulable: {[p['status'] for p in pods_of(cluster, name)]}")
    assert not (jobs_namespace["ckpt"] / name / "output" / "metrics.jsonl").exists()
    cluster.kubectl("delete", "trainingjob", name, "-n", JOBS_NS, "--wait=true", timeout=60)


# --------------------------------------------------------------------------- pod loss, suspend, budget, delete


def step_events(claim_dir, name: str) -> list[int]:
    return [r["step"] for r in metrics_records(claim_dir, name) if r.get("event") == "step"]


def wait_for_checkpoint(cluster, name: str, after: int = 0, timeout: float = 300) -> int:
    """The step of the job's newest checkpoint, once there is one past step ``after``."""

    def newest() -> int | None:
        step = (status_of(cluster, name).get("checkpoint") or {}).get("step") or 0
        return step if step > after else None

    return wait_for(newest, timeout=timeout, interval=0.5,
                    message=lambda: f"a checkpoint of {name} past step {after}\n{trainer_logs(cluster, name)}")


def resumed_at(cluster, pod: dict) -> int:
    """The step a pod's trainer resumed from, from the line it logs first."""
    logs = cluster.kubectl("logs", "-n", JOBS_NS, pod["metadata"]["name"])
    line = next((ln for ln in logs.splitlines() if ln.startswith("resumed from ")), None)
    assert line, f"{pod['metadata']['name']} did not resume:\n{logs[-2000:]}"
    return int(line.split(" at step ")[1].split()[0])


def start_checkpointing_job(cluster, name: str) -> int:
    """A fine-tune long enough to interrupt, checkpointing often; the step of its first checkpoint."""
    job = training_job(name, "fine-tune", FINE_TUNE_MODEL, "pvc://data/living.jsonl", training={"epochs": 8})
    job["spec"]["checkpoint"]["everySteps"] = 25
    apply(cluster, job)
    return wait_for_checkpoint(cluster, name)


def test_a_deleted_trainer_pod_is_replaced_and_resumes_from_the_newest_checkpoint(real_cluster, jobs_namespace):
    cluster = real_cluster
    name = "e2e-resume"
    first_checkpoint = start_checkpointing_job(cluster, name)
    first = pods_of(cluster, name)[0]
    first_seconds = pod_seconds(first)  # a lower bound: it runs on until the delete stops it
    cluster.kubectl("delete", "pod", "-n", JOBS_NS, first["metadata"]["name"], "--wait=true", timeout=120)
    status = wait_phase(cluster, name, "Succeeded", timeout=420)

    assert status["restarts"] >= 1, status
    (second,) = [p for p in pods_of(cluster, name) if p["metadata"]["uid"] != first["metadata"]["uid"]]
    resumed = resumed_at(cluster, second)
    checkpoints = [r["step"] for r in metrics_records(jobs_namespace["ckpt"], name) if r.get("event") == "checkpoint"]
    before = [c for c in checkpoints if c <= resumed]
    # It resumed from the newest checkpoint the first pod wrote (SIGTERM writes one more).
    assert resumed >= first_checkpoint and resumed == max(before), (resumed, checkpoints)
    # No step was trained twice: the steps in metrics.jsonl never go back, across both pods.
    steps = step_events(jobs_namespace["ckpt"], name)
    assert steps == sorted(steps) and steps[-1] == status["progress"]["totalSteps"], steps
    # The cost counts both pods (less 2 s: the start and end times the API keeps are whole seconds).
    assert status["cost"]["gpuSeconds"] >= pod_seconds(second) + first_seconds - 2, (status["cost"], first_seconds)


def ray_pods_of(cluster, name: str, node_type: str) -> list[dict]:
    return [p for p in kget(cluster, "pods", "-n", JOBS_NS, "-l", f"ray.io/node-type={node_type}")["items"]
            if p["metadata"]["labels"].get("trainwright.dev/job") == name and not p["metadata"].get("deletionTimestamp")]


def test_a_deleted_ray_worker_pod_checkpoints_in_its_prestop_hook_and_the_rayjob_resumes(real_cluster, jobs_namespace, kuberay):
    """The kubelet runs the pod's preStop hook, which signals the Ray Train worker there: every
    worker stops at the same step, rank 0 writes a checkpoint, the driver exits 143, and KubeRay's
    retry (a new RayCluster) resumes from that checkpoint: no step is trained twice."""
    cluster = real_cluster
    name = "e2e-ray-resume"
    job = training_job(name, "scratch", SCRATCH_MODEL, "pvc://data/patterns.jsonl",
                       resources={"workers": 2, "workersPerPod": 1, "cpusPerWorker": 0.5, "memoryPerWorker": "3Gi"},
                       training={"epochs": 6}, backoffLimit=2)
    job["spec"]["checkpoint"].update(everySteps=25, keep=20)
    apply(cluster, job)
    first_checkpoint = wait_for_checkpoint(cluster, name)
    worker = wait_for(lambda: next(iter(ray_pods_of(cluster, name, "worker")), None), timeout=30,
                      message="a Ray worker pod")
    steps_before = step_events(jobs_namespace["ckpt"], name)
    began = time.monotonic()
    cluster.kubectl("delete", "pod", "-n", JOBS_NS, worker["metadata"]["name"], "--wait=true", timeout=180)
    deleted_in = time.monotonic() - began
    status = wait_phase(cluster, name, "Succeeded", timeout=600)

    checkpoints = [r["step"] for r in metrics_records(jobs_namespace["ckpt"], name) if r.get("event") == "checkpoint"]
    steps = step_events(jobs_namespace["ckpt"], name)
    print(f"Ray worker pod deleted in {deleted_in:.1f} s (grace period "
          f"{worker['spec']['terminationGracePeriodSeconds']} s); checkpoints at {checkpoints}; restarts {status['restarts']}")
    assert status["restarts"] >= 1, status
    assert steps_before and first_checkpoint <= max(checkpoints), checkpoints
    # The hook's checkpoint is at the step the workers stopped, and the new cluster went on from
    # there: had the worker been killed instead, the retry would redo the steps since the last
    # periodic checkpoint, and the steps in metrics.jsonl would go back.
    assert steps == sorted(steps) and steps[-1] == status["progress"]["totalSteps"], steps
    # The pod went at once, not at the end of its grace period: `ray start` ends when signalled.
    assert deleted_in < worker["spec"]["terminationGracePeriodSeconds"], deleted_in


def test_suspend_removes_the_pods_and_resume_continues_from_the_checkpoint(real_cluster, jobs_namespace):
    cluster = real_cluster
    name = "e2e-suspend"
    first_checkpoint = start_checkpointing_job(cluster, name)
    cluster.kubectl("patch", "trainingjob", name, "-n", JOBS_NS, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_phase(cluster, name, "Suspended", timeout=60)
    wait_for(lambda: not pods_of(cluster, name), timeout=90, message=f"the pods of {name} gone while suspended")
    cluster.kubectl("patch", "trainingjob", name, "-n", JOBS_NS, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    pod = wait_for(lambda: next(iter(pods_of(cluster, name)), None), timeout=90, message=f"a new pod of {name}")
    status = wait_phase(cluster, name, "Succeeded", timeout=420)
    assert resumed_at(cluster, pod) >= first_checkpoint
    steps = step_events(jobs_namespace["ckpt"], name)
    assert steps == sorted(steps) and steps[-1] == status["progress"]["totalSteps"], steps


def object_storage(cluster, node_s3) -> dict:
    """The Secret of the node's S3 server's keys in the jobs' namespace, and the spec.objectStorage naming it."""
    from devcluster.node import NODE_IP

    apply(cluster, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds", "namespace": JOBS_NS},
                    "stringData": {"AWS_ACCESS_KEY_ID": node_s3.access_key, "AWS_SECRET_ACCESS_KEY": node_s3.secret_key}})
    return {"secret": "s3-creds", "endpoint": f"http://{NODE_IP}:{node_s3.port}"}


def data_position(claim_dir, name: str, step: int) -> tuple[int, int]:
    """(epoch, position) kept in the job's checkpoint of ``step`` on the claim."""
    import torch

    state = torch.load(claim_dir / name / "checkpoints" / f"step-{step:09d}" / "state.pt", map_location="cpu",
                       weights_only=False)
    return state["progress"]["epoch"], state["progress"]["position"]


def test_a_scratch_job_streams_its_corpus_from_s3_and_resumes_mid_epoch_after_its_pod_is_deleted(
        real_cluster, jobs_namespace, node_s3):
    """A corpus above the in-memory limit, in a bucket on a real S3 server the pod reaches over
    the node's network: the trainer tokenises it once into the token cache on the claim, streams
    it, and the replacement pod finds the cache and goes on at the checkpoint's data position."""
    from trainwright.trainer.demo import builtin_records

    cluster = real_cluster
    name = "e2e-s3-stream"
    corpus = "".join(json.dumps(r) + "\n" for r in builtin_records("patterns", 100_000)).encode()
    node_s3.create_bucket("corpus")
    source = node_s3.put("corpus", "patterns.jsonl", corpus)
    job = training_job(name, "scratch", SCRATCH_MODEL, source, training={"epochs": 1, "batchSize": 128},
                       objectStorage=object_storage(cluster, node_s3))
    job["spec"]["checkpoint"].update(everySteps=100, keep=20)
    apply(cluster, job)
    first_checkpoint = wait_for_checkpoint(cluster, name)
    first = pods_of(cluster, name)[0]
    first_log = cluster.kubectl("logs", "-n", JOBS_NS, first["metadata"]["name"])
    memory = pod_memory(first)
    cluster.kubectl("delete", "pod", "-n", JOBS_NS, first["metadata"]["name"], "--wait=true", timeout=120)
    status = wait_phase(cluster, name, "Succeeded", timeout=420)

    (second,) = [p for p in pods_of(cluster, name) if p["metadata"]["uid"] != first["metadata"]["uid"]]
    second_log = cluster.kubectl("logs", "-n", JOBS_NS, second["metadata"]["name"])
    streamed = [ln for ln in first_log.splitlines() if ln.startswith("data: streaming from")]
    assert streamed and "tokenised" in streamed[0] and f"{len(corpus):,} bytes >" in streamed[0], first_log[-3000:]
    assert any(ln.startswith("data: streaming from") and "found in the cache, nothing tokenised" in ln
               for ln in second_log.splitlines()), second_log[-3000:]
    assert node_s3.secret_key not in first_log + second_log
    resumed = resumed_at(cluster, second)
    assert first_checkpoint <= resumed < status["progress"]["totalSteps"], (resumed, status["progress"])
    # The checkpoint it resumed from holds the data position: in the middle of the first epoch,
    # exactly the samples its steps read, so the second pod neither repeats nor skips one.
    assert data_position(jobs_namespace["ckpt"], name, resumed) == (0, resumed * 128)
    steps = step_events(jobs_namespace["ckpt"], name)
    assert steps == sorted(steps) and steps[-1] == status["progress"]["totalSteps"], steps
    print(f"s3 corpus {len(corpus) / 1e6:.1f} MB; first pod's memory cgroup: {memory}; resumed at step {resumed} "
          f"of {status['progress']['totalSteps']}; {streamed[0]}")


def test_a_corpus_larger_than_the_pods_memory_streams_from_s3_and_resumes_mid_epoch(
        real_cluster, jobs_namespace, node_s3, tmp_path):
    """1 GB of text in a bucket, a trainer pod given 768 MiB: the corpus is tokenised as it streams
    in, trained on from memory-mapped shards, and a replacement pod goes on at the checkpoint's
    data position. The epoch is long (hours on this node): the job is deleted once the
    replacement has checkpointed past where it resumed. Measured on the 2-core node: the pod's
    anonymous memory stays near 560-590 MB while the page cache fills the rest of its limit."""
    from trainwright.trainer.demo import builtin_records

    cluster = real_cluster
    name = "e2e-s3-large"
    limit = 768 * 2**20
    chunk = "".join(json.dumps(r) + "\n" for r in builtin_records("patterns", 100_000)).encode()
    corpus = tmp_path / "corpus.jsonl"
    with corpus.open("wb") as out:
        for _ in range(100):
            out.write(chunk)
    size = corpus.stat().st_size
    assert size > limit
    node_s3.create_bucket("large")
    source = node_s3.put("large", "patterns.jsonl", corpus)
    corpus.unlink()
    job = training_job(name, "scratch", SCRATCH_MODEL, source, resources={"memoryPerWorker": "768Mi"},
                       training={"epochs": 1, "batchSize": 16},
                       objectStorage=object_storage(cluster, node_s3))
    job["spec"]["checkpoint"].update(everySteps=100, keep=20)
    began = time.monotonic()
    apply(cluster, job)
    first_checkpoint = wait_for_checkpoint(cluster, name, timeout=900)
    to_first_checkpoint = time.monotonic() - began
    first = pods_of(cluster, name)[0]
    assert first["spec"]["containers"][0]["resources"]["limits"]["memory"] == "768Mi"
    first_memory = pod_memory(first)
    first_log = cluster.kubectl("logs", "-n", JOBS_NS, first["metadata"]["name"])
    cluster.kubectl("delete", "pod", "-n", JOBS_NS, first["metadata"]["name"], "--wait=true", timeout=120)

    def resumed_pod() -> tuple[dict, int] | None:
        for pod in pods_of(cluster, name):
            if pod["metadata"]["uid"] != first["metadata"]["uid"] and pod["status"].get("phase") == "Running":
                logs = cluster.kubectl_run("logs", "-n", JOBS_NS, pod["metadata"]["name"]).stdout
                if "resumed from " in logs:
                    return pod, resumed_at(cluster, pod)
        return None

    second, resumed = wait_for(resumed_pod, timeout=300, interval=1, message=lambda: trainer_logs(cluster, name))
    wait_for_checkpoint(cluster, name, after=resumed, timeout=300)
    second_memory = pod_memory(second)
    second_log = cluster.kubectl("logs", "-n", JOBS_NS, second["metadata"]["name"])
    status = status_of(cluster, name)
    cluster.kubectl("delete", "trainingjob", name, "-n", JOBS_NS, "--wait=true", timeout=120)

    streamed = next(ln for ln in first_log.splitlines() if ln.startswith("data: streaming from"))
    assert "tokenised" in streamed and f"{size:,} bytes >" in streamed, first_log[-3000:]
    assert any("found in the cache, nothing tokenised" in ln for ln in second_log.splitlines()), second_log[-3000:]
    assert status["restarts"] == 1 and status["phase"] == "Running", status  # the delete; never an OOM kill
    assert first_checkpoint <= resumed and data_position(jobs_namespace["ckpt"], name, resumed) == (0, resumed * 16)
    steps = step_events(jobs_namespace["ckpt"], name)
    assert steps == sorted(steps) and steps[-1] > resumed, steps
    print(f"corpus {size / 2**20:,.0f} MiB in s3, pod limit {limit / 2**20:.0f} MiB; first checkpoint {to_first_checkpoint:.0f} s "
          f"after apply; memory cgroups (bytes): first pod {first_memory}, second {second_memory}; resumed at step "
          f"{resumed} of {status['progress']['totalSteps']}; {streamed}")


def test_a_budget_that_runs_out_stops_the_real_pods(real_cluster, jobs_namespace):
    cluster = real_cluster
    name = "e2e-budget"
    job = training_job(name, "fine-tune", FINE_TUNE_MODEL, "pvc://data/living.jsonl", training={"epochs": 50},
                       budget={"maxCostUSD": 0.0000001})
    apply(cluster, job)
    wait_for(lambda: any(p["status"].get("phase") == "Running" for p in pods_of(cluster, name)), timeout=120,
             message=f"a Running pod of {name}")
    status = wait_phase(cluster, name, "BudgetExceeded", timeout=120)
    assert any(c["reason"] == "CostLimitReached" for c in status["conditions"]), status["conditions"]
    wait_for(lambda: not pods_of(cluster, name), timeout=90, message=f"the pods of {name} stopped")


def test_deleting_a_trainingjob_removes_every_child_and_pod(real_cluster, jobs_namespace):
    cluster = real_cluster
    name = "e2e-delete"
    apply(cluster, training_job(name, "fine-tune", FINE_TUNE_MODEL, "pvc://data/living.jsonl", training={"epochs": 50}))
    wait_for(lambda: any(p["status"].get("phase") == "Running" for p in pods_of(cluster, name)), timeout=120,
             message=f"a Running pod of {name}")
    cluster.kubectl("delete", "trainingjob", name, "-n", JOBS_NS, "--wait=true", timeout=60)
    selector = f"trainwright.dev/job={name}"

    def children() -> list[str]:
        out = cluster.kubectl("get", "jobs,pods,configmaps,serviceaccounts,roles,rolebindings", "-n", JOBS_NS,
                              "-l", selector, "-o", "name")
        return out.split()

    wait_for(lambda: not children(), timeout=120,
             message=lambda: f"children of {name} gone: {children()}\n{trainer_logs(cluster, name)}")


# --------------------------------------------------------------------------- plans from measurements


def watch_projection(cluster, name: str, at_ratio: float) -> tuple[dict, float]:
    """The job until it succeeds, and what the operator's projection made of it when the trainer
    reported `at_ratio` of its steps: the cost accrued then (devices x seconds since the first
    start x price) plus the steps left at the reported rate, as controller/projection.py counts it."""
    from trainwright.controller.projection import project
    from trainwright.planner import default_catalog
    from trainwright.planner.catalog import CPU

    price = default_catalog().get(CPU).price_per_hour
    projected: list[float] = []

    def finished() -> dict | None:
        status = status_of(cluster, name)
        progress, start = status.get("progress") or {}, status.get("startTime")
        if not projected and start and (progress.get("ratio") or 0) >= at_ratio:
            now = datetime.now().astimezone()
            started = datetime.fromisoformat(start.replace("Z", "+00:00"))
            accrued = (now - started).total_seconds() * price / 3600
            projected.append(project(progress, accrued, 1, price, started, now).cost_usd)
        if status.get("phase") in ("Failed", "BudgetExceeded"):
            raise AssertionError(f"{name} is {status['phase']}: {status}\n{trainer_logs(cluster, name)}")
        return status if status.get("phase") == "Succeeded" else None

    status = wait_for(finished, timeout=420, interval=0.5,
                      message=lambda: f"{name} Succeeded; status {status_of(cluster, name)}\n{trainer_logs(cluster, name)}")
    return status, projected[0] if projected else float("nan")


def test_a_finished_job_calibrates_the_plan_of_a_larger_one_on_real_pods(real_cluster, jobs_namespace):
    """The chart's operator keeps what a job measured in its ConfigMap, and plans the next job of
    the same kind (CPU, scratch, parameters of the same decade) from it. How close the plan and
    the projection came is printed (the targets are bench/plan_accuracy.py's, not this test's)."""
    cluster = real_cluster
    small = {"task": "causal-lm", "architecture": {"family": "gpt", "layers": 1, "hidden": 32, "heads": 2,
                                                   "vocabSize": 128, "contextLength": 64}}
    larger = {"task": "causal-lm", "architecture": {"family": "gpt", "layers": 2, "hidden": 48, "heads": 2,
                                                    "vocabSize": 128, "contextLength": 64}}
    first = training_job("e2e-calibrate", "scratch", small, "pvc://data/patterns.jsonl", training={"epochs": 1})
    apply(cluster, first)
    wait_phase(cluster, "e2e-calibrate", "Succeeded", timeout=420)

    def recorded() -> list[dict]:
        found = cluster.kubectl_run("get", "configmap", "trainwright-calibration", "-n", SYSTEM_NS, "-o", "json")
        runs = json.loads(json.loads(found.stdout)["data"]["runs.json"])["runs"] if found.returncode == 0 else []
        return [r for r in runs if r["strategy"] == "scratch" and r["gpu_type"] == "cpu"]
    runs = wait_for(recorded, timeout=30, message="the scratch job's measurements in the calibration ConfigMap")
    assert all(r["step_seconds"] > 0 and r["overhead_seconds"] > 0 for r in runs), runs

    second = training_job("e2e-calibrated", "scratch", larger, "pvc://data/patterns.jsonl", training={"epochs": 3})
    apply(cluster, second)
    plan = wait_for(lambda: status_of(cluster, "e2e-calibrated").get("plan"), timeout=60, message="a plan")
    assert plan["estimateBasis"].startswith("calibrated from"), plan
    status, projected = watch_projection(cluster, "e2e-calibrated", at_ratio=0.25)
    measured = (_time(status["completionTime"]) - _time(status["startTime"]))
    print(f"\nreal pods: calibrated plan {plan['estimatedSeconds']:.0f}s against {measured:.0f}s measured "
          f"({abs(plan['estimatedSeconds'] - measured) / measured:.0%} off; {plan['estimateBasis']}); "
          f"cost projected at 25% of steps ${projected:.6f} against ${status['cost']['usd']:.6f} "
          f"({abs(projected - status['cost']['usd']) / status['cost']['usd']:.0%} off)")
    print(f"calibrating run: {runs}\nmeasured run: steps {status['progress'].get('stepSeconds')}s of {measured:.1f}s")
    assert status["cost"].get("projectedUSD") is None  # a finished job shows no projection


# --------------------------------------------------------------------------- Prometheus


def test_prometheus_scrapes_the_operator_through_the_charts_service(real_cluster, release, jobs_namespace, prometheus_binary,
                                                                  tmp_path):
    cluster = real_cluster
    service = kget(cluster, "service", f"{RELEASE}-metrics", "-n", SYSTEM_NS)
    target = f"{service['spec']['clusterIP']}:{service['spec']['ports'][0]['port']}"
    # Prometheus runs where the Service's address means something (the node's namespace); its
    # port is forwarded to the host for the queries.
    port = free_port()
    cluster.forward_port("prometheus", port)
    started = time.time() - 1
    prom = Prometheus(prometheus_binary, tmp_path, targets=[target], port=port, prefix=cluster.netns.command)
    try:
        name = "e2e-watched"
        # The parameter count lets the planner estimate (a pvc:// model's is unknown to it).
        run_and_watch(cluster, training_job(name, "fine-tune", {**FINE_TUNE_MODEL, "parameters": 100_000},
                                            "pvc://data/living.jsonl"))
        wait_for(lambda: prom.query(f'trainwright_job_phase{{name="{name}",phase="Succeeded"}} == 1'), timeout=60,
                 message=lambda: f"Prometheus seeing {name} Succeeded\n{prom.logs()}")
        dashboard = json.loads((CHART / "dashboards" / "trainwright.json").read_text())
        empty = []
        for panel in dashboard["panels"]:
            for target_ in panel.get("targets", []):
                expr = target_["expr"].replace("$__rate_interval", "1m").replace("$namespace", ".*")
                if not prom.query_range(expr, started, time.time(), step=1):
                    empty.append(f"{panel['title']}: {expr}")
        assert not empty, "dashboard queries with no data:\n" + "\n".join(empty)
    finally:
        prom.stop()
