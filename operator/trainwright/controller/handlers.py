"""The operator's kopf side: the TrainingJob watch, startup and cleanup. Thin on purpose.

kopf gives us the TrainingJob watch, startup and health; it keeps no state of its own on our
objects (no annotations, no finalizers), so a job stays deletable while the operator is away.
Launcher Jobs and pods are watched by `informer`, which costs a fraction of kopf's per-event
work. Both feed `World`; the `Reconciler` acts on it. Configuration arrives through kopf's memo
(OperatorConfig).
"""

import asyncio
import logging

import kopf

from trainwright.controller import constants as c
from trainwright.controller import leader
from trainwright.controller.informer import Informer
from trainwright.controller.kube import resource_path
from trainwright.controller.metrics import JobStore, OperatorMetrics, snapshot_of
from trainwright.controller.reconciler import OperatorConfig, Reconciler
from trainwright.controller.world import World

STORE = JobStore()
METRICS = OperatorMetrics(STORE)
WORLD = World()
log = logging.getLogger("trainwright.operator")

__all__ = ["OperatorConfig", "METRICS", "configure_kopf", "SlimDiffBaseStorage"]


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """Bounded watches and quiet posting. Our handlers only watch, so kopf stores nothing on
    objects; its storage is still pinned under trainwright.dev, once, should that change."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.KOPF_PREFIX)
    settings.persistence.diffbase_storage = SlimDiffBaseStorage(prefix=c.KOPF_PREFIX, key="last-handled-configuration")
    settings.persistence.finalizer = c.FINALIZER
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.posting.level = logging.WARNING


class SlimDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """kopf's annotation diff base, built from only the parts it keeps.

    kopf builds an essence on every watch event, even for watch-only handlers, by deep-copying
    the whole body (status and managedFields too) and then dropping metadata and status. The
    essence is the same when the copy starts without them, at a fraction of the cost.
    """

    def build(self, *, body, extra_fields=None):
        if extra_fields:  # fields of status or metadata asked for by name: kopf's own way
            return super().build(body=body, extra_fields=extra_fields)
        meta = body.get("metadata") or {}
        slim = {k: v for k, v in body.items() if k not in ("metadata", "status")}
        slim["metadata"] = {k: meta[k] for k in ("name", "namespace", "uid", "labels", "annotations") if k in meta}
        return super().build(body=kopf.Body(slim))


def _key(body) -> tuple[str, str]:
    return body["metadata"]["namespace"], body["metadata"]["name"]


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo, **_):
    """Informers and reconcilers: at once, or with leader election only while this replica
    holds the Lease (kopf's TrainingJob watch and /healthz run in standby too: the watch only
    feeds the World). A new leader reconciles once every informer has listed, so that it never
    takes a child it has not yet seen for a missing one."""
    configure_kopf(settings)
    config: OperatorConfig = memo.config
    await config.kube.open()
    memo.reconciler = Reconciler(config.kube, WORLD, config.catalog, config.launch, METRICS,
                                 calibration_namespace=config.calibration_namespace)
    if not config.leader_elect:
        memo.tasks = [asyncio.create_task(informer.run()) for informer in watch_children(config)]
        memo.tasks.append(asyncio.create_task(memo.reconciler.run()))
        return

    async def lead():
        informers = watch_children(config)
        tasks = [asyncio.create_task(informer.run()) for informer in informers]
        try:
            async with asyncio.timeout(leader.CACHE_SYNC_SECONDS):  # as controller-runtime: no sync, no leading
                while any(informer.version is None for informer in informers):
                    await asyncio.sleep(0.05)
            log.info("children listed; reconciling")
            STORE.exporting_jobs = True
            tasks.append(asyncio.create_task(memo.reconciler.run()))
            await asyncio.gather(*tasks)
        finally:
            STORE.exporting_jobs = False
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    STORE.exporting_jobs = False  # a standby's series would count every job twice
    elector = leader.LeaderElector(config.kube, config.leader_election_namespace, config.leader_election_id,
                                   timing=leader.Timing(*config.leader_election_timing))
    memo.tasks = [asyncio.create_task(elector.run(lead), name="leader-election")]


@kopf.on.cleanup()
async def cleanup(memo, **_):
    for task in memo.tasks:
        task.cancel()
    await asyncio.gather(*memo.tasks, return_exceptions=True)
    await memo.config.kube.close()


def watch_children(config: OperatorConfig) -> list[Informer]:
    """Launcher Jobs and their pods, ours only (selected on the server), into the world."""
    def into(saw):
        def apply(batch):
            for event_type, body in batch:
                meta = body["metadata"]
                saw(event_type, (meta["namespace"], (meta.get("labels") or {}).get(c.JOB_LABEL)), body)
        return apply

    selector = f"{c.MANAGED_BY_LABEL}={c.MANAGED_BY}"
    informers = []
    for namespace in config.namespaces or [None]:
        informers.append(Informer(config.kube, resource_path("batch/v1", "Job", namespace), selector,
                                  into(WORLD.saw_launcher)))
        informers.append(Informer(config.kube, resource_path("v1", "Pod", namespace), selector, into(WORLD.saw_pod)))
    return informers


@kopf.on.event(*c.API)
async def track_job(event, body, memo, **_):
    """Keep the world and /metrics in step with the watch: deleted jobs drop out at once."""
    if event.get("type") == "DELETED":
        STORE.remove(*_key(body))
        memo.reconciler.forget(_key(body))
    else:
        STORE.put(snapshot_of(body))
    WORLD.saw_job(event.get("type"), dict(body))
