"""kopf handlers: thin. Each reads, calls a pure function, and applies the result.

Imported by `trainwright operator`; configuration arrives through kopf's memo (OperatorConfig).
"""

import asyncio
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone

import kopf

from trainwright.api import FINISHED_PHASES, ManifestError, parse_job
from trainwright.api.status import Plan
from trainwright.controller import constants as c
from trainwright.controller.children import LaunchSettings, build_children, claims_of, launcher_name
from trainwright.controller.kube import Kube
from trainwright.controller.metrics import JobStore, OperatorMetrics, snapshot_of
from trainwright.controller.observe import batch_job_state, pods_usage, ray_job_state, waiting_reason
from trainwright.controller.reconcile import Observed, reconcile, rfc3339, set_condition
from trainwright.planner import Catalog, PlanningError, default_catalog, plan_job
from trainwright.planner.catalog import CPU

STORE = JobStore()
METRICS = OperatorMetrics(STORE)
RECONCILE_SECONDS = 3.0


@dataclass
class OperatorConfig:
    catalog: Catalog = field(default_factory=default_catalog)
    launch: LaunchSettings = field(default_factory=LaunchSettings)
    kube: Kube | None = None


def configure_kopf(settings: kopf.OperatorSettings) -> None:
    """kopf state under trainwright.dev, chosen once; bounded watches; quiet event posting."""
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=c.KOPF_PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=c.KOPF_PREFIX, key="last-handled-configuration")
    settings.persistence.finalizer = c.FINALIZER
    settings.watching.server_timeout = 120
    settings.watching.client_timeout = 150
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.posting.level = logging.WARNING
    settings.execution.max_workers = 32


def _job_of(body) -> "TrainingJob":  # noqa: F821 - the api model
    meta = body["metadata"]
    return parse_job({"apiVersion": body["apiVersion"], "kind": body["kind"],
                      "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                                   "labels": dict(meta.get("labels") or {})},
                      "spec": dict(body["spec"])})


def _fail(patch, status, reason: str, message: str, body) -> None:
    now = datetime.now(timezone.utc)
    patch.status["phase"] = "Failed"
    patch.status["completionTime"] = status.get("completionTime") or rfc3339(now)
    patch.status["conditions"] = set_condition(list(status.get("conditions") or []), "Failed", "True", reason, message, now)
    kopf.warn(body, reason=reason, message=message)


def preflight(job, plan: Plan, kube: Kube) -> tuple[str, str] | None:
    """What the cluster lacks for this plan, as (reason, message)."""
    if plan.launcher == "rayjob" and not kube.has_resource(c.RAY_GROUP, c.RAY_VERSION, c.RAY_JOBS):
        return "KubeRayMissing", (f"the plan needs {plan.pods} nodes, which run as a KubeRay RayJob, "
                                  "but KubeRay's CRDs are not installed")
    namespace = job.metadata.namespace
    for field, claim in claims_of(job):
        if kube.get("v1", "PersistentVolumeClaim", namespace, claim) is None:
            reason = "CheckpointClaimMissing" if field == "checkpoint.pvc" else "ClaimMissing"
            return reason, f"{field}: PersistentVolumeClaim {claim!r} does not exist in {namespace}"
    return None


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, **_):
    configure_kopf(settings)


@kopf.on.resume(*c.API)
@kopf.on.create(*c.API)
@METRICS.instrumented("launch")
def launch(body, status, uid, patch, memo, **_):
    """Plan the job and create its children (idempotently: names are deterministic)."""
    if status.get("phase") in FINISHED_PHASES:
        return
    try:
        job = _job_of(body)
        plan = plan_job(job.spec, memo.config.catalog)
    except (ManifestError, PlanningError) as error:
        _fail(patch, status, "InvalidSpec" if isinstance(error, ManifestError) else "PlanningFailed", str(error), body)
        return
    kube = memo.config.kube
    problem = preflight(job, plan, kube)
    if problem:
        _fail(patch, status, *problem, body)
        return
    children = build_children(job, plan, uid, memo.config.launch)
    for child in children[:-1] if job.spec.suspend else children:
        kube.create(child)
    now = datetime.now(timezone.utc)
    conditions = set_condition(list(status.get("conditions") or []), "Planned", "True", "Planned", plan.reason, now)
    sized_down = [n for n in plan.notes if n.startswith("sized down")]
    if sized_down:
        conditions = set_condition(conditions, "SizedDown", "True", "SizedDown", sized_down[0], now)
    patch.status["plan"] = plan.to_wire()
    patch.status["conditions"] = conditions
    patch.status["observedGeneration"] = body["metadata"].get("generation")
    if not status.get("phase"):
        patch.status["phase"] = "Suspended" if job.spec.suspend else "Pending"


