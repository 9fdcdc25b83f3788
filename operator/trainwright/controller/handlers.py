"""The operator's I/O: kopf's TrainingJob watch and our children's informers feed `World`;
reconcile workers act on it.

For each job a worker reads the world, calls pure functions (plan_job, build_children,
reconcile) and applies their result. kopf gives us the TrainingJob watch, startup and health;
it keeps no state of its own on our objects (no annotations, no finalizers), so a job stays
deletable while the operator is away. Launcher Jobs and pods are watched by `informer`, which
costs a fraction of kopf's per-event work. Configuration arrives through kopf's memo
(OperatorConfig).
"""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

import kopf
from kubernetes.client.exceptions import ApiException

from trainwright.api import FINISHED_PHASES, ManifestError, parse_job
from trainwright.api.status import Plan
from trainwright.controller import constants as c
from trainwright.controller.children import LaunchSettings, build_children, build_launcher, claims_of, launcher_name
from trainwright.controller.events import build_event
from trainwright.controller.informer import Informer
from trainwright.controller.kube import Kube, resource_path
from trainwright.controller.metrics import JobStore, OperatorMetrics, snapshot_of
from trainwright.controller.observe import batch_job_state, pods_usage, ray_job_state, waiting_reason
from trainwright.controller.reconcile import (
    ACCRUAL_SECONDS, Decision, Observed, launched_status, parse_time, reconcile, rfc3339, set_condition,
)
from trainwright.controller.world import World
from trainwright.planner import Catalog, PlanningError, default_catalog, plan_job
from trainwright.planner.catalog import CPU

STORE = JobStore()
METRICS = OperatorMetrics(STORE)
WORLD = World()
RESYNC_SECONDS = 60.0  # every job is reconciled at least this often, wake-ups or not
RETRY_SECONDS = 3.0  # after a failed reconcile (e.g. the API server is away)
RAY_POLL_SECONDS = 3.0  # RayJobs are read, not watched
log = logging.getLogger("trainwright.operator")


@dataclass
class OperatorConfig:
    catalog: Catalog = field(default_factory=default_catalog)
    launch: LaunchSettings = field(default_factory=LaunchSettings)
    kube: Kube | None = None  # opened at startup, in kopf's event loop
    namespaces: list[str] = field(default_factory=list)  # empty: the whole cluster


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


def _job_of(body) -> "TrainingJob":  # noqa: F821 - the api model
    meta = body["metadata"]
    return parse_job({"apiVersion": body["apiVersion"], "kind": body["kind"],
                      "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                                   "labels": dict(meta.get("labels") or {})},
                      "spec": dict(body["spec"])})


def _key(body) -> tuple[str, str]:
    return body["metadata"]["namespace"], body["metadata"]["name"]


class ParsedJobs:
    """Each job's spec and plan as models, parsed again only when they change: a job is
    reconciled on every event of its pods and Jobs, and validation is the costly part."""

    def __init__(self):
        self._cache: dict[tuple[str, str], tuple] = {}

    def get(self, key: tuple[str, str], body: dict) -> tuple["TrainingJob", Plan]:  # noqa: F821
        meta, plan_wire = body["metadata"], body["status"]["plan"]
        version = (meta["uid"], meta.get("generation"), meta.get("labels") or {})
        old_version, job, old_plan_wire, plan = self._cache.get(key, (None, None, None, None))
        if version != old_version:
            job = _job_of(body)
        if plan_wire != old_plan_wire:
            plan = Plan.model_validate(plan_wire)
        self._cache[key] = (version, job, plan_wire, plan)
        return job, plan

    def forget(self, key: tuple[str, str]) -> None:
        self._cache.pop(key, None)


PARSED = ParsedJobs()


def failed(status: dict, reason: str, message: str) -> dict:
    """Status fields of a job that cannot run."""
    now = datetime.now(timezone.utc)
    return {"phase": "Failed", "completionTime": status.get("completionTime") or rfc3339(now),
            "conditions": set_condition(list(status.get("conditions") or []), "Failed", "True", reason, message, now)}


