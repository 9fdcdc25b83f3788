"""The Reconciler against a fake API client: which writes it makes, in which order, and what
it does when the cluster lacks something or the API server refuses. The real API server and
operator process are tested in tests/operator; here every branch of reconcile_job is cheap."""

import asyncio
import copy
from datetime import datetime, timedelta, timezone

import pytest
from kubernetes.client.exceptions import ApiException

from trainwright.api import reasons as r
from trainwright.controller.children import LaunchSettings
from trainwright.controller.metrics import JobStore, OperatorMetrics
from trainwright.controller.reconcile import (
    FINISHED_RESYNC_SECONDS, RESYNC_SECONDS, RETRY_MAX_SECONDS, resync_after, retry_delay, rfc3339,
)
from trainwright.controller.reconciler import Reconciler
from trainwright.controller.world import World
from trainwright.planner import default_catalog

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=timezone.utc)
KEY = ("ml", "sentiment")


class FakeKube:
    """Objects by (kind, namespace, name); records creates, deletes and status patches in order."""

    def __init__(self, *, kuberay: bool = False):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.calls: list[tuple[str, str]] = []  # (verb, kind)
        self.patches: list[dict] = []
        self.events: list[dict] = []
        self.kuberay = kuberay
        self.fail_patches = 0

    def add(self, kind: str, namespace: str, name: str, body: dict | None = None) -> None:
        self.objects[(kind, namespace, name)] = body or {"kind": kind, "metadata": {"name": name, "namespace": namespace}}

    async def get(self, api_version, kind, namespace, name):
        return self.objects.get((kind, namespace, name))

    async def create(self, manifest):
        kind, meta = manifest["kind"], manifest["metadata"]
        self.calls.append(("create", kind))
        if kind == "Event":
            self.events.append(manifest)
            return manifest
        key = (kind, meta["namespace"], meta["name"])
        if key in self.objects:
            return None  # 409: it is there
        self.objects[key] = manifest
        return manifest

    async def delete(self, api_version, kind, namespace, name):
        self.calls.append(("delete", kind))
        return self.objects.pop((kind, namespace, name), None) is not None

    async def request(self, method, path, body=None, query=None, content_type=None):
        assert method == "PATCH" and path.endswith("/status")
        self.calls.append(("patch", "status"))
        if self.fail_patches:
            self.fail_patches -= 1
            raise ApiException(status=500, reason="Internal Server Error")
        self.patches.append(body["status"])
        job = self.objects[("TrainingJob", KEY[0], KEY[1])]
        job["status"] = {**(job.get("status") or {}), **body["status"]}
        return copy.deepcopy(job)

    async def has_resource(self, group, version, plural):
        return self.kuberay


class Clock:
    def __init__(self):
        self.now = NOW

    def __call__(self):
        return self.now


def job_body(job_dict, generation=1):
    body = copy.deepcopy(job_dict)
    body["metadata"].update(uid="u1", generation=generation, creationTimestamp=rfc3339(NOW))
    body["status"] = {}
    return body


def setup(job_dict, kube=None):
    """A reconciler, its fake client and world, with the job known to both."""
    kube, clock = kube or FakeKube(), Clock()
    world = World(settle_seconds=0)
    body = job_body(job_dict)
    kube.add("TrainingJob", *KEY, body)
    world.saw_job("ADDED", copy.deepcopy(body))
    reconciler = Reconciler(kube, world, default_catalog(), LaunchSettings(trainer_image="trainer:test"),
                            OperatorMetrics(JobStore()), clock=clock)
    return reconciler, kube, world, clock


def run(coro):
    return asyncio.run(coro)


def status_of(world):
    return world.jobs[KEY]["status"]


def condition(status, type_):
    return next(c for c in status["conditions"] if c["type"] == type_)


def test_a_new_job_gets_its_children_then_one_status_write_with_plan_and_generation(job_dict):
    async def go():
        reconciler, kube, world, _ = setup(job_dict)
        kube.add("PersistentVolumeClaim", "ml", "data")
        await reconciler.reconcile_job(KEY)
        return kube, world

    kube, world = run(go())
    creates = [kind for verb, kind in kube.calls if verb == "create"]
    assert sorted(creates) == ["ConfigMap", "Job", "Role", "RoleBinding", "ServiceAccount"]
    assert kube.calls[-1] == ("patch", "status") and len(kube.patches) == 1  # children first, then the one write
    status = status_of(world)
    assert status["plan"]["strategy"] == "fine-tune" and status["plan"]["gpus"] == 1
    assert status["observedGeneration"] == 1 and status["launchedAt"] == rfc3339(NOW)
    assert status["phase"] == "Pending" and condition(status, "Planned")["status"] == "True"
    assert kube.events == []  # the Planned condition says it; an Event per new job doubles the writes


