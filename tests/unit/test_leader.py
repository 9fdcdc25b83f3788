"""Leader election: the pure decision (`decide`), and the elector against an in-memory Lease API
that keeps resourceVersions as the API server does (409 on a stale update or a second create)."""

from __future__ import annotations

import asyncio
import copy
import functools
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import pytest
from kubernetes.client.exceptions import ApiException

from trainwright.controller.leader import (
    CREATE, RENEW, TAKE_OVER, WAIT, LeaderElector, Timing, decide, lease_path, micro_time, parse_micro_time, released,
)

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=timezone.utc)
ME, OTHER = "op-a_1234", "op-b_5678"
FAST = Timing(lease_duration=0.8, renew_deadline=0.5, retry_period=0.1)


def lease(holder: str, renewed: datetime | None, duration: int = 15, transitions: int = 3,
          acquired: datetime | None = None):
    spec = {"holderIdentity": holder, "leaseDurationSeconds": duration, "leaseTransitions": transitions}
    if renewed is not None:
        spec["renewTime"] = micro_time(renewed)
    if acquired is not None:
        spec["acquireTime"] = micro_time(acquired)
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
            "metadata": {"name": "trainwright-operator", "namespace": "ops", "resourceVersion": "7"}, "spec": spec}


# --- decide: the pure part -------------------------------------------------------------------


def test_no_lease_is_created_held_by_us_with_no_transitions():
    step = decide(None, ME, NOW)
    assert step.action == CREATE
    assert step.spec == {"holderIdentity": ME, "leaseDurationSeconds": 15, "acquireTime": micro_time(NOW),
                         "renewTime": micro_time(NOW), "leaseTransitions": 0}


def test_our_own_lease_is_renewed_keeping_acquire_time_and_transitions():
    acquired = NOW - timedelta(minutes=5)
    step = decide(lease(ME, NOW - timedelta(seconds=2), acquired=acquired), ME, NOW)
    assert step.action == RENEW
    assert step.spec["renewTime"] == micro_time(NOW) and step.spec["acquireTime"] == micro_time(acquired)
    assert step.spec["leaseTransitions"] == 3 and step.spec["holderIdentity"] == ME


def test_our_own_lease_is_renewed_even_when_it_looks_expired():
    assert decide(lease(ME, NOW - timedelta(hours=1)), ME, NOW).action == RENEW


def test_another_holders_running_lease_means_wait_until_it_expires():
    step = decide(lease(OTHER, NOW - timedelta(seconds=14)), ME, NOW)
    assert step.action == WAIT and step.spec is None
    assert step.holder == OTHER and step.expires == NOW + timedelta(seconds=1)


def test_an_expired_lease_is_taken_over_and_the_transition_counted():
    step = decide(lease(OTHER, NOW - timedelta(seconds=15), acquired=NOW - timedelta(hours=1)), ME, NOW)
    assert step.action == TAKE_OVER
    assert step.spec == {"holderIdentity": ME, "leaseDurationSeconds": 15, "acquireTime": micro_time(NOW),
                         "renewTime": micro_time(NOW), "leaseTransitions": 4}


def test_a_released_lease_is_taken_over_at_once():
    step = decide(lease("", NOW - timedelta(seconds=0.1), duration=1), ME, NOW)
    assert step.action == TAKE_OVER and step.spec["leaseTransitions"] == 4 and step.spec["holderIdentity"] == ME


def test_the_holders_own_lease_duration_counts_not_ours():
    held = lease(OTHER, NOW - timedelta(seconds=30), duration=60)
    assert decide(held, ME, NOW, lease_duration=15).action == WAIT
    assert decide(held, ME, NOW + timedelta(seconds=30), lease_duration=15).action == TAKE_OVER
    assert decide(held, ME, NOW + timedelta(seconds=30), lease_duration=15).spec["leaseDurationSeconds"] == 15


def test_expiry_runs_from_when_we_observed_the_record_not_the_holders_clock():
    behind = lease(OTHER, NOW - timedelta(hours=1))  # the holder's clock is an hour slow, but it renewed just now
    assert decide(behind, ME, NOW, observed_at=NOW - timedelta(seconds=1)).action == WAIT
    ahead = lease(OTHER, NOW + timedelta(hours=1))  # an hour fast, and silent since we first saw it 20 s ago
    assert decide(ahead, ME, NOW, observed_at=NOW - timedelta(seconds=20)).action == TAKE_OVER


def test_a_lease_without_times_is_expired():
    assert decide(lease(OTHER, None), ME, NOW).action == TAKE_OVER


def test_released_spec_has_no_holder_and_keeps_the_transitions():
    spec = released(lease(ME, NOW - timedelta(seconds=1))["spec"], NOW)
    assert spec["holderIdentity"] == "" and spec["leaseDurationSeconds"] == 1 and spec["leaseTransitions"] == 3
    assert decide({"metadata": {}, "spec": spec}, OTHER, NOW).action == TAKE_OVER


