"""World: which watch events wake the reconcile loop, and the periodic sweep."""

import asyncio

import pytest

from trainwright.controller.world import World


def job(name="a", generation=1, plan=None):
    return {"metadata": {"namespace": "ml", "name": name, "generation": generation},
            "status": {"plan": plan} if plan else {}}


def test_new_jobs_new_plans_and_spec_changes_wake_the_loop_but_status_updates_do_not():
    async def scenario():
        world = World()
        await world.next_batch(0)  # the first call sweeps; nothing there yet
        world.saw_job("ADDED", job())
        assert await world.next_batch(60) == [("ml", "a")]
        world.saw_job("MODIFIED", job(plan={"gpus": 1}))
        assert await world.next_batch(60) == [("ml", "a")]
        world.saw_job("MODIFIED", {**job(plan={"gpus": 1}), "status": {"plan": {"gpus": 1}, "cost": {"usd": 1}}})
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(world.next_batch(60), 0.3)
        world.saw_job("MODIFIED", job(generation=2, plan={"gpus": 1}))
        assert await world.next_batch(60) == [("ml", "a")]
        world.saw_pod("ADDED", ("ml", "a"), {"metadata": {"name": "p"}, "spec": {"containers": [{}]}, "status": {}})
        assert await world.next_batch(60) == [("ml", "a")]
        assert list(world.pods[("ml", "a")]) == ["p"]
        world.saw_job("MODIFIED", {**job(generation=2, plan={"gpus": 1}), "status": {"plan": {"gpus": 1}, "phase": "Running"}})
        assert await asyncio.wait_for(world.next_batch(0.2), 5) == [("ml", "a")]  # the sweep, not an event
        world.saw_job("DELETED", job())
        assert world.jobs == {} and ("ml", "a") not in world.pods

    asyncio.run(scenario())
