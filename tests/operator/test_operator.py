"""The operator on a real control plane: kubectl apply -> planned, launched, metered, finished."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devcluster import wait_for
from operatorkit import EXAMPLES, apply, claims, small_job

ROOT = Path(__file__).resolve().parents[2]
FINISHED = ("Succeeded", "Failed", "BudgetExceeded")


def get(cluster, kind, name, namespace) -> dict | None:
    result = cluster.kubectl_run("get", kind, name, "-n", namespace, "-o", "json")
    return json.loads(result.stdout) if result.returncode == 0 else None


def status_of(cluster, name, namespace) -> dict:
    return (get(cluster, "trainingjob", name, namespace) or {}).get("status") or {}


def wait_phase(cluster, name, namespace, phases, timeout=60) -> dict:
    phases = (phases,) if isinstance(phases, str) else phases
    wait_for(lambda: status_of(cluster, name, namespace).get("phase") in phases, timeout=timeout,
             message=lambda: f"{namespace}/{name} to reach {phases}; status {status_of(cluster, name, namespace)}")
    return status_of(cluster, name, namespace)


def running_pod(cluster, name, namespace) -> str:
    def find():
        pods = json.loads(cluster.kubectl("get", "pods", "-n", namespace, "-l", f"trainwright.dev/job={name}", "-o", "json"))
        running = [p["metadata"]["name"] for p in pods["items"]
                   if p["status"].get("phase") == "Running" and not p["metadata"].get("deletionTimestamp")]
        return running[0] if running else None
    wait_for(find, timeout=60, message=f"a running pod of {name}")
    return find()


@pytest.mark.parametrize("example, launcher_gpus, strategy", [
    ("fine-tune", "1", "fine-tune"), ("hybrid", "1", "hybrid"), ("scratch", "8", "scratch"), ("auto", "1", "fine-tune"),
])
def test_example_runs_to_success_with_the_planned_gpus_and_a_cost(cluster, operator, namespace, example, launcher_gpus, strategy):
    claims(cluster, namespace, "data", "ckpt", "corpus")
    document = EXAMPLES[example]
    apply(cluster, document, namespace)
    name = document["metadata"]["name"]
    wait_for(lambda: get(cluster, "job", f"{name}-trainer", namespace), timeout=30, message="the launcher Job")
    job = get(cluster, "job", f"{name}-trainer", namespace)
    limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == launcher_gpus
    status = wait_phase(cluster, name, namespace, FINISHED, timeout=90)
    assert status["phase"] == "Succeeded", status
    assert status["plan"]["strategy"] == strategy
    assert status["cost"]["usd"] > 0 and status["cost"]["gpuSeconds"] >= 1
    printed = cluster.kubectl("get", "tj", name, "-n", namespace)
    assert "Succeeded" in printed and strategy in printed
    events = cluster.kubectl("get", "events", "-n", namespace, "--field-selector", f"involvedObject.name={name}",
                             "-o", "jsonpath={.items[*].reason}").split()
    assert "Succeeded" in events, events
    assert any(c["type"] == "Planned" and c["status"] == "True" for c in status["conditions"])


def test_fine_tune_asking_for_several_gpus_runs_on_one_and_says_why(cluster, operator, namespace):
    apply(cluster, small_job("greedy", resources={"gpus": 4}), namespace)
    status = wait_phase(cluster, "greedy", namespace, ("Pending", "Running", "Succeeded"))
    wait_for(lambda: status_of(cluster, "greedy", namespace).get("plan"), timeout=30)
    status = status_of(cluster, "greedy", namespace)
    assert status["plan"]["gpus"] == 1
    sized = [c for c in status["conditions"] if c["type"] == "SizedDown"]
    assert sized and "sized down from 4 GPUs to 1" in sized[0]["message"]


def test_api_server_refuses_invalid_specs_with_the_field(cluster, namespace):
    bad = small_job("bad", strategy="scratch")
    result = cluster.kubectl_run("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(bad))
    assert result.returncode != 0
    assert "spec.model.architecture" in result.stderr and "strategy scratch needs model.architecture" in result.stderr
    worse = small_job("worse", training={"epochs": 0})
    result = cluster.kubectl_run("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(worse))
    assert result.returncode != 0 and "spec.training.epochs" in result.stderr


def test_unknown_gpu_type_fails_the_job_with_a_reason(cluster, operator, namespace):
    apply(cluster, small_job("exotic", resources={"gpus": 1, "gpuType": "nvidia-b999"}), namespace)
    status = wait_phase(cluster, "exotic", namespace, "Failed")
    [failed] = [c for c in status["conditions"] if c["type"] == "Failed"]
    assert failed["reason"] == "PlanningFailed" and "nvidia-b999" in failed["message"]
    assert get(cluster, "job", "exotic-trainer", namespace) is None


def test_a_job_waits_for_its_missing_claims_and_launches_when_they_exist(cluster, operator, namespace):
    """As a pod waits for its claim: `kubectl apply -f dir/` applies jobs and claims in any order."""
    apply(cluster, small_job("no-claim", checkpoint={"pvc": "later"}), namespace)
    apply(cluster, small_job("no-data", dataset={"source": "pvc://nothing/train.jsonl"}), namespace)
    for name, field, claim in (("no-claim", "checkpoint.pvc", "later"), ("no-data", "dataset.source", "nothing")):
        wait_for(lambda: any(c.get("reason") == "WaitingForClaim" for c in status_of(cluster, name, namespace).get("conditions") or []),
                 timeout=30, message=lambda: f"{name} waiting; status {status_of(cluster, name, namespace)}")
        status = status_of(cluster, name, namespace)
        [pending] = [c for c in status["conditions"] if c["type"] == "Pending"]
        assert pending["status"] == "True" and pending["message"].startswith(
            f"spec.{field}: waiting for PersistentVolumeClaim '{claim}' in {namespace}")
        assert status["phase"] == "Pending" and status["plan"]["gpus"] == 1  # the plan shows while it waits
        assert get(cluster, "job", f"{name}-trainer", namespace) is None
    claims(cluster, namespace, "later")
    assert wait_phase(cluster, "no-claim", namespace, "Succeeded", timeout=60)["launchedAt"]
    assert status_of(cluster, "no-data", namespace)["phase"] == "Pending"  # still waiting for its own claim


def test_the_wait_for_a_claim_is_bounded_by_max_duration(cluster, operator, namespace):
    apply(cluster, small_job("impatient", checkpoint={"pvc": "never"}, budget={"maxDuration": "3s"}), namespace)
    status = wait_phase(cluster, "impatient", namespace, "BudgetExceeded", timeout=30)
    [stopped] = [c for c in status["conditions"] if c["type"] == "BudgetExceeded"]
    assert stopped["reason"] == "DeadlineExceeded" and "PersistentVolumeClaim 'never'" in stopped["message"]


def test_failed_pod_is_retried_then_fails_after_the_backoff_limit(cluster, operator, namespace):
    apply(cluster, small_job("flaky", backoffLimit=1), namespace)
    for attempt in range(2):
        pod = running_pod(cluster, "flaky", namespace)
        cluster.kubectl("annotate", "pod", pod, "-n", namespace, "trainwright.dev/kwok-fail=true",
                        "trainwright.dev/kwok-duration=100ms")
        if attempt == 0:
            wait_for(lambda: (status_of(cluster, "flaky", namespace).get("restarts") or 0) >= 1, timeout=30)
            assert status_of(cluster, "flaky", namespace)["phase"] in ("Pending", "Running")
            wait_for(lambda: running_pod(cluster, "flaky", namespace) != pod, timeout=60)
    status = wait_phase(cluster, "flaky", namespace, "Failed", timeout=60)
    assert status["restarts"] == 2
    assert any(c["type"] == "Failed" and c["reason"] == "BackoffLimitExceeded" for c in status["conditions"])


def test_cost_budget_stops_the_job_and_keeps_the_cost(cluster, operator, namespace):
    apply(cluster, small_job("spender", budget={"maxCostUSD": 0.001}), namespace)
    status = wait_phase(cluster, "spender", namespace, FINISHED, timeout=30)  # woken by its budget, not the resync
    assert status["phase"] == "BudgetExceeded"
    assert status["cost"]["usd"] >= 0.001
    wait_for(lambda: get(cluster, "job", "spender-trainer", namespace) is None, timeout=30)
    assert get(cluster, "configmap", "spender-job", namespace) is not None


def test_deadline_stops_the_job(cluster, operator, namespace):
    apply(cluster, small_job("slow", budget={"maxDuration": "2s"}), namespace)
    status = wait_phase(cluster, "slow", namespace, FINISHED, timeout=30)  # woken at its deadline, not by the resync
    assert status["phase"] == "BudgetExceeded"
    assert any(c["reason"] == "DeadlineExceeded" for c in status["conditions"])


def test_suspend_removes_pods_and_resume_finishes_the_job(cluster, operator, namespace):
    apply(cluster, small_job("pausable"), namespace)
    running_pod(cluster, "pausable", namespace)
    cluster.kubectl("patch", "tj", "pausable", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":true}}')
    wait_phase(cluster, "pausable", namespace, "Suspended")
    wait_for(lambda: get(cluster, "job", "pausable-trainer", namespace) is None, timeout=30)
    cost_when_suspended = status_of(cluster, "pausable", namespace)["cost"]["gpuSeconds"]
    assert cost_when_suspended > 0
    cluster.kubectl("patch", "tj", "pausable", "-n", namespace, "--type=merge", "-p", '{"spec":{"suspend":false}}')
    status = wait_phase(cluster, "pausable", namespace, "Succeeded", timeout=60)
    assert status["cost"]["gpuSeconds"] > cost_when_suspended


def test_training_fields_are_immutable_after_launch_and_budget_edits_take_effect(cluster, operator, namespace):
    apply(cluster, small_job("editable"), namespace)
    wait_for(lambda: status_of(cluster, "editable", namespace).get("launchedAt"), timeout=30)
    edited = small_job("editable")
    edited["spec"]["training"] = {**edited["spec"]["training"], "epochs": 7}
    refused = cluster.kubectl_run("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(edited))
    assert refused.returncode != 0
    assert "spec.training cannot change after the job has launched" in refused.stderr
    cluster.kubectl("patch", "tj", "editable", "-n", namespace, "--type=merge", "-p", '{"spec":{"budget":{"maxCostUSD":0.0001}}}')
    status = wait_phase(cluster, "editable", namespace, "BudgetExceeded", timeout=30)
    generation = get(cluster, "trainingjob", "editable", namespace)["metadata"]["generation"]
    assert generation == 2 and status["observedGeneration"] == generation


def test_a_job_not_yet_launched_may_still_change(cluster, operator, namespace):
    apply(cluster, small_job("draft", checkpoint={"pvc": "later"}), namespace)  # waits for its claim
    wait_for(lambda: status_of(cluster, "draft", namespace).get("plan"), timeout=30)
    edited = small_job("draft", checkpoint={"pvc": "later"})
    edited["spec"]["resources"] = {"gpus": 0}
    apply(cluster, edited, namespace)  # no launchedAt yet: accepted, and planned again
    wait_for(lambda: status_of(cluster, "draft", namespace)["plan"]["gpus"] == 0, timeout=30,
             message=lambda: f"a new plan; status {status_of(cluster, 'draft', namespace)}")
    assert status_of(cluster, "draft", namespace)["observedGeneration"] == 2


def hold_running(cluster, pod: str, namespace: str) -> None:
    """Keep a kwok pod Running until the test is done with it (it would succeed after a few seconds)."""
    cluster.kubectl("annotate", "pod", pod, "-n", namespace, "trainwright.dev/kwok-complete=false")


def report_progress(cluster, name, namespace, step, total, eta_seconds) -> None:
    """What the trainer's reporter patches, as it would (kwok's pods run no trainer)."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    progress = {"step": step, "totalSteps": total, "ratio": step / total, "etaSeconds": eta_seconds, "updatedAt": now}
    cluster.kubectl("patch", "tj", name, "-n", namespace, "--subresource=status", "--type=merge",
                    "-p", json.dumps({"status": {"progress": progress}}))


