"""A job whose objectStorage.secret does not exist yet waits for it (Pending, WaitingForSecret),
then launches when it appears: the Reconciler against test_reconciler's fake client."""

from datetime import timedelta

from test_reconciler import condition, run, setup, status_of
from trainwright.api import reasons as r


def test_a_missing_object_storage_secret_makes_the_job_wait_then_launch(job_dict):
    job_dict["spec"]["dataset"]["source"] = "s3://corpus/reviews.jsonl"
    job_dict["spec"]["objectStorage"] = {"secret": "s3-creds"}

    async def go():
        reconciler, kube, world, clock = setup(job_dict)
        await reconciler.reconcile_job(("ml", "sentiment"))
        waiting = dict(status_of(world))
        created_while_waiting = [k for v, k in kube.calls if v == "create" and k != "Event"]
        kube.add("Secret", "ml", "s3-creds")
        clock.now += timedelta(seconds=2)
        await reconciler.reconcile_job(("ml", "sentiment"))
        return kube, world, waiting, created_while_waiting

    kube, world, waiting, created_while_waiting = run(go())
    assert created_while_waiting == []
    pending = condition(waiting, "Pending")
    assert waiting["phase"] == "Pending" and pending["reason"] == r.WAITING_FOR_SECRET
    assert pending["message"].startswith("spec.objectStorage.secret: waiting for Secret 's3-creds' in ml")
    assert "launchedAt" in status_of(world) and ("create", "Job") in kube.calls