def _first(index, key):
    return next(iter(index.get(key, [])), None)


@kopf.index("batch", "v1", "jobs", labels={c.MANAGED_BY_LABEL: c.MANAGED_BY})
def launchers(namespace, labels, body, **_):
    return {(namespace, labels.get(c.JOB_LABEL)): {"metadata": dict(body["metadata"]), "spec": {"suspend": body["spec"].get("suspend")},
                                                   "status": dict(body.get("status") or {})}}


@kopf.index("", "v1", "pods", labels={c.MANAGED_BY_LABEL: c.MANAGED_BY})
def trainer_pods(namespace, labels, body, **_):
    containers = [{"resources": dict(x.get("resources") or {})} for x in body["spec"].get("containers", [])]
    return {(namespace, labels.get(c.JOB_LABEL)): {"metadata": {"deletionTimestamp": body["metadata"].get("deletionTimestamp")},
                                                   "spec": {"containers": containers},
                                                   "status": dict(body.get("status") or {})}}


@kopf.timer(*c.API, interval=RECONCILE_SECONDS, initial_delay=1.0)
@METRICS.instrumented("reconcile")
async def tick(body, spec, status, name, namespace, uid, patch, memo, launchers, trainer_pods, **_):
    """Derive phase and cost from the children, enforce budget, deadline, suspend and TTL."""
    if not status.get("plan"):
        return
    if status.get("phase") in FINISHED_PHASES and spec.get("ttlSecondsAfterFinished") is None:
        return
    try:
        job = _job_of(body)
    except ManifestError:
        return  # launch() already marked it Failed
    plan = Plan.model_validate(status["plan"])
    key = (namespace, name)
    now = datetime.now(timezone.utc)
    if plan.launcher == "rayjob":  # rare, and KubeRay may be absent: read it rather than watch it
        launcher = ray_job_state(await asyncio.to_thread(
            memo.config.kube.get, f"{c.RAY_GROUP}/{c.RAY_VERSION}", "RayJob", namespace, launcher_name(name)))
    else:
        launcher = batch_job_state(_first(launchers, key))
    pods = list(trainer_pods.get(key, []))
    running, device_seconds = pods_usage(pods, plan.gpus == 0, now)
    price = memo.config.catalog.get(CPU if plan.gpus == 0 else job.spec.resources.gpuType).price_per_hour
    decision = reconcile(job.spec, dict(status), Observed(launcher, running, device_seconds, now, waiting_reason(pods)), price)
    await asyncio.to_thread(_act, memo.config, job, plan, uid, decision)
    for key_, value in decision.status.items():
        if key_ == "cost" and _same_cost(value, status.get("cost")):
            continue
        if status.get(key_) != value:
            patch.status[key_] = value
    for type_, reason, message in decision.events:
        kopf.event(body, type=type_, reason=reason, message=message)


def _same_cost(new: dict, old) -> bool:
    old = dict(old or {})
    return {k: v for k, v in new.items() if k != "updatedAt"} == {k: v for k, v in old.items() if k != "updatedAt"}


def _act(config: OperatorConfig, job, plan: Plan, uid: str, decision) -> None:
    kube, name, namespace = config.kube, job.metadata.name, job.metadata.namespace
    launcher = build_children(job, plan, uid, config.launch)[-1]
    if decision.create_launcher:
        kube.create(launcher)
    if decision.delete_launcher:
        kube.delete(launcher["apiVersion"], launcher["kind"], namespace, launcher_name(name))
    if decision.delete_job:
        kube.delete(f"{c.API[0]}/{c.API[1]}", "TrainingJob", namespace, name)


@kopf.on.event(*c.API)
def remember(event, body, **_):
    """Keep /metrics in step with the watch: deleted jobs drop out at once."""
    meta = body.get("metadata") or {}
    if event.get("type") == "DELETED":
        STORE.remove(meta.get("namespace"), meta.get("name"))
    elif meta.get("name"):
        STORE.put(snapshot_of(body))