def test_a_running_job_shows_its_projection_and_warns_of_a_projected_overrun(cluster, operator, namespace):
    apply(cluster, small_job("projected", budget={"maxCostUSD": 1.0}), namespace)
    hold_running(cluster, running_pod(cluster, "projected", namespace), namespace)
    report_progress(cluster, "projected", namespace, step=200, total=1000, eta_seconds=36000)
    wait_for(lambda: any(c["type"] == "BudgetAtRisk" and c["status"] == "True"
                         for c in status_of(cluster, "projected", namespace).get("conditions") or []), timeout=30,
             message=lambda: f"BudgetAtRisk; status {status_of(cluster, 'projected', namespace)}")
    status = status_of(cluster, "projected", namespace)
    assert status["phase"] == "Running" and status["cost"]["projectedUSD"] > 1.0
    assert status["cost"]["eta"] in ("9h59m", "10h00m")  # 36,000 s reported, less the seconds since
    columns = cluster.kubectl("get", "tj", "projected", "-n", namespace, "--no-headers").split()
    assert "9h59m" in columns or "10h00m" in columns  # the ETA column
    events = json.loads(cluster.kubectl("get", "events", "-n", namespace, "-o", "json"))["items"]
    assert [e["message"] for e in events if e["reason"] == "BudgetAtRisk"] == [
        next(c["message"] for c in status["conditions"] if c["type"] == "BudgetAtRisk")]