async def preflight(job, plan: Plan, kube: Kube) -> tuple[str, str] | None:
    """What the job or the cluster lacks for this plan, as (reason, message)."""
    if plan.pods > 1 and not job.spec.checkpoint.pvc:
        return "SharedClaimMissing", (f"spec.checkpoint.pvc: a job across {plan.pods} pods needs a checkpoint claim "
                                      "that every pod mounts (ReadWriteMany across nodes): the model and result of "
                                      "rank 0 reach the driver on the head pod through it")
    if plan.launcher == "rayjob" and not await kube.has_resource(c.RAY_GROUP, c.RAY_VERSION, c.RAY_JOBS):
        return "KubeRayMissing", (f"the plan needs {plan.pods} pods, which run as a KubeRay RayJob, "
                                  "but KubeRay's CRDs are not installed")
    namespace = job.metadata.namespace
    for field_, claim in claims_of(job):
        if await kube.get("v1", "PersistentVolumeClaim", namespace, claim) is None:
            reason = "CheckpointClaimMissing" if field_ == "checkpoint.pvc" else "ClaimMissing"
            return reason, f"{field_}: PersistentVolumeClaim {claim!r} does not exist in {namespace}"
    return None


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo, **_):
    configure_kopf(settings)
    config: OperatorConfig = memo.config
    await config.kube.open()
    memo.tasks = [asyncio.create_task(informer.run()) for informer in watch_children(config)]
    memo.tasks.append(asyncio.create_task(reconcile_forever(config)))


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


@METRICS.instrumented("launch")
async def launch(config: OperatorConfig, body: dict) -> tuple[dict, list[tuple[str, str, str]]]:
    """Plan a new job and create its children; (status fields, events).

    Children are created before the plan is written, so a job with a plan has all of them; a
    restart part-way through creates them again, and 409 makes that harmless.
    """
    status = dict(body.get("status") or {})
    try:
        job = _job_of(body)
        plan = plan_job(job.spec, config.catalog)
    except (ManifestError, PlanningError) as error:
        reason = "InvalidSpec" if isinstance(error, ManifestError) else "PlanningFailed"
        return failed(status, reason, str(error)), [("Warning", reason, str(error))]
    kube = config.kube
    problem = await preflight(job, plan, kube)
    if problem:
        return failed(status, *problem), [("Warning", *problem)]
    *prerequisites, launcher = build_children(job, plan, body["metadata"]["uid"], config.launch)
    await asyncio.gather(*(kube.create(child) for child in prerequisites))
    if not job.spec.suspend:  # after its ServiceAccount and ConfigMap, or its pods are refused
        WORLD.created_launcher(_key(body), await kube.create(launcher))
    fields = launched_status(job, plan, status, body["metadata"].get("generation"), _price(config, job, plan),
                             datetime.now(timezone.utc))
    return fields, []  # the Planned condition says it; an Event per new job would double the writes


@kopf.on.event(*c.API)
async def track_job(event, body, **_):
    """Keep the world and /metrics in step with the watch: deleted jobs drop out at once."""
    if event.get("type") == "DELETED":
        STORE.remove(*_key(body))
        PARSED.forget(_key(body))
    else:
        STORE.put(snapshot_of(body))
    WORLD.saw_job(event.get("type"), dict(body))


async def reconcile_forever(config: OperatorConfig) -> None:
    """Workers take jobs from the world's queue, woken by their events and by the times their
    last reconcile asked for; a resync queues every job now and then."""
    async def worker():
        while True:
            key = await WORLD.take()
            try:
                await reconcile_job(config, key)
            except Exception:  # noqa: BLE001 - one job's trouble must not stop the others
                log.exception("reconciling %s/%s failed; retrying in %ss", *key, RETRY_SECONDS)
                WORLD.mark_after(key, RETRY_SECONDS)
            finally:
                WORLD.done(key)

    async def resync():
        while True:
            await asyncio.sleep(RESYNC_SECONDS)
            WORLD.sweep()

    await asyncio.gather(resync(), *(worker() for _ in range(c.RECONCILE_WORKERS)))


