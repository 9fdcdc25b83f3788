"""Kueue: a job labelled with a queue gets a suspended launcher carrying the label; while Kueue
holds it, the job is Pending, reason Queued, in the words of Kueue's Workload. The real Kueue is
tested in tests/operator/test_kueue.py."""

import asyncio
import copy
from datetime import datetime, timezone

import pytest

from trainwright.api import parse_job
from trainwright.api import reasons as r
from trainwright.controller.children import LaunchSettings, build_launcher, queue_of
from trainwright.controller.metrics import JobStore, OperatorMetrics
from trainwright.controller.observe import (
    batch_job_state, owned_workload, queue_label_patch, queued_message, ray_job_state,
)
from trainwright.controller.reconcile import (
    QUEUE_POLL_SECONDS, RAY_POLL_SECONDS, LauncherState, Observed, next_check, reconcile, rfc3339,
)
from trainwright.controller.reconciler import Reconciler
from trainwright.controller.world import World
from trainwright.planner import default_catalog, plan_job

NOW = datetime(2026, 12, 3, 12, 0, 0, tzinfo=timezone.utc)
QUEUE = "kueue.x-k8s.io/queue-name"
KEY = ("ml", "sentiment")
NO_QUOTA = ("couldn't assign flavors to pod set main: insufficient unused quota for nvidia.com/gpu in flavor "
            "default-flavor, 8 more needed")


def launcher_of(job_dict, **resources):
    job_dict["spec"]["resources"].update(resources)
    job = parse_job(job_dict)
    plan = plan_job(job.spec, default_catalog())
    return build_launcher(job, plan, "uid-1", LaunchSettings(trainer_image="trainer:test"))


def labelled(job_dict, queue="team-a"):
    job_dict["metadata"]["labels"] = {QUEUE: queue}
    return job_dict


def scratch(job_dict):
    job_dict["spec"].update(strategy="scratch", model={"task": "causal-lm", "architecture": {"family": "gpt", "layers": 2, "hidden": 64}})
    return job_dict


def workload(owner_uid="L1", queue="team-a", conditions=None, name="job-sentiment-trainer-1a2b3"):
    """A Workload as Kueue 0.17 writes it (v1beta2), pending for want of quota unless told."""
    if conditions is None:
        conditions = [{"type": "QuotaReserved", "status": "False", "reason": "Pending", "message": NO_QUOTA}]
    return {"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "Workload",
            "metadata": {"name": name, "namespace": "ml", "labels": {"kueue.x-k8s.io/job-uid": owner_uid},
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "sentiment-trainer",
                                              "uid": owner_uid, "controller": True}]},
            "spec": {"queueName": queue, "podSets": []}, "status": {"conditions": conditions}}


# -- builders


def test_a_labelled_job_gets_a_suspended_batch_job_with_the_label(job_dict):
    job = launcher_of(labelled(job_dict))
    assert job["kind"] == "Job" and job["spec"]["suspend"] is True
    assert job["metadata"]["labels"][QUEUE] == "team-a"


def test_a_labelled_job_across_pods_gets_a_suspended_ray_job_with_the_label(job_dict):
    ray_job = launcher_of(scratch(labelled(job_dict)), gpus=8, gpusPerNode=4)
    assert ray_job["kind"] == "RayJob" and ray_job["spec"]["suspend"] is True
    assert ray_job["metadata"]["labels"][QUEUE] == "team-a"
    assert ray_job["spec"]["shutdownAfterJobFinishes"] is True  # Kueue requires it of a RayJob


@pytest.mark.parametrize("labels", [None, {}, {QUEUE: ""}, {"other": "x"}])
def test_a_job_without_a_queue_starts_at_once(job_dict, labels):
    if labels is not None:
        job_dict["metadata"]["labels"] = labels
    assert queue_of(parse_job(job_dict)) is None
    assert launcher_of(copy.deepcopy(job_dict))["spec"]["suspend"] is False
    assert launcher_of(scratch(job_dict), gpus=8, gpusPerNode=4)["spec"]["suspend"] is False


# -- observing


def test_a_ray_job_kueue_suspended_is_suspended_before_kuberay_says_so():
    assert ray_job_state({"metadata": {"uid": "r"}, "spec": {"suspend": True}, "status": {}}).suspended
    assert ray_job_state({"metadata": {"uid": "r"}, "spec": {"suspend": False}, "status": {"jobDeploymentStatus": "Suspended"}}).suspended
    assert not ray_job_state({"metadata": {"uid": "r"}, "spec": {"suspend": False},
                              "status": {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}}).suspended