def test_stop_on_projected_overrun_stops_the_job_before_the_money_is_spent(cluster, operator, namespace):
    apply(cluster, small_job("prudent", budget={"maxCostUSD": 1.0, "onProjectedOverrun": "stop"}), namespace)
    hold_running(cluster, running_pod(cluster, "prudent", namespace), namespace)
    report_progress(cluster, "prudent", namespace, step=200, total=1000, eta_seconds=36000)
    status = wait_phase(cluster, "prudent", namespace, "BudgetExceeded", timeout=30)
    [stopped] = [c for c in status["conditions"] if c["type"] == "BudgetExceeded"]
    assert stopped["reason"] == "ProjectedCostOverrun" and status["cost"]["usd"] < 1.0
    wait_for(lambda: get(cluster, "job", "prudent-trainer", namespace) is None, timeout=30)


def test_a_finished_job_calibrates_the_plans_of_like_jobs_after_it(cluster, operator, namespace):
    job = small_job("measured")
    job["metadata"]["name"] = "measured"
    apply(cluster, job, namespace)
    running_pod(cluster, "measured", namespace)
    total = 100
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    cluster.kubectl("patch", "tj", "measured", "-n", namespace, "--subresource=status", "--type=merge", "-p", json.dumps(
        {"status": {"progress": {"step": total, "totalSteps": total, "ratio": 1.0, "stepSeconds": 4.0,
                                 "samplesSeen": 3200, "updatedAt": now}}}))
    wait_phase(cluster, "measured", namespace, "Succeeded", timeout=60)

    def recorded():
        found = get(cluster, "configmap", "trainwright-calibration", "default")
        runs = json.loads(found["data"]["runs.json"])["runs"] if found else []
        return [r for r in runs if r["step_seconds"] == 4.0]
    [run] = wait_for(recorded, timeout=30, message="the finished job's measurements in the calibration ConfigMap")
    assert run["gpu_type"] == "nvidia-h100" and run["strategy"] == "fine-tune" and run["overhead_seconds"] > 0
    apply(cluster, small_job("like-it"), namespace)
    wait_for(lambda: status_of(cluster, "like-it", namespace).get("plan"), timeout=30)
    assert status_of(cluster, "like-it", namespace)["plan"]["estimateBasis"].startswith("calibrated from")


