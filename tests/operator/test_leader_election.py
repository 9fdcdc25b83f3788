"""Two operator replicas with leader election on a real control plane: one acts, the other
stands by; the leader SIGKILLed in a burst of creates, the standby takes the Lease over and
every job finishes with one set of children and its whole status.

The replicas run with a shorter lease than the default (8 s lease, 6 s renew deadline, 1 s
retry) so that a takeover after SIGKILL fits in TAKEOVER_LIMIT: with the defaults (15/10/2) a
standby takes over 15 to 19 s after the leader's last renewal, by design.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from devcluster import OperatorProcess, wait_for
from operatorkit import small_job

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "trainingjobs.trainwright.dev.yaml"
POD_RUN_SECONDS = 8.0  # as the operator tier's: long enough that jobs still run when the leader dies
LEASE = "trainwright-operator"
LEASE_SECONDS, RENEW_DEADLINE, RETRY = 8, 6, 1
TIMING = ["--leader-election-lease-duration", str(LEASE_SECONDS), "--leader-election-renew-deadline",
          str(RENEW_DEADLINE), "--leader-election-retry-period", str(RETRY)]
TAKEOVER_LIMIT = 15.0
JOBS = 30
FINISHED = ("Succeeded", "Failed", "BudgetExceeded")
KINDS = {"configmap": "-job", "serviceaccount": "-trainer", "role": "-trainer", "rolebinding": "-trainer",
         "job": "-trainer"}


def replica(cluster, namespace: str, tmp_path: Path, name: str) -> OperatorProcess:
    """An operator as a pod of the chart runs it: --leader-elect, POD_NAME, the Lease in `namespace`."""
    return OperatorProcess(cluster, tmp_path / f"{name}.log", env={"POD_NAME": name},
                           args=["--trainer-image", "trainer:test", "--namespace", namespace, "--leader-elect",
                                 "--leader-election-namespace", namespace, *TIMING])


def lease(cluster, namespace: str) -> dict:
    result = cluster.kubectl_run("get", "lease", LEASE, "-n", namespace, "-o", "json")
    return json.loads(result.stdout)["spec"] if result.returncode == 0 else {}


def holder(cluster, namespace: str) -> str | None:
    """The replica holding the Lease, by its POD_NAME (identities are POD_NAME + '_' + a suffix)."""
    identity = lease(cluster, namespace).get("holderIdentity")
    return identity.rsplit("_", 1)[0] if identity else None


def runs(process: OperatorProcess, handler: str) -> float:
    """How often this replica has run `handler` (reconcile, launch), by its /metrics."""
    for family in text_string_to_metric_families(process.metrics()):
        if family.name == "trainwright_operator_handler_runs":
            return sum(s.value for s in family.samples
                       if s.name.endswith("_total") and s.labels.get("handler") == handler)
    return 0.0


def statuses(cluster, namespace: str) -> dict[str, dict]:
    jobs = json.loads(cluster.kubectl("get", "tj", "-n", namespace, "-o", "json"))["items"]
    return {j["metadata"]["name"]: j.get("status") or {} for j in jobs}


def children(cluster, namespace: str, kind: str) -> dict[str, str]:
    items = json.loads(cluster.kubectl("get", kind, "-n", namespace, "-l", "app.kubernetes.io/managed-by=trainwright",
                                       "-o", "json"))["items"]
    return {i["metadata"]["name"]: i["metadata"]["uid"] for i in items}


@pytest.fixture(scope="module")
def cluster(start_control_plane):
    """A control plane of this module's own: the operator tier's session operator acts in every
    namespace of its cluster, and here only the replicas under test may act."""
    plane = start_control_plane(run_seconds=POD_RUN_SECONDS)
    plane.kubectl("apply", "-f", str(CRD))
    plane.kubectl("wait", "--for=condition=Established", "crd/trainingjobs.trainwright.dev")
    return plane


@pytest.fixture
def processes():
    started: list[OperatorProcess] = []
    yield started
    for process in started:
        if process.process is not None and process.process.poll() is None:
            process.process.send_signal(signal.SIGCONT)
        process.stop()


def test_standby_takes_over_from_a_killed_leader_and_every_job_finishes_once(cluster, namespace, tmp_path, processes):
    a = replica(cluster, namespace, tmp_path, "op-a").start()
    processes.append(a)
    wait_for(lambda: holder(cluster, namespace) == "op-a", timeout=30, message=lambda: f"op-a to lead\n{a.logs()}")
    b = replica(cluster, namespace, tmp_path, "op-b").start()
    processes.append(b)
    time.sleep(2 * RETRY)
    assert holder(cluster, namespace) == "op-a", "a second replica must not take a held lease"

    names = [f"job-{i}" for i in range(JOBS)]
    burst = threading.Thread(target=cluster.kubectl, args=("apply", "-n", namespace, "-f", "-"),
                             kwargs={"input": yaml.safe_dump_all([small_job(n) for n in names])})
    leader, standby = a, b
    launched = runs(leader, "launch")
    burst.start()
    # SIGKILL part-way through the burst: the leader's own /metrics answer faster than kubectl
    wait_for(lambda: runs(leader, "launch") >= launched + 3, timeout=60, interval=0.01, message="the burst under way")
    before = lease(cluster, namespace)
    assert runs(standby, "reconcile") == 0, "the standby reconciled while another led"
    runs_at_kill = runs(leader, "launch")
    leader.kill()
    killed = time.monotonic()
    burst.join()
    launchers_before = children(cluster, namespace, "job")  # those created by the leader, or about to be
    wait_for(lambda: holder(cluster, namespace) == "op-b", timeout=30, interval=0.1,
             message=lambda: f"the standby to take over\n{standby.logs()}")
    takeover = time.monotonic() - killed
    print(f"\ntakeover after SIGKILL: {takeover:.1f}s (lease {LEASE_SECONDS}s, retry {RETRY}s; "
          f"the leader had launched {runs_at_kill:.0f} of {JOBS} jobs)")
    assert takeover < TAKEOVER_LIMIT
    after = lease(cluster, namespace)
    assert after.get("leaseTransitions", 0) == before.get("leaseTransitions", 0) + 1  # 0 is omitted
    assert after["leaseDurationSeconds"] == LEASE_SECONDS

    def all_finished():
        found = statuses(cluster, namespace)
        return len(found) == JOBS and all(s.get("phase") in FINISHED for s in found.values())

    def phases():
        return sorted((name, status.get("phase")) for name, status in statuses(cluster, namespace).items())
    wait_for(all_finished, timeout=240, interval=1.0,
             message=lambda: f"every job finished: {phases()}\n{standby.logs()}")

    found = statuses(cluster, namespace)
    assert {name: status["phase"] for name, status in found.items()} == dict.fromkeys(names, "Succeeded")
    lost = {name: missing for name, status in found.items()
            if (missing := [k for k in ("plan", "launchedAt", "cost") if not status.get(k)])}
    assert not lost, f"status lost across the takeover: {lost}"
    for name, status in found.items():
        assert status["plan"]["strategy"] == "fine-tune", (name, status)
        assert status["cost"]["gpuSeconds"] > 0 and status["cost"]["usd"] > 0, (name, status)
    for kind, suffix in KINDS.items():
        assert sorted(children(cluster, namespace, kind)) == sorted(f"{n}{suffix}" for n in names), kind
    launchers = children(cluster, namespace, "job")
    assert {n: launchers[n] for n in launchers_before} == launchers_before, "a launcher was replaced"
    assert runs(standby, "reconcile") > 0


def test_a_leader_that_could_not_renew_exits_when_it_wakes_instead_of_acting(cluster, namespace, tmp_path, processes):
    """SIGSTOP (a paused VM, a frozen node) past the lease: the standby leads meanwhile, and the
    old leader, woken, finds its renew deadline long gone and exits 1."""
    a = replica(cluster, namespace, tmp_path, "op-a").start()
    processes.append(a)
    wait_for(lambda: holder(cluster, namespace) == "op-a", timeout=30, message=lambda: f"op-a to lead\n{a.logs()}")
    b = replica(cluster, namespace, tmp_path, "op-b").start()
    processes.append(b)
    a.process.send_signal(signal.SIGSTOP)
    wait_for(lambda: holder(cluster, namespace) == "op-b", timeout=LEASE_SECONDS + 10, interval=0.2,
             message=lambda: f"op-b to take over\n{b.logs()}")
    a.process.send_signal(signal.SIGCONT)
    woke = time.monotonic()
    wait_for(lambda: a.process.poll() is not None, timeout=10, message=lambda: f"op-a to exit\n{a.logs()}")
    assert a.process.returncode == 1 and time.monotonic() - woke < 3
    assert "stopped leading" in a.logs()
    time.sleep(RETRY)
    assert holder(cluster, namespace) == "op-b"