@METRICS.instrumented("reconcile")
async def reconcile_job(config: OperatorConfig, key: tuple[str, str]) -> None:
    """Launch a new job; for a launched one derive phase and cost from its children and
    enforce budget, deadline, suspend and TTL."""
    body = WORLD.jobs.get(key)
    if body is None:
        return
    status = dict(body.get("status") or {})
    if not status.get("plan"):
        if status.get("phase") not in FINISHED_PHASES:
            await _write(config, key, body, *await launch(config, body))
        return
    try:
        job, plan = PARSED.get(key, body)
    except ManifestError:
        return  # the API server's schema should make this impossible; launch() would have failed it
    now = datetime.now(timezone.utc)
    if plan.launcher == "rayjob":  # rare, and KubeRay may be absent: read it rather than watch it
        launcher = ray_job_state(await config.kube.get(
            f"{c.RAY_GROUP}/{c.RAY_VERSION}", "RayJob", key[0], launcher_name(key[1])))
    else:
        launcher = batch_job_state(WORLD.launchers.get(key))
    pods = list(WORLD.pods.get(key, {}).values())
    gone = dict(WORLD.gone_pods.get(key, {}))
    running, pod_seconds = pods_usage(pods, plan.gpus == 0, now)
    _, gone_seconds = pods_usage(list(gone.values()), plan.gpus == 0, now)
    observed = Observed(launcher, running, pod_seconds, now, waiting_reason(pods), gone_seconds)
    decision = reconcile(job.spec, status, observed, _price(config, job, plan))
    if decision.create_launcher or decision.delete_launcher or decision.delete_job:
        await _act(config, job, plan, body["metadata"]["uid"], decision)
    if not decision.delete_job:
        changed = {k: v for k, v in decision.status.items() if status.get(k) != v}
        if set(changed) == {"cost"} and not _cost_due(status.get("cost"), changed["cost"], now):
            changed = {}
        if await _write(config, key, body, changed, decision.events) and "cost" in changed:
            WORLD.forget_gone_pods(key, list(gone))
        recheck = decision.recheck_after
        if plan.launcher == "rayjob" and decision.status["phase"] not in FINISHED_PHASES:
            recheck = RAY_POLL_SECONDS if recheck is None else min(recheck, RAY_POLL_SECONDS)
        WORLD.mark_after(key, recheck)


async def _write(config: OperatorConfig, key, body: dict, fields: dict, events) -> bool:
    """Patch the status fields that changed and post the events; whether the status has them."""
    patched = None
    if fields:
        patched = await _patch_status(config.kube, key, fields)
        if patched:
            WORLD.saw_status(key, patched)
    now = datetime.now(timezone.utc)
    for type_, reason, message in events:
        try:
            await config.kube.create(build_event(body, type_, reason, message, now))
        except ApiException as error:  # e.g. the namespace is terminating: the status is what counts
            log.warning("event %s for %s/%s not posted: %s", reason, *key, error.reason)
    return bool(patched)


def _price(config: OperatorConfig, job, plan: Plan) -> float:
    return config.catalog.get(CPU if plan.gpus == 0 else job.spec.resources.gpuType).price_per_hour


def _cost_due(old: dict | None, new: dict, now: datetime) -> bool:
    """Whether a cost-only change is worth a write: rarely while only the running total grows
    (every job's status every few seconds would load the API server), at once otherwise."""
    old = dict(old or {})
    growing = ("gpuSeconds", "usd", "updatedAt", "pods")  # pods: only their seconds grow
    if {k: v for k, v in new.items() if k not in growing} != {k: v for k, v in old.items() if k not in growing} \
            or {p["uid"] for p in new.get("pods") or []} != {p["uid"] for p in old.get("pods") or []}:
        return True
    if new.get("gpuSeconds") == old.get("gpuSeconds"):
        return False
    last = parse_time(old.get("updatedAt"))
    return last is None or (now - last).total_seconds() >= ACCRUAL_SECONDS


async def _patch_status(kube: Kube, key: tuple[str, str], fields: dict) -> dict | None:
    path = resource_path(f"{c.API[0]}/{c.API[1]}", "TrainingJob", key[0], key[1]) + "/status"
    try:
        return await kube.request("PATCH", path, {"status": fields}, content_type="application/merge-patch+json")
    except ApiException as error:
        if error.status == 404:
            return None  # deleted meanwhile
        raise


async def _act(config: OperatorConfig, job, plan: Plan, uid: str, decision: Decision) -> None:
    kube, name, namespace = config.kube, job.metadata.name, job.metadata.namespace
    launcher = build_launcher(job, plan, uid, config.launch)
    if decision.create_launcher:
        WORLD.created_launcher((namespace, name), await kube.create(launcher))
    if decision.delete_launcher:
        await kube.delete(launcher["apiVersion"], launcher["kind"], namespace, launcher_name(name))
    if decision.delete_job:
        await kube.delete(f"{c.API[0]}/{c.API[1]}", "TrainingJob", namespace, name)