def test_micro_time_is_rfc3339_micro_in_utc_and_parses_back():
    moment = datetime(2026, 5, 1, 14, 0, 0, 123456, tzinfo=timezone(timedelta(hours=2)))
    assert micro_time(moment) == "2026-05-01T12:00:00.123456Z"
    assert parse_micro_time(micro_time(moment)) == moment
    assert parse_micro_time(None) is None


@pytest.mark.parametrize("timing", [(10, 10, 2), (15, 10, 9), (15, 10, 0)])
def test_timing_keeps_the_lease_longer_than_the_deadline_longer_than_the_retries(timing):
    with pytest.raises(ValueError):
        Timing(*timing)


# --- the elector against an in-memory Lease API ---------------------------------------------------


LEASE_SPEC_FIELDS = {"holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime", "leaseTransitions",
                     "strategy", "preferredHolder"}  # coordination.k8s.io/v1 LeaseSpec


class LeaseApi:
    """The Lease endpoints of an API server, in memory: resourceVersions, 404, 409.
    ``refuse`` makes writes by an identity fail (503) and ``hang`` makes every request hang."""

    def __init__(self):
        self.leases: dict[str, dict] = {}
        self.version = 0
        self.refuse: set[str] = set()
        self.hang = False
        self.writes: list[tuple[str, str]] = []  # (method, holder)

    async def request(self, method, path, body=None, query=None, content_type="application/json", timeout=30):
        await asyncio.sleep(0.001)
        if self.hang:
            await asyncio.sleep(timeout)
            raise asyncio.TimeoutError()
        name = path.rsplit("/", 1)[1] if method != "POST" else body["metadata"]["name"]
        if method == "GET":
            if name not in self.leases:
                raise ApiException(status=404, reason="Not Found")
            return copy.deepcopy(self.leases[name])
        if set(body["spec"]) - LEASE_SPEC_FIELDS:  # the server, strict: an unknown field is a mistake
            raise ApiException(status=400, reason=f"unknown fields {sorted(set(body['spec']) - LEASE_SPEC_FIELDS)}")
        if body["spec"].get("holderIdentity") in self.refuse:
            raise ApiException(status=503, reason="Service Unavailable")
        if method == "POST" and name in self.leases or method == "PUT" and (
                name not in self.leases
                or body["metadata"].get("resourceVersion") != self.leases[name]["metadata"]["resourceVersion"]):
            raise ApiException(status=409, reason="Conflict")
        self.version += 1
        stored = copy.deepcopy(body)
        stored["metadata"]["resourceVersion"] = str(self.version)
        self.leases[name] = stored
        self.writes.append((method, body["spec"].get("holderIdentity")))
        return copy.deepcopy(stored)

    def holder(self, name="trainwright-operator") -> str | None:
        return (self.leases.get(name) or {}).get("spec", {}).get("holderIdentity")


class Exits:
    """Records exit(status) instead of ending the test process."""

    def __init__(self):
        self.calls: list[tuple[int, float]] = []

    def __call__(self, status: int) -> None:
        self.calls.append((status, time.monotonic()))


def elector(api, identity, exits=None, timing=FAST, watchdog=False):
    """The watchdog thread is off unless a test is about it: with a recording exit, the
    process goes on, and the thread would race the renew loop that the test watches."""
    return LeaderElector(api, "ops", identity=identity, timing=timing, exit=exits or Exits(), watchdog=watchdog)


def sync(test):
    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))
    return run


async def acting(log: list[float]):
    """The leader's work: note the time, often."""
    while True:
        log.append(time.monotonic())
        await asyncio.sleep(0.01)


def test_lease_path_is_the_coordination_api():
    assert lease_path("ops", "x") == "/apis/coordination.k8s.io/v1/namespaces/ops/leases/x"


@sync
async def test_first_candidate_creates_the_lease_and_the_second_stands_by():
    api = LeaseApi()
    a, b = elector(api, ME), elector(api, OTHER)
    assert await a.try_acquire_or_renew() is True and a.leading
    assert await b.try_acquire_or_renew() is False and not b.leading
    assert api.holder() == ME and api.writes == [("POST", ME)]
    assert await a.try_acquire_or_renew() is True  # a renewal: an update
    assert api.writes[-1] == ("PUT", ME) and api.leases["trainwright-operator"]["spec"]["leaseTransitions"] == 0


@sync
async def test_two_candidates_racing_for_a_free_lease_make_exactly_one_leader():
    api = LeaseApi()
    candidates = [elector(api, f"op-{i}_x") for i in range(5)]
    results = await asyncio.gather(*(c.try_acquire_or_renew() for c in candidates))
    assert sum(results) == 1 and [c.leading for c in candidates] == results
    assert api.holder() == candidates[results.index(True)].identity