def test_a_missing_claim_makes_the_job_wait_with_its_plan_then_launch_when_it_exists(job_dict):
    async def go():
        reconciler, kube, world, clock = setup(job_dict)
        await reconciler.reconcile_job(KEY)
        waiting = copy.deepcopy(status_of(world))
        creates_while_waiting = [k for v, k in kube.calls if v == "create" and k != "Event"]
        events = list(kube.events)
        clock.now += timedelta(seconds=5)
        await reconciler.reconcile_job(KEY)  # nothing changed: no second write, no second event
        patches_after_recheck = len(kube.patches)
        kube.add("PersistentVolumeClaim", "ml", "data")
        clock.now += timedelta(seconds=2)
        await reconciler.reconcile_job(KEY)
        return kube, world, waiting, creates_while_waiting, events, patches_after_recheck

    kube, world, waiting, creates_while_waiting, events, patches_after_recheck = run(go())
    assert creates_while_waiting == []
    assert waiting["phase"] == "Pending" and waiting["plan"]["gpus"] == 1 and "launchedAt" not in waiting
    pending = condition(waiting, "Pending")
    assert pending["reason"] == r.WAITING_FOR_CLAIM
    assert pending["message"].startswith("spec.dataset.source: waiting for PersistentVolumeClaim 'data' in ml")
    assert [(e["type"], e["reason"]) for e in events] == [("Normal", r.WAITING_FOR_CLAIM)]
    assert patches_after_recheck == 1
    launched = status_of(world)
    assert launched["launchedAt"] == rfc3339(NOW + timedelta(seconds=7))
    assert condition(launched, "Pending")["reason"] != r.WAITING_FOR_CLAIM
    assert ("create", "Job") in kube.calls


def test_the_wait_for_a_claim_is_bounded_by_max_duration(job_dict):
    job_dict["spec"]["budget"] = {"maxDuration": "10m"}

    async def go():
        reconciler, kube, world, clock = setup(job_dict)
        await reconciler.reconcile_job(KEY)
        clock.now += timedelta(minutes=11)
        await reconciler.reconcile_job(KEY)
        return kube, world

    kube, world = run(go())
    status = status_of(world)
    assert status["phase"] == "BudgetExceeded"
    stopped = condition(status, "BudgetExceeded")
    assert stopped["reason"] == r.DEADLINE_EXCEEDED and "waited 11m" in stopped["message"]
    assert "PersistentVolumeClaim 'data'" in stopped["message"]
    assert not any(verb == "create" and kind == "Job" for verb, kind in kube.calls)


def test_an_unknown_gpu_type_fails_at_once_without_a_plan(job_dict):
    job_dict["spec"]["resources"] = {"gpus": 1, "gpuType": "nvidia-z9000"}

    async def go():
        reconciler, kube, world, _ = setup(job_dict)
        await reconciler.reconcile_job(KEY)
        return kube, world

    kube, world = run(go())
    status = status_of(world)
    assert status["phase"] == "Failed" and "plan" not in status and status["observedGeneration"] == 1
    assert condition(status, "Failed")["reason"] == r.PLANNING_FAILED and "nvidia-z9000" in condition(status, "Failed")["message"]
    assert [e["reason"] for e in kube.events] == [r.PLANNING_FAILED]
    assert not any(verb == "create" and kind != "Event" for verb, kind in kube.calls)


def test_a_job_across_pods_without_kuberay_fails_and_still_shows_its_plan(job_dict):
    job_dict["spec"].update(strategy="scratch", model={"task": "causal-lm", "architecture": {"family": "gpt", "layers": 2, "hidden": 64}})
    job_dict["spec"]["resources"] = {"gpus": 16, "gpuType": "nvidia-h100"}
    job_dict["spec"]["checkpoint"] = {"pvc": "ckpt"}

    async def go():
        reconciler, kube, world, _ = setup(job_dict)
        await reconciler.reconcile_job(KEY)
        return world

    status = status_of(run(go()))
    assert status["phase"] == "Failed" and condition(status, "Failed")["reason"] == r.KUBERAY_MISSING
    assert status["plan"]["launcher"] == "rayjob" and status["plan"]["gpus"] == 16


def test_a_spec_the_operator_cannot_read_fails_the_job_with_the_reason(job_dict):
    async def go():
        reconciler, kube, world, _ = setup(job_dict)
        world.jobs[KEY]["spec"]["resources"]["gpus"] = -1  # e.g. an older CRD let it through
        await reconciler.reconcile_job(KEY)
        return kube, world

    kube, world = run(go())
    status = status_of(world)
    assert status["phase"] == "Failed" and condition(status, "Failed")["reason"] == r.INVALID_SPEC
    assert "resources.gpus" in condition(status, "Failed")["message"]


