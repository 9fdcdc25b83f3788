"""A job whose objectStorage.secret does not exist yet: the operator cannot look (it has no
access to Secrets), so it launches, its pod waits in the kubelet, and the job is Pending with
the kubelet's words; the Reconciler against test_reconciler's fake client."""

from test_reconciler import KEY, condition, run, setup, status_of
from trainwright.api import reasons as r


def waiting_pod(reason: str, message: str) -> dict:
    return {"metadata": {"name": "sentiment-trainer-x", "uid": "p1"},
            "spec": {"containers": [{"resources": {}}]},
            "status": {"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": reason, "message": message}}}]}}


def test_a_pod_waiting_for_the_object_storage_secret_shows_why_in_the_job(job_dict):
    job_dict["spec"]["dataset"]["source"] = "s3://corpus/reviews.jsonl"
    job_dict["spec"]["objectStorage"] = {"secret": "s3-creds"}

    async def go():
        reconciler, kube, world, _ = setup(job_dict)
        kube.add("PersistentVolumeClaim", "ml", "data")
        await reconciler.reconcile_job(KEY)  # launched: nothing to check first
        world.saw_pod("ADDED", KEY, waiting_pod("CreateContainerConfigError", 'secret "s3-creds" not found'))
        await reconciler.reconcile_job(KEY)
        return kube, world

    kube, world = run(go())
    assert ("create", "Job") in kube.calls and all(kind != "Secret" for _, kind in kube.calls)
    pending = condition(status_of(world), "Pending")
    assert status_of(world)["phase"] == "Pending" and pending["reason"] == r.WAITING_FOR_PODS
    assert pending["message"] == 'CreateContainerConfigError: secret "s3-creds" not found'


def test_an_ordinary_starting_pod_does_not_claim_to_lack_anything(job_dict):
    async def go():
        reconciler, kube, world, _ = setup(job_dict)
        kube.add("PersistentVolumeClaim", "ml", "data")
        await reconciler.reconcile_job(KEY)
        world.saw_pod("ADDED", KEY, waiting_pod("ContainerCreating", ""))
        await reconciler.reconcile_job(KEY)
        return world

    pending = condition(status_of(run(go())), "Pending")
    assert pending["message"] == "waiting for the trainer's pods to start"
