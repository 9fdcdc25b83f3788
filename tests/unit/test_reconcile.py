"""Phase, cost and policies as a pure function of the children's state, from real-shaped objects."""

from datetime import datetime, timedelta, timezone

import pytest

from trainwright.api import parse_job
from trainwright.controller.observe import batch_job_state, pods_usage, ray_job_state, waiting_reason
from trainwright.controller.reconcile import LauncherState, Observed, fields_to_write, reconcile, rfc3339

NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=timezone.utc)
PRICE = 3.6  # dollars per device-hour: 0.001 per second


def spec_of(job_dict, **changes):
    job_dict["spec"].update(changes)
    return parse_job(job_dict).spec


def observe(launcher=None, running=0, seconds=0.0, now=NOW, pod="p1"):
    """What the operator sees: the launcher and one pod (``pod``) with ``seconds`` so far."""
    return Observed(launcher or LauncherState(exists=True, uid="u1", active=1), running,
                    {pod: seconds} if seconds else {}, now)


def test_no_launcher_means_create_it(job_dict):
    decision = reconcile(spec_of(job_dict), {}, observe(LauncherState(exists=False)), PRICE)
    assert decision.create_launcher and decision.status["phase"] == "Pending"


def test_running_pods_make_the_job_running_and_set_start_time_without_an_event(job_dict):
    decision = reconcile(spec_of(job_dict), {"phase": "Pending"}, observe(running=1, seconds=10), PRICE)
    assert decision.status["phase"] == "Running"
    assert decision.status["startTime"] == rfc3339(NOW)
    assert decision.status["cost"]["gpuSeconds"] == 10 and decision.status["cost"]["usd"] == pytest.approx(0.01)
    assert decision.status["conditions"][-1]["reason"] == "TrainerRunning" and decision.events == []


def test_completed_launcher_means_succeeded(job_dict):
    launcher = LauncherState(exists=True, uid="u1", succeeded=True)
    decision = reconcile(spec_of(job_dict), {"phase": "Running"}, observe(launcher, seconds=100), PRICE)
    assert decision.status["phase"] == "Succeeded"
    assert decision.status["completionTime"] == rfc3339(NOW)
    assert decision.status["cost"]["usd"] > 0
    assert any(c["type"] == "Succeeded" and c["status"] == "True" for c in decision.status["conditions"])


def test_failed_launcher_after_backoff_means_failed_with_restarts(job_dict):
    launcher = LauncherState(exists=True, uid="u1", failures=4, failed=True, message="Job has reached the specified backoff limit")
    decision = reconcile(spec_of(job_dict), {"phase": "Running"}, observe(launcher), PRICE)
    assert decision.status["phase"] == "Failed" and decision.status["restarts"] == 4
    assert decision.events[0][0] == "Warning"


def test_cost_over_budget_stops_the_job_and_keeps_its_cost(job_dict):
    spec = spec_of(job_dict, budget={"maxCostUSD": 1})
    decision = reconcile(spec, {"phase": "Running", "startTime": rfc3339(NOW)}, observe(running=1, seconds=1500), PRICE)
    assert decision.status["phase"] == "BudgetExceeded" and decision.delete_launcher
    assert decision.status["cost"]["gpuSeconds"] == 1500
    # the same pod seen again (deletion in flight) is not counted twice, nor lost once gone
    again = reconcile(spec, decision.status, observe(running=1, seconds=1500), PRICE)
    assert again.status["cost"]["gpuSeconds"] == 1500
    gone = reconcile(spec, again.status, observe(LauncherState(exists=False)), PRICE)
    assert gone.status["cost"]["gpuSeconds"] == 1500 and gone.status["cost"]["settledGpuSeconds"] == 1500


def test_a_deleted_pod_still_counts_and_its_replacement_adds_to_it(job_dict):
    spec = spec_of(job_dict)
    first = reconcile(spec, {"phase": "Running"}, observe(running=1, seconds=40, pod="p1"), PRICE)
    # p1 deleted, its replacement p2 running 25 s: 40 + 25, and p1 is never counted twice
    second = reconcile(spec, first.status, observe(running=1, seconds=25, pod="p2"), PRICE)
    assert second.status["cost"]["gpuSeconds"] == 65 and second.status["cost"]["settledGpuSeconds"] == 40
    third = reconcile(spec, second.status, observe(running=1, seconds=30, pod="p2"), PRICE)
    assert third.status["cost"]["gpuSeconds"] == 70
    assert third.status["cost"]["pods"] == [{"uid": "p2", "seconds": 30}]


def test_a_deleted_pod_counts_with_its_final_seconds_when_the_watch_brought_them(job_dict):
    spec = spec_of(job_dict)
    first = reconcile(spec, {"phase": "Running"}, observe(running=1, seconds=40, pod="p1"), PRICE)
    # p1 ran 47 s in all (its last state, from the watch's DELETED event); p2 is new
    gone = Observed(LauncherState(exists=True, uid="u1", active=1), 1, {"p2": 5}, NOW, gone_seconds={"p1": 47})
    second = reconcile(spec, first.status, gone, PRICE)
    assert second.status["cost"]["gpuSeconds"] == 52 and second.status["cost"]["settledGpuSeconds"] == 47
    # a pod that came and went between two reconciles still counts
    brief = Observed(LauncherState(exists=True, uid="u1", active=1), 1, {"p2": 6}, NOW, gone_seconds={"p3": 2})
    assert reconcile(spec, second.status, brief, PRICE).status["cost"]["gpuSeconds"] == 55


