"""World: which watch events queue a job, one worker per job at a time, new jobs first."""

import asyncio

from trainwright.controller.world import World

A, B = ("ml", "a"), ("ml", "b")


def job(name="a", generation=1, plan=None, **status):
    return {"metadata": {"namespace": "ml", "name": name, "generation": generation},
            "status": {**({"plan": plan} if plan else {}), **status}}


async def drain(world: World) -> list:
    """Every queued job, as workers would take them (and finish them)."""
    keys = []
    while True:
        try:
            keys.append(await asyncio.wait_for(world.take(), 0.05))
        except asyncio.TimeoutError:
            break
    for key in keys:
        world.done(key)
    return keys


def in_loop(test):
    """Run an async test body in one event loop (the world's queue lives in it)."""
    def run():
        asyncio.run(test())
    run.__name__ = test.__name__
    return run


@in_loop
async def test_new_jobs_plans_and_spec_changes_queue_a_job_but_status_updates_do_not():
    world = World(settle_seconds=0)
    world.saw_job("ADDED", job())
    assert await drain(world) == [A]
    world.saw_job("MODIFIED", job(plan={"gpus": 1}))
    assert await drain(world) == [A]
    world.saw_job("MODIFIED", job(plan={"gpus": 1}, cost={"usd": 1}))
    assert await drain(world) == []
    world.saw_job("MODIFIED", job(generation=2, plan={"gpus": 1}))
    assert await drain(world) == [A]


@in_loop
async def test_the_watch_echo_of_our_own_plan_write_queues_nothing_but_a_spec_change_made_meanwhile_does():
    world = World(settle_seconds=0)
    world.saw_job("ADDED", job())
    assert await drain(world) == [A]
    world.saw_status(A, job(plan={"gpus": 1}))  # the answer to our patch
    world.saw_job("MODIFIED", job(plan={"gpus": 1}))  # its echo
    assert await drain(world) == []
    world.saw_status(A, job(generation=2, plan={"gpus": 1}))  # the spec changed before our patch landed
    world.saw_job("MODIFIED", job(generation=2, plan={"gpus": 1}))
    assert await drain(world) == [A]


@in_loop
async def test_child_events_queue_their_job_once():
    world = World(settle_seconds=0)
    world.saw_job("ADDED", job(plan={"gpus": 1}))
    await drain(world)
    for phase in ("Pending", "Running"):
        world.saw_pod("MODIFIED", A, {"metadata": {"name": "p"}, "spec": {"containers": [{}]}, "status": {"phase": phase}})
    world.saw_launcher("ADDED", A, {"metadata": {"name": "a-trainer"}})
    assert await drain(world) == [A]
    assert world.pods[A]["p"]["status"]["phase"] == "Running"


@in_loop
async def test_child_events_within_the_settle_time_make_one_reconcile_after_it():
    world = World(settle_seconds=0.2)
    world.saw_job("ADDED", job(plan={"gpus": 1}))
    await drain(world)
    world.saw_launcher("MODIFIED", A, {"metadata": {"name": "a-trainer"}})
    world.saw_pod("ADDED", A, {"metadata": {"name": "p"}, "spec": {"containers": [{}]}, "status": {"phase": "Pending"}})
    assert await drain(world) == []  # settling
    await asyncio.sleep(0.25)
    assert await drain(world) == [A]
    assert await drain(world) == []


@in_loop
async def test_a_job_changed_while_handled_is_queued_again_after():
    world = World(settle_seconds=0)
    world.saw_job("ADDED", job())
    key = await world.take()
    world.saw_launcher("ADDED", A, {"metadata": {"name": "a-trainer"}})
    assert await drain(world) == []  # still being handled
    world.done(key)
    assert await drain(world) == [A]


@in_loop
async def test_new_jobs_go_before_running_ones_and_a_deleted_job_leaves_nothing_behind():
    world = World(settle_seconds=0)
    world.saw_job("ADDED", job("a", plan={"gpus": 1}))
    world.saw_job("ADDED", job("b"))
    assert await drain(world) == [B, A]
    world.saw_job("DELETED", job("a"))
    assert A not in world.jobs and A not in world.pods
    world.saw_pod("DELETED", A, {"metadata": {"name": "p"}})  # garbage collection, after the job
    assert A not in world.pods


def launcher(resource_version: str, **status) -> dict:
    return {"kind": "Job", "metadata": {"name": "a-trainer", "uid": "u1", "resourceVersion": resource_version},
            "spec": {}, "status": status}


def test_a_created_launcher_counts_as_seen_until_the_informer_brings_a_newer_copy():
    world = World(settle_seconds=0)
    world.created_launcher(A, launcher("1"))
    assert world.launchers[A]["metadata"]["uid"] == "u1"  # a reconcile now finds it: no second create

    world.launchers[A] = {"status": {"active": 1}}  # the informer's newer copy
    world.created_launcher(A, launcher("1"))
    assert world.launchers[A] == {"status": {"active": 1}}  # not replaced by the older answer

    world.created_launcher(B, None)  # 409: it existed already, the informer has or will have it
    world.created_launcher(B, {**launcher("1"), "kind": "RayJob"})  # read on demand, never kept
    assert B not in world.launchers


@in_loop
async def test_a_job_is_queued_again_when_its_last_reconcile_asked_and_not_after_deletion():
    world = World(settle_seconds=0)
    world.saw_job("ADDED", job(plan={"pods": 1}))
    await drain(world)
    world.mark_after(A, 0.2)
    world.mark_after(A, 0.05)  # a later reconcile's answer replaces the earlier one
    await asyncio.sleep(0.1)
    assert await drain(world) == [A]
    await asyncio.sleep(0.2)
    assert await drain(world) == []  # the replaced wake-up never fires

    world.mark_after(A, 0.05)
    world.saw_job("DELETED", job())
    await asyncio.sleep(0.1)
    assert await drain(world) == []
    world.mark_after(A, 0.01)  # a reconcile that finished after the deletion asks for nothing
    await asyncio.sleep(0.05)
    assert await drain(world) == []


@in_loop
async def test_a_deleted_pod_is_kept_in_its_final_state_until_the_cost_has_it():
    world = World(settle_seconds=0)
    world.saw_job("ADDED", job(plan={"pods": 1}))
    final = {"metadata": {"name": "a-trainer-x", "uid": "p1"}, "spec": {"containers": []},
             "status": {"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"exitCode": 143}}}]}}
    world.saw_pod("ADDED", A, {**final, "status": {"phase": "Running"}})
    world.saw_pod("DELETED", A, final)
    assert A not in world.pods
    assert world.gone_pods[A]["a-trainer-x"]["status"]["phase"] == "Failed"
    world.forget_gone_pods(A, ["a-trainer-x"])
    assert A not in world.gone_pods
    world.saw_pod("DELETED", A, final)
    world.saw_job("DELETED", job())
    assert A not in world.gone_pods