@sync
async def test_a_renewal_on_a_stale_version_is_refused_and_the_next_look_finds_the_new_holder():
    api, later = LeaseApi(), [0.0]
    a, b = elector(api, ME), elector(api, OTHER)
    b.clock = lambda: datetime.now(timezone.utc) + timedelta(seconds=later[0])
    await a.try_acquire_or_renew()
    assert await b.try_acquire_or_renew() is False  # b sees a's record ...
    later[0] = 1.0  # ... which a leaves unrenewed for a lease duration (by b's clock; written in whole seconds)
    assert await b.try_acquire_or_renew() is True
    writes = len(api.writes)
    assert await a.try_acquire_or_renew() is False  # ... a's renewal carries the old resourceVersion: 409
    assert len(api.writes) == writes and api.holder() == OTHER
    assert await a.try_acquire_or_renew() is False and not a.leading  # read again: b holds it
    assert api.leases["trainwright-operator"]["spec"]["leaseTransitions"] == 1


@sync
async def test_standby_takes_over_after_the_lease_duration_and_counts_the_transition():
    api = LeaseApi()
    a_exits = Exits()
    a, b = elector(api, ME, a_exits), elector(api, OTHER)
    await a.try_acquire_or_renew()
    api.refuse.add(ME)  # a can no longer write (partitioned)
    start = time.monotonic()
    await asyncio.wait_for(b.acquire(), timeout=5)
    waited = time.monotonic() - start
    assert 1.0 <= waited < 1.0 + 3 * FAST.retry_period  # the lease as written: whole seconds, rounded up
    assert api.holder() == OTHER and api.leases["trainwright-operator"]["spec"]["leaseTransitions"] == 1


@sync
async def test_a_leader_that_cannot_renew_stops_acting_and_exits_before_anyone_takes_over():
    api, exits, work = LeaseApi(), Exits(), []
    a = elector(api, ME, exits)
    task = asyncio.create_task(a.run(lambda: acting(work)))
    await asyncio.sleep(0.3)
    assert a.leading and work
    api.refuse.add(ME)
    await asyncio.wait_for(task, timeout=5)  # run returns once exit was called (a real exit ends the process)
    (status, exited_at), = exits.calls
    assert status == 1 and not a.leading
    assert exited_at <= a.renewed_at + FAST.renew_deadline + 2 * FAST.retry_period
    assert exited_at < a.renewed_at + FAST.lease_duration  # gone before a standby may take over
    assert max(work) <= exited_at  # nothing acted after
    count = len(work)
    await asyncio.sleep(0.1)
    assert len(work) == count


@sync
async def test_a_leader_whose_requests_hang_exits_at_the_renew_deadline():
    api, exits, work = LeaseApi(), Exits(), []
    a = elector(api, ME, exits)
    task = asyncio.create_task(a.run(lambda: acting(work)))
    await asyncio.sleep(0.3)
    api.hang = True
    await asyncio.wait_for(task, timeout=5)
    (status, exited_at), = exits.calls
    assert status == 1 and exited_at <= a.renewed_at + FAST.renew_deadline + 0.2


@sync
async def test_a_leader_that_sees_another_holder_exits_at_once():
    api, exits, work = LeaseApi(), Exits(), []
    a = elector(api, ME, exits, Timing(lease_duration=30, renew_deadline=20, retry_period=0.1))
    task = asyncio.create_task(a.run(lambda: acting(work)))
    await asyncio.sleep(0.3)
    stored = api.leases["trainwright-operator"]
    stored["spec"]["holderIdentity"], stored["metadata"]["resourceVersion"] = OTHER, "999"  # someone wrote over us
    started = time.monotonic()
    await asyncio.wait_for(task, timeout=5)
    assert exits.calls and exits.calls[0][1] - started < 1.0  # long before the 20 s deadline


@sync
async def test_the_watchdog_exits_while_the_event_loop_is_stuck():
    api, exits = LeaseApi(), Exits()
    a = elector(api, ME, exits, watchdog=True)
    task = asyncio.create_task(a.run(lambda: asyncio.sleep(3600)))
    await asyncio.sleep(0.2)
    assert a.leading
    time.sleep(FAST.renew_deadline + 0.3)  # the loop is blocked: no renewal, no renew loop
    assert exits.calls and exits.calls[0][0] == 1
    assert exits.calls[0][1] <= a.renewed_at + FAST.renew_deadline + 0.15
    await asyncio.wait_for(task, timeout=5)
    assert len(exits.calls) == 1  # once, however many noticed