def test_a_pod_that_has_not_started_is_not_worth_a_status_write_until_it_holds_money(job_dict):
    spec = spec_of(job_dict)
    launched = reconcile(spec, {"phase": "Pending"}, observe(), PRICE).status
    pending_pod = Observed(LauncherState(exists=True, uid="u1", active=1), 0, {"p1": 0.0}, NOW + timedelta(seconds=1))
    assert fields_to_write(launched, reconcile(spec, launched, pending_pod, PRICE).status, pending_pod.now) == {}
    running = observe(running=1, seconds=2, now=NOW + timedelta(seconds=3))
    fields = fields_to_write(launched, reconcile(spec, launched, running, PRICE).status, running.now)
    assert fields["phase"] == "Running" and fields["cost"]["pods"] == [{"uid": "p1", "seconds": 2}]
    # a pod gone with its seconds is settled at once, whatever else changed
    gone = Observed(LauncherState(exists=True, uid="u1", active=1), 0, {}, NOW + timedelta(seconds=4), gone_seconds={"p1": 2.5})
    after = {**launched, **fields}
    assert fields_to_write(after, reconcile(spec, after, gone, PRICE).status, gone.now)["cost"]["settledGpuSeconds"] == 2.5


def test_deadline_stops_the_job(job_dict):
    spec = spec_of(job_dict, budget={"maxDuration": "1h"})
    start = rfc3339(NOW - timedelta(hours=2))
    decision = reconcile(spec, {"phase": "Running", "startTime": start}, observe(running=1), PRICE)
    assert decision.status["phase"] == "BudgetExceeded" and decision.delete_launcher
    assert "over maxDuration 1h" in decision.events[0][2]


def test_suspend_removes_the_launcher_and_resume_recreates_it(job_dict):
    suspended = reconcile(spec_of(job_dict, suspend=True), {"phase": "Running"}, observe(running=1, seconds=50), PRICE)
    assert suspended.status["phase"] == "Suspended" and suspended.delete_launcher
    assert suspended.status["cost"]["gpuSeconds"] == 50
    resumed = reconcile(spec_of(job_dict, suspend=False), suspended.status, observe(LauncherState(exists=False)), PRICE)
    assert resumed.create_launcher and resumed.status["phase"] == "Pending"
    assert resumed.status["cost"]["gpuSeconds"] == 50


def test_ttl_deletes_finished_jobs_only_after_it_passes(job_dict):
    spec = spec_of(job_dict, ttlSecondsAfterFinished=60)
    finished = {"phase": "Succeeded", "completionTime": rfc3339(NOW - timedelta(seconds=30))}
    assert not reconcile(spec, finished, observe(), PRICE).delete_job
    finished["completionTime"] = rfc3339(NOW - timedelta(seconds=61))
    assert reconcile(spec, finished, observe(), PRICE).delete_job


def test_each_decision_says_when_time_alone_next_matters(job_dict):
    started = {"phase": "Running", "startTime": rfc3339(NOW - timedelta(minutes=10))}
    no_budget = spec_of(job_dict, budget={})
    # pending, nothing running, no deadline: only events can change it
    assert reconcile(no_budget, {"phase": "Pending"}, observe(), PRICE).recheck_after is None
    # running: the cost in the status is brought up to date
    assert reconcile(no_budget, started, observe(running=1), PRICE).recheck_after == 15
    # running on a cost budget: checked often, it must stop soon after the money runs out
    assert reconcile(spec_of(job_dict, budget={"maxCostUSD": 100}), started, observe(running=1),
                     PRICE).recheck_after == 3
    # a deadline 20 minutes from the first start: woken when it passes, even with no pod running
    spec = spec_of(job_dict, budget={"maxDuration": "20m"})
    assert reconcile(spec, {**started, "phase": "Pending"}, observe(), PRICE).recheck_after == 600
    # finished: only its TTL is left
    finished = {"phase": "Succeeded", "completionTime": rfc3339(NOW - timedelta(seconds=40))}
    assert reconcile(spec_of(job_dict, ttlSecondsAfterFinished=100), finished, observe(), PRICE).recheck_after == 60
    assert reconcile(spec_of(job_dict, ttlSecondsAfterFinished=None), finished, observe(), PRICE).recheck_after is None


def test_same_world_same_decision(job_dict):
    spec = spec_of(job_dict)
    status = {"phase": "Running", "startTime": rfc3339(NOW)}
    assert reconcile(spec, status, observe(running=1, seconds=5), PRICE).status == \
        reconcile(spec, status, observe(running=1, seconds=5), PRICE).status