def test_finished_job_is_deleted_after_its_ttl(cluster, operator, namespace):
    # a TTL long enough to see the job finished first: its wake-up comes on time, not on a sweep
    apply(cluster, small_job("ephemeral", ttlSecondsAfterFinished=5), namespace)
    wait_phase(cluster, "ephemeral", namespace, "Succeeded", timeout=60)
    wait_for(lambda: get(cluster, "trainingjob", "ephemeral", namespace) is None, timeout=30)
    wait_for(lambda: get(cluster, "configmap", "ephemeral-job", namespace) is None, timeout=30,
             message="children garbage-collected")


def test_trainer_token_patches_its_own_status_and_nothing_else(cluster, operator, namespace, tmp_path, monkeypatch):
    for name in ("mine", "theirs"):
        apply(cluster, small_job(name), namespace)
        wait_for(lambda: get(cluster, "rolebinding", f"{name}-trainer", namespace), timeout=30)
    token = cluster.kubectl("create", "token", "mine-trainer", "-n", namespace).strip()
    (tmp_path / "token").write_text(token)
    monkeypatch.setenv("TRAINWRIGHT_KUBE_API", cluster.server)
    monkeypatch.setenv("TRAINWRIGHT_KUBE_TOKEN_FILE", str(tmp_path / "token"))
    monkeypatch.setenv("TRAINWRIGHT_KUBE_CA_FILE", str(cluster.ca_file))
    from trainwright.api.status import Progress
    from trainwright.trainer.kube_reporter import KubernetesReporter

    mine = KubernetesReporter("mine", namespace)
    mine.on_eval({"val_loss": 0.5})
    mine.on_step(Progress(step=10, totalSteps=100, epoch=0, ratio=0.1, loss=0.7, samplesPerSecond=50.0))
    progress = status_of(cluster, "mine", namespace)["progress"]
    assert progress["step"] == 10 and progress["loss"] == 0.7 and progress["metrics"] == {"val_loss": 0.5}
    assert KubernetesReporter("theirs", namespace).patch({"progress": {"step": 99}}) == 403
    assert "progress" not in status_of(cluster, "theirs", namespace)