def test_events_are_posted_only_after_the_status_write_succeeds(job_dict):
    async def go():
        reconciler, kube, world, _ = setup(job_dict)
        kube.fail_patches = 1
        with pytest.raises(ApiException):
            await reconciler.reconcile_job(KEY)  # waiting for the claim: a status and an event to post
        events_after_failure = list(kube.events)
        await reconciler.reconcile_job(KEY)
        return kube, events_after_failure

    kube, events_after_failure = run(go())
    assert events_after_failure == []
    assert [e["reason"] for e in kube.events] == [r.WAITING_FOR_CLAIM]


def test_failed_reconciles_back_off_per_job_and_reset_on_success(job_dict):
    async def go():
        reconciler, kube, world, _ = setup(job_dict)
        kube.add("PersistentVolumeClaim", "ml", "data")
        kube.fail_patches = 3
        delays = []
        world.mark_after = lambda key, seconds: delays.append(seconds)
        task = asyncio.create_task(reconciler.run(workers=1))
        for _ in range(4):
            world.mark(KEY)
            await asyncio.sleep(0.05)
        task.cancel()
        return delays, reconciler.failures

    delays, failures = run(go())
    assert delays[:3] == [1.0, 2.0, 4.0]  # each failure doubles the wait
    assert KEY not in failures  # the fourth reconcile succeeded
    assert [retry_delay(n) for n in (1, 2, 3, 20)] == [1.0, 2.0, 4.0, RETRY_MAX_SECONDS]


def test_a_spec_edit_after_launch_is_reflected_in_observed_generation(job_dict):
    async def go():
        reconciler, kube, world, clock = setup(job_dict)
        kube.add("PersistentVolumeClaim", "ml", "data")
        await reconciler.reconcile_job(KEY)
        edited = copy.deepcopy(world.jobs[KEY])
        edited["metadata"]["generation"] = 2
        edited["spec"]["budget"] = {"maxCostUSD": 10}
        world.saw_job("MODIFIED", edited)
        clock.now += timedelta(seconds=1)
        await reconciler.reconcile_job(KEY)
        return world

    status = status_of(run(go()))
    assert status["observedGeneration"] == 2


def test_a_launcher_made_by_an_operator_that_stopped_before_its_status_write_still_marks_the_launch(job_dict):
    async def go():
        reconciler, kube, world, _ = setup(job_dict)
        kube.add("PersistentVolumeClaim", "ml", "data")
        await reconciler.reconcile_job(KEY)
        world.jobs[KEY]["status"] = {}  # as if the status write never happened: the children are there
        kube.objects[("TrainingJob", *KEY)]["status"] = {}
        world.saw_launcher("ADDED", KEY, {"metadata": {"name": "sentiment-trainer", "namespace": "ml", "uid": "j1",
                                                       "labels": {"trainwright.dev/job": "sentiment"}},
                                          "spec": {}, "status": {}})
        await reconciler.reconcile_job(KEY)
        return world

    assert status_of(run(go()))["launchedAt"] == rfc3339(NOW)


def test_every_job_is_resynced_on_its_own_jittered_clock_and_a_finished_one_seldom(job_dict):
    async def go():
        reconciler, kube, world, _ = setup(job_dict)
        kube.add("PersistentVolumeClaim", "ml", "data")
        waits = []
        world.mark_after = lambda key, seconds: waits.append(seconds)
        await reconciler.reconcile_job(KEY)  # launched, its pods not started: no wake-up of its own
        world.saw_launcher("MODIFIED", KEY, {"kind": "Job", "metadata": {"name": "sentiment-trainer", "uid": "l1"},
                                             "status": {"succeeded": 1, "conditions": [
                                                 {"type": "Complete", "status": "True", "message": "done"}]}})
        await reconciler.reconcile_job(KEY)
        return reconciler, world, waits

    reconciler, world, waits = run(go())
    assert status_of(world)["phase"] == "Succeeded"
    assert 0.9 * RESYNC_SECONDS <= waits[0] <= 1.1 * RESYNC_SECONDS
    assert 0.9 * FINISHED_RESYNC_SECONDS <= waits[1] <= 1.1 * FINISHED_RESYNC_SECONDS
    assert KEY not in reconciler.parsed._cache  # a finished job's models are made again when needed, not kept
    assert {resync_after("Running", j) for j in (0.0, 0.5, 0.999)} != {RESYNC_SECONDS}  # spread, not aligned