def test_the_workload_is_found_by_its_owner_reference():
    mine, other = workload("L1"), workload("L2", name="job-other-9z9z9")
    assert owned_workload([other, mine], "L1") is mine
    assert owned_workload([other], "L1") is None
    assert owned_workload([mine], "") is None


def test_the_queued_message_is_the_workloads_own():
    message = queued_message(workload(), "team-a")
    assert NO_QUOTA in message and "team-a" in message and "job-sentiment-trainer-1a2b3" in message
    evicted = workload(conditions=[
        {"type": "QuotaReserved", "status": "False", "message": NO_QUOTA},
        {"type": "Evicted", "status": "True", "reason": "Preempted", "message": "Preempted to accommodate a workload"}])
    assert "Preempted to accommodate a workload" in queued_message(evicted, "team-a")
    inadmissible = workload(conditions=[{"type": "QuotaReserved", "status": "False", "reason": "Inadmissible",
                                         "message": "LocalQueue team-a doesn't exist"}])
    assert "LocalQueue team-a doesn't exist" in queued_message(inadmissible, "team-a")
    admitted = workload(conditions=[{"type": "QuotaReserved", "status": "True", "message": "Quota reserved"},
                                    {"type": "Admitted", "status": "True", "message": "The workload is admitted"}])
    assert "admitted" in queued_message(admitted, "team-a")
    assert "waiting for Kueue" in queued_message(None, "team-a")
    assert queued_message(None, None) == "the launcher is suspended (queued)"


def test_a_new_queue_label_moves_the_launcher_and_a_removed_one_does_not():
    assert queue_label_patch("team-b", workload(queue="team-a")) == {"metadata": {"labels": {QUEUE: "team-b"}}}
    assert queue_label_patch("team-a", workload(queue="team-a")) is None
    assert queue_label_patch("team-b", None) is None  # nothing to compare with yet: Kueue reads the launcher's label
    assert queue_label_patch(None, workload(queue="team-a")) is None  # its Workload would stay queued


# -- deciding


def test_a_suspended_launcher_makes_the_job_pending_queued_with_the_workloads_message(job_dict):
    spec = parse_job(labelled(job_dict)).spec
    launcher = LauncherState(exists=True, uid="L1", suspended=True, queued=queued_message(workload(), "team-a"))
    decision = reconcile(spec, {"phase": "Pending"}, Observed(launcher, 0, {}, NOW), 3.6)
    assert decision.status["phase"] == "Pending"
    pending = next(c for c in decision.status["conditions"] if c["type"] == "Pending")
    assert pending["status"] == "True" and pending["reason"] == r.QUEUED and NO_QUOTA in pending["message"]
    assert not decision.create_launcher and not decision.delete_launcher


def test_a_queued_job_is_looked_at_again_soon(job_dict):
    spec = parse_job(labelled(job_dict)).spec
    plan = plan_job(spec, default_catalog())
    queued = reconcile(spec, {"phase": "Pending"}, Observed(LauncherState(exists=True, suspended=True), 0, {}, NOW), 3.6)
    assert next_check(queued, plan) == QUEUE_POLL_SECONDS
    admitted = reconcile(spec, {"phase": "Pending"}, Observed(LauncherState(exists=True), 0, {}, NOW), 3.6)
    assert next_check(admitted, plan) is None  # its Job and pods are watched
    ray_plan = plan.model_copy(update={"launcher": "rayjob"})
    assert next_check(queued, ray_plan) == min(QUEUE_POLL_SECONDS, RAY_POLL_SECONDS)


# -- the Reconciler, against a fake client


class FakeKube:
    """Creates, gets, Workload lists and patches, recorded."""

    def __init__(self, workloads=()):
        self.objects: dict[tuple[str, str, str], dict] = {}
        self.workloads = list(workloads)
        self.requests: list[tuple[str, str, object]] = []

    async def get(self, api_version, kind, namespace, name):
        return self.objects.get((kind, namespace, name))

    async def create(self, manifest):
        meta = manifest["metadata"]
        key = (manifest["kind"], meta.get("namespace"), meta["name"])
        if key in self.objects:
            return None
        stored = copy.deepcopy(manifest)
        stored["metadata"]["uid"] = "L1" if manifest["kind"] in ("Job", "RayJob") else "x"
        self.objects[key] = stored
        return stored

    async def delete(self, api_version, kind, namespace, name):
        return self.objects.pop((kind, namespace, name), None) is not None

    async def has_resource(self, group, version, plural):
        return True

    async def request(self, method, path, body=None, query=None, content_type=None):
        self.requests.append((method, path, query if method == "GET" else body))
        if method == "GET" and path.endswith("/workloads"):
            return {"items": copy.deepcopy(self.workloads)}
        if method == "PATCH" and path.endswith("/status"):
            job = self.objects[("TrainingJob", *KEY)]
            job["status"] = {**(job.get("status") or {}), **body["status"]}
            return copy.deepcopy(job)
        if method == "PATCH":
            return {}
        raise AssertionError(f"unexpected {method} {path}")