def test_condition_transition_time_moves_only_on_change(job_dict):
    spec = spec_of(job_dict)
    first = reconcile(spec, {"phase": "Pending"}, observe(running=1), PRICE)
    later = reconcile(spec, first.status, observe(running=1, now=NOW + timedelta(minutes=5)), PRICE)
    assert later.status["conditions"] == first.status["conditions"]
    assert later.events == []


# Real-shaped children, as the API server returns them.
JOB_COMPLETE = {"metadata": {"uid": "j1"}, "spec": {"suspend": False},
                "status": {"succeeded": 1, "conditions": [
                    {"type": "SuccessCriteriaMet", "status": "True"},
                    {"type": "Complete", "status": "True", "message": "Reached expected number of succeeded pods"}]}}
JOB_FAILED = {"metadata": {"uid": "j1"}, "spec": {},
              "status": {"failed": 2, "conditions": [{"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded",
                                                      "message": "Job has reached the specified backoff limit"}]}}
JOB_RUNNING = {"metadata": {"uid": "j1"}, "spec": {}, "status": {"active": 1, "failed": 1}}
POD_RUNNING = {"metadata": {"uid": "running"}, "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}}]},
               "status": {"phase": "Running", "startTime": "2026-11-27T11:59:00Z",
                          "containerStatuses": [{"state": {"running": {"startedAt": "2026-11-27T11:59:30Z"}}}]}}
POD_DONE = {"metadata": {"uid": "done"}, "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "2"}}}]},
            "status": {"phase": "Succeeded", "startTime": "2026-11-27T11:50:00Z", "containerStatuses": [
                {"state": {"terminated": {"startedAt": "2026-11-27T11:50:00Z", "finishedAt": "2026-11-27T11:51:00Z", "exitCode": 0}}}]}}
POD_PENDING = {"metadata": {"uid": "pending"}, "spec": {"containers": [{}]}, "status": {"phase": "Pending"}}


def test_batch_job_states():
    assert batch_job_state(JOB_COMPLETE).succeeded
    failed = batch_job_state(JOB_FAILED)
    assert failed.failed and failed.failures == 2 and "backoff limit" in failed.message
    running = batch_job_state(JOB_RUNNING)
    assert running.active == 1 and not running.failed and running.failures == 1
    assert not batch_job_state(None).exists
    assert not batch_job_state({**JOB_RUNNING, "metadata": {"uid": "j1", "deletionTimestamp": "x"}}).exists


def _ray_job(**status) -> dict:
    return {"metadata": {"uid": "r"}, "status": status}


def test_ray_job_states():
    assert ray_job_state(_ray_job(jobStatus="SUCCEEDED", jobDeploymentStatus="Complete")).succeeded
    assert ray_job_state(_ray_job(jobStatus="FAILED", jobDeploymentStatus="Failed", failed=4)).failed
    assert ray_job_state(_ray_job(jobStatus="STOPPED", jobDeploymentStatus="Complete")).failed
    assert ray_job_state(_ray_job(jobDeploymentStatus="ValidationFailed")).failed
    assert ray_job_state(_ray_job(jobDeploymentStatus="Suspended")).suspended
    assert ray_job_state(_ray_job(jobStatus="RUNNING", jobDeploymentStatus="Running")).active == 1


def test_a_ray_job_that_kuberay_retries_is_restarting_not_failed():
    """KubeRay's order after a failed attempt with retries left: FAILED + Retrying, then a new cluster."""
    for status in (dict(jobStatus="FAILED", jobDeploymentStatus="Retrying", failed=1),
                   dict(jobStatus="NEW", jobDeploymentStatus="Initializing", failed=1),
                   dict(jobStatus="RUNNING", jobDeploymentStatus="Running", failed=1)):
        state = ray_job_state(_ray_job(**status))
        assert not state.failed and state.failures == 1, status


def test_pod_usage_counts_gpu_seconds_of_running_and_finished_pods():
    running, seconds = pods_usage([POD_RUNNING, POD_DONE, POD_PENDING], cpu_job=False, now=NOW)
    assert running == 1
    assert seconds == {"running": 2 * 60, "done": 2 * 60, "pending": 0}  # from the pods' start times: the GPUs are held from then


def test_cpu_jobs_count_each_pod_as_one_worker():
    _, seconds = pods_usage([POD_DONE], cpu_job=True, now=NOW)
    assert seconds == {"done": 60}


POD_UNSCHEDULABLE = {"metadata": {}, "spec": {"containers": [{}]}, "status": {"phase": "Pending", "conditions": [
    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
     "message": "0/3 nodes are available: 3 Insufficient nvidia.com/gpu."}]}}


def test_unschedulable_pods_explain_why_the_job_is_pending(job_dict):
    reason = waiting_reason([POD_RUNNING, POD_UNSCHEDULABLE])
    assert reason == "Unschedulable: 0/3 nodes are available: 3 Insufficient nvidia.com/gpu."
    decision = reconcile(spec_of(job_dict), {}, Observed(LauncherState(exists=True, uid="u"), 0, {}, NOW, reason), PRICE)
    [pending] = [c for c in decision.status["conditions"] if c["type"] == "Pending"]
    assert pending["message"] == reason