def test_multi_node_plan_without_kuberay_fails_fast_then_runs_as_a_rayjob_with_it(cluster, operator, namespace):
    claims(cluster, namespace, "ckpt", "corpus")
    document = EXAMPLES["scratch-multinode"]
    apply(cluster, document, namespace)
    status = wait_phase(cluster, "gpt-multinode", namespace, "Failed")
    assert any(c["reason"] == "KubeRayMissing" for c in status["conditions"])
    cluster.install_kuberay_crds()
    apply(cluster, {**document, "metadata": {"name": "gpt-multinode-2"}}, namespace)
    wait_for(lambda: get(cluster, "rayjob", "gpt-multinode-2-trainer", namespace), timeout=30, message="the RayJob")
    ray_job = get(cluster, "rayjob", "gpt-multinode-2-trainer", namespace)
    [workers] = ray_job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert workers["replicas"] == 2
    assert workers["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"


def test_operator_survives_the_api_server_going_away_and_catches_up(cluster, operator, namespace):
    apply(cluster, small_job("outage"), namespace)
    running_pod(cluster, "outage", namespace)
    wait_phase(cluster, "outage", namespace, "Running")
    with cluster.paused("kube-apiserver"):
        time.sleep(30)
        assert operator.process.poll() is None, "the operator died while the API server was away"
    status = wait_phase(cluster, "outage", namespace, "Succeeded", timeout=90)
    assert status["plan"]["strategy"] == "fine-tune" and status["cost"]["usd"] > 0
    assert any(c["type"] == "Running" for c in status["conditions"])
    assert operator.healthy()


def job_samples(text: str, namespace: str, name: str) -> dict[tuple[str, str], float]:
    """{(metric, phase label or ''): value} of one job's series in a /metrics page."""
    return {(s.name, s.labels.get("phase", "")): s.value
            for family in text_string_to_metric_families(text) for s in family.samples
            if s.labels.get("namespace") == namespace and s.labels.get("name") == name}


def test_metrics_show_job_series_that_vanish_after_deletion(cluster, operator, namespace):
    apply(cluster, small_job("observed", budget={"maxCostUSD": 5}), namespace)
    wait_phase(cluster, "observed", namespace, "Succeeded", timeout=60)
    wait_for(lambda: job_samples(operator.metrics(), namespace, "observed").get(("trainwright_job_phase", "Succeeded")) == 1.0,
             timeout=15, message="the job's phase series")
    samples = job_samples(operator.metrics(), namespace, "observed")
    assert samples[("trainwright_job_cost_dollars_total", "")] > 0
    assert samples[("trainwright_job_gpu_seconds_total", "")] > 0
    assert samples[("trainwright_job_budget_dollars", "")] == 5
    assert samples[("trainwright_job_gpus", "")] == 1
    assert ("trainwright_job_estimated_cost_dollars", "") in samples
    assert 'trainwright_operator_handler_runs_total{handler="launch",result="success"}' in operator.metrics()
    cluster.kubectl("delete", "tj", "observed", "-n", namespace)
    wait_for(lambda: not job_samples(operator.metrics(), namespace, "observed"), timeout=15,
             message="the series to vanish")


def test_operator_killed_in_a_burst_of_creates_leaves_exactly_one_set_of_children(cluster, operator, namespace):
    documents = [small_job(f"burst-{i}") for i in range(50)]
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump_all(documents))
    time.sleep(1.0)  # let the operator get part-way through the burst
    operator.kill()
    operator.start()

    def all_planned():
        jobs = json.loads(cluster.kubectl("get", "tj", "-n", namespace, "-o", "json"))["items"]
        return len(jobs) == 50 and all((j.get("status") or {}).get("plan") for j in jobs)
    wait_for(all_planned, timeout=120, message="all 50 jobs planned")
    for kind in ("configmap", "serviceaccount", "role", "rolebinding", "job"):
        names = cluster.kubectl("get", kind, "-n", namespace, "-l", "app.kubernetes.io/managed-by=trainwright",
                                "-o", "jsonpath={.items[*].metadata.name}").split()
        suffix = "-job" if kind == "configmap" else "-trainer"
        assert sorted(names) == sorted(f"burst-{i}{suffix}" for i in range(50)), kind