def reconciler_for(job_dict, kube):
    world = World(settle_seconds=0)
    body = copy.deepcopy(job_dict)
    body["metadata"].update(uid="u1", generation=1, creationTimestamp=rfc3339(NOW))
    body["status"] = {}
    kube.objects[("TrainingJob", *KEY)] = body
    kube.objects[("PersistentVolumeClaim", "ml", "data")] = {"metadata": {"name": "data"}}
    world.saw_job("ADDED", copy.deepcopy(body))
    return Reconciler(kube, world, default_catalog(), LaunchSettings(trainer_image="trainer:test"),
                      OperatorMetrics(JobStore()), clock=lambda: NOW), world


def test_the_reconciler_reads_the_launchers_workload_and_says_why_it_waits(job_dict):
    kube = FakeKube(workloads=[workload("someone-else", name="job-x-0"), workload("L1")])
    reconciler, world = reconciler_for(labelled(job_dict), kube)

    async def go():
        await reconciler.reconcile_job(KEY)  # launches: the Job is created suspended
        launcher = kube.objects[("Job", "ml", "sentiment-trainer")]
        assert launcher["spec"]["suspend"] is True and launcher["metadata"]["labels"][QUEUE] == "team-a"
        world.saw_launcher("ADDED", KEY, launcher)
        await reconciler.reconcile_job(KEY)

    asyncio.run(go())
    assert batch_job_state(world.launchers[KEY]).suspended
    [(_, path, query)] = [req for req in kube.requests if req[0] == "GET"]
    assert path == "/apis/kueue.x-k8s.io/v1beta2/namespaces/ml/workloads"
    assert query == [("labelSelector", "kueue.x-k8s.io/job-uid=L1")]
    status = world.jobs[KEY]["status"]
    pending = next(c for c in status["conditions"] if c["type"] == "Pending")
    assert status["phase"] == "Pending" and pending["reason"] == r.QUEUED and NO_QUOTA in pending["message"]
    assert not [req for req in kube.requests if req[0] == "PATCH" and not req[1].endswith("/status")]


def test_a_queue_label_changed_while_queued_is_copied_onto_the_launcher(job_dict):
    kube = FakeKube(workloads=[workload("L1", queue="team-a")])
    reconciler, world = reconciler_for(labelled(job_dict), kube)

    async def go():
        await reconciler.reconcile_job(KEY)
        world.saw_launcher("ADDED", KEY, kube.objects[("Job", "ml", "sentiment-trainer")])
        await reconciler.reconcile_job(KEY)
        moved = copy.deepcopy(world.jobs[KEY])
        moved["metadata"]["labels"] = {QUEUE: "team-b"}  # a label edit: no new generation
        world.saw_job("MODIFIED", moved)
        await reconciler.reconcile_job(KEY)

    asyncio.run(go())
    [(_, path, body)] = [req for req in kube.requests if req[0] == "PATCH" and not req[1].endswith("/status")]
    assert path == "/apis/batch/v1/namespaces/ml/jobs/sentiment-trainer"
    assert body == {"metadata": {"labels": {QUEUE: "team-b"}}}


def test_without_kueue_installed_a_suspended_launcher_still_reads_as_queued(job_dict):
    from kubernetes.client.exceptions import ApiException

    class NoKueue(FakeKube):
        async def request(self, method, path, body=None, query=None, content_type=None):
            if method == "GET" and path.endswith("/workloads"):
                raise ApiException(status=404, reason="Not Found")
            return await super().request(method, path, body, query, content_type)

    kube = NoKueue()
    reconciler, world = reconciler_for(labelled(job_dict), kube)

    async def go():
        await reconciler.reconcile_job(KEY)
        world.saw_launcher("ADDED", KEY, kube.objects[("Job", "ml", "sentiment-trainer")])
        await reconciler.reconcile_job(KEY)

    asyncio.run(go())
    pending = next(c for c in world.jobs[KEY]["status"]["conditions"] if c["type"] == "Pending")
    assert pending["reason"] == r.QUEUED and "waiting for Kueue" in pending["message"]
