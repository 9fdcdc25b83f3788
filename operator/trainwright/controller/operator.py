"""`trainwright operator`: run the kopf operator, standalone, with /metrics and /healthz, and
optionally leader election (controller/leader.py) so that replicas stand by."""

import asyncio
import gc
import logging
from pathlib import Path

import kopf
from prometheus_client import start_http_server

from trainwright.controller.children import LaunchSettings
from trainwright.controller.kube import Kube, load_configuration
from trainwright.controller.leader import DEFAULT_LEASE_NAME, Timing
from trainwright.planner import load_catalog


def run_operator(namespaces: list[str], metrics_port: int, health_port: int, trainer_image: str,
                 catalog_path: str | None, verbose: bool = False, *, leader_elect: bool = False,
                 leader_election_namespace: str | None = None, leader_election_id: str = DEFAULT_LEASE_NAME,
                 leader_election_timing: tuple[float, float, float] = (Timing.lease_duration, Timing.renew_deadline,
                                                                       Timing.retry_period),
                 calibration_namespace: str | None = None) -> int:
    from trainwright.controller import handlers  # registers the handlers with kopf

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # one line per handler run is noise at hundreds of jobs
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    log = logging.getLogger("trainwright.operator")
    try:
        kube = Kube(load_configuration())  # opened in the operator's event loop, at startup
    except ValueError as error:  # a kubeconfig asking for what the client cannot do
        log.error("%s", error)
        return 2
    if leader_elect:
        leader_election_namespace = leader_election_namespace or in_cluster_namespace()
        try:
            Timing(*leader_election_timing)
            if not leader_election_namespace:
                raise ValueError("leader election needs the Lease's namespace: --leader-election-namespace, "
                                 "or POD_NAMESPACE, or run in a pod")
        except ValueError as error:
            log.error("%s", error)
            return 2
    config = handlers.OperatorConfig(catalog=load_catalog(catalog_path),
                                     launch=LaunchSettings(trainer_image=trainer_image),
                                     kube=kube, namespaces=list(namespaces), leader_elect=leader_elect,
                                     leader_election_namespace=leader_election_namespace or "",
                                     leader_election_id=leader_election_id,
                                     leader_election_timing=tuple(leader_election_timing),
                                     calibration_namespace=calibration_namespace or in_cluster_namespace() or "")
    start_http_server(metrics_port, registry=handlers.METRICS.registry)
    quiet_garbage_collector()
    asyncio.run(kopf.operator(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://0.0.0.0:{health_port}/healthz",
        memo=kopf.Memo(config=config),
    ))
    return 0


SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def in_cluster_namespace() -> str | None:
    """The pod's namespace, from its ServiceAccount mount (None outside a pod)."""
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


def quiet_garbage_collector() -> None:
    """Spare the collector what lives for the whole run, and collect less often.

    Watch events are decoded into many small objects, and with the default thresholds the
    collector runs hundreds of times in a burst of jobs, scanning every module and cached job
    each time (bench/results/operator-cpu.md). Decoded JSON holds no reference cycles, so
    reference counting frees it; the collector only has to catch the rare cycle.
    """
    gc.collect()
    gc.freeze()  # imports, kopf and the client: never garbage, never scanned again
    gc.set_threshold(10_000, 10, 10)