def test_trainer_runs_the_operators_pod_spec_and_reports_progress_into_the_status(cluster, operator, namespace, tmp_path):
    """The trainer container's contract end to end: the operator's pod spec (command, env, job
    file from the ConfigMap) run as a local process with the pod's ServiceAccount token."""
    from devcluster import free_port
    from trainwright.trainer.demo import DEMO_ARCHITECTURE, demo_job

    document = demo_job("e2e", "scratch", "topics", {"architecture": DEMO_ARCHITECTURE}, {"epochs": 2, "learningRate": 1e-3})
    apply(cluster, document, namespace)
    wait_for(lambda: get(cluster, "job", "e2e-trainer", namespace), timeout=30, message="the launcher Job")
    container = get(cluster, "job", "e2e-trainer", namespace)["spec"]["template"]["spec"]["containers"][0]
    (tmp_path / "job.yaml").write_text(get(cluster, "configmap", "e2e-job", namespace)["data"]["job.yaml"])
    (tmp_path / "token").write_text(cluster.kubectl("create", "token", "e2e-trainer", "-n", namespace).strip())
    env = {**os.environ, **{e["name"]: e["value"] for e in container["env"]},
           "TRAINWRIGHT_JOB_FILE": str(tmp_path / "job.yaml"), "TRAINWRIGHT_OUTPUT_DIR": str(tmp_path / "out"),
           "TRAINWRIGHT_METRICS_PORT": str(free_port()), "HF_HOME": str(tmp_path / "hf"),
           "TRAINWRIGHT_KUBE_API": cluster.server, "TRAINWRIGHT_KUBE_TOKEN_FILE": str(tmp_path / "token"),
           "TRAINWRIGHT_KUBE_CA_FILE": str(cluster.ca_file)}
    assert container["command"][:2] == ["python", "-m"]
    result = subprocess.run([sys.executable, *container["command"][1:]], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    progress = status_of(cluster, "e2e", namespace)["progress"]
    assert progress["step"] == progress["totalSteps"] > 0 and progress["ratio"] == 1.0
    assert progress["loss"] > 0 and progress["metrics"]["val_accuracy"] > 0.5
    assert "1" in cluster.kubectl("get", "tj", "e2e", "-n", namespace, "-o", "custom-columns=P:.status.progress.ratio")
