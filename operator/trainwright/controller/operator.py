"""`trainwright operator`: run the kopf operator, standalone, with /metrics and /healthz."""

import asyncio
import logging

import kopf
from prometheus_client import start_http_server

from trainwright.controller.children import LaunchSettings
from trainwright.controller.kube import load_configuration
from trainwright.planner import load_catalog


def run_operator(namespaces: list[str], metrics_port: int, health_port: int, trainer_image: str,
                 catalog_path: str | None, verbose: bool = False) -> int:
    from trainwright.controller import handlers  # registers the handlers with kopf

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not verbose:  # one line per handler run is noise at hundreds of jobs
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    config = handlers.OperatorConfig(catalog=load_catalog(catalog_path),
                                     launch=LaunchSettings(trainer_image=trainer_image),
                                     configuration=load_configuration(), namespaces=list(namespaces))
    start_http_server(metrics_port, registry=handlers.METRICS.registry)
    asyncio.run(kopf.operator(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        liveness_endpoint=f"http://0.0.0.0:{health_port}/healthz",
        memo=kopf.Memo(config=config),
    ))
    return 0