@sync
async def test_stopping_gracefully_stops_the_work_then_releases_so_the_standby_leads_at_once():
    api, work = LeaseApi(), []
    slow = Timing(lease_duration=30, renew_deadline=20, retry_period=0.1)
    a_exits = Exits()
    a, b = elector(api, ME, a_exits, slow), elector(api, OTHER, timing=slow)
    task = asyncio.create_task(a.run(lambda: acting(work)))
    await asyncio.sleep(0.2)
    assert api.holder() == ME
    await b.try_acquire_or_renew()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert api.holder() == "" and not a_exits.calls
    count = len(work)
    start = time.monotonic()
    await asyncio.wait_for(b.acquire(), timeout=5)  # not 30 s: the lease was released
    assert time.monotonic() - start < 1 and api.holder() == OTHER and len(work) == count


@sync
async def test_work_that_ends_releases_the_lease_and_exits():
    api, exits = LeaseApi(), Exits()

    async def fails():
        raise RuntimeError("informer gave up")
    await asyncio.wait_for(elector(api, ME, exits).run(fails), timeout=5)
    assert exits.calls[0][0] == 1 and api.holder() == ""


SCRIPT = textwrap.dedent("""
    import asyncio, sys, time
    sys.path.insert(0, {tests!r})
    from test_leader import LeaseApi, FAST
    from trainwright.controller.leader import LeaderElector

    async def main():
        api = LeaseApi()
        elector = LeaderElector(api, "ops", identity="op-a_1", timing=FAST)   # the real exit: os._exit

        async def act():
            while True:
                print("acting", time.monotonic(), elector.renewed_at, flush=True)
                await asyncio.sleep(0.02)

        async def cut_off():
            await asyncio.sleep(0.3)
            api.refuse.add("op-a_1")
            print("cut", time.monotonic(), flush=True)
        asyncio.get_running_loop().create_task(cut_off())
        await elector.run(act)
        print("returned", flush=True)   # never: exit ends the process

    asyncio.run(main())
    print("finished", flush=True)
""")


def test_a_replica_that_cannot_renew_exits_non_zero_and_stops_acting(tmp_path):
    """The real process: leadership lost is os._exit(1), with nothing acting after the deadline."""
    from pathlib import Path
    script = tmp_path / "replica.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent)))
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "returned" not in result.stdout and "finished" not in result.stdout
    assert "stopped leading" in result.stderr and "exiting" in result.stderr
    acts = [line.split() for line in result.stdout.splitlines() if line.startswith("acting")]
    last_renewed = max(float(renewed) for _, _, renewed in acts if renewed != "None")
    assert max(float(at) for _, at, _ in acts) <= last_renewed + FAST.renew_deadline + 0.1
    assert time.monotonic() - started < 20


# --- the CLI ---------------------------------------------------------------------------------------


def test_leader_election_is_off_by_default_and_its_flags_parse():
    from trainwright.cli import build_parser
    args = build_parser().parse_args(["operator"])
    assert args.leader_elect is False and args.leader_election_id == "trainwright-operator"
    assert (args.leader_election_lease_duration, args.leader_election_renew_deadline,
            args.leader_election_retry_period) == (15.0, 10.0, 2.0)
    args = build_parser().parse_args(["operator", "--leader-elect", "--leader-election-namespace", "ops",
                                      "--leader-election-id", "tw.leader", "--leader-election-lease-duration", "8"])
    assert args.leader_elect and args.leader_election_namespace == "ops" and args.leader_election_id == "tw.leader"
    assert args.leader_election_lease_duration == 8.0
    assert build_parser().parse_args(["operator", "--leader-elect", "--no-leader-elect"]).leader_elect is False


def test_the_lease_duration_is_written_in_whole_seconds_rounded_up():
    assert decide(None, ME, NOW, lease_duration=7.2).spec["leaseDurationSeconds"] == 8


def _kubeconfig(tmp_path):
    import yaml
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    return path


@pytest.mark.parametrize("flags, words", [
    ([], "needs the Lease's namespace"),
    (["--leader-election-namespace", "ops", "--leader-election-lease-duration", "5"], "must be longer than the renew"),
])
def test_operator_refuses_leader_election_it_cannot_do_in_one_line(tmp_path, flags, words):
    import os

    from trainwright.controller.operator import SERVICE_ACCOUNT_NAMESPACE
    if not flags and SERVICE_ACCOUNT_NAMESPACE.exists():
        pytest.skip("in a pod, the pod's namespace is the Lease's")
    env = {k: v for k, v in os.environ.items() if k != "POD_NAMESPACE"}
    result = subprocess.run([sys.executable, "-m", "trainwright.cli", "operator", "--leader-elect", *flags],
                            capture_output=True, text=True, env={**env, "KUBECONFIG": str(_kubeconfig(tmp_path))},
                            timeout=60)
    assert result.returncode == 2 and words in result.stderr and "Traceback" not in result.stderr, result.stderr
