"""The reconciler: reads one job's world, asks the pure functions what to do, and does it.

Every decision is made in `reconcile` (pure); this object holds what acting needs (the API
client, the world of watched objects, the GPU catalog, a clock) and carries decisions out:
children created, the status written, then the events posted, in that order.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from kubernetes.client.exceptions import ApiException

from trainwright.api import FINISHED_PHASES, ManifestError, TrainingJob, parse_job
from trainwright.api import reasons as r
from trainwright.api.status import Plan
from trainwright.controller import constants as c
from trainwright.controller.children import LaunchSettings, build_children, build_launcher, dependencies_of, launcher_name
from trainwright.controller.events import build_event
from trainwright.controller.kube import Kube, resource_path
from trainwright.controller.metrics import OperatorMetrics
from trainwright.controller.observe import (
    batch_job_state, owned_workload, pods_usage, queue_label_patch, queued_message, ray_job_state, running_devices,
    waiting_reason,
)
from trainwright.controller.reconcile import (
    Decision, LauncherState, Missing, Observed, failed_status, fields_to_write, finished_run, launch_blocker, next_check,
    parse_time, planned_status, reconcile, resync_after, retry_delay, rfc3339,
)
from trainwright.controller.world import World
from trainwright.planner import Calibration, CalibrationError, Catalog, PlanningError, Run, default_catalog, plan_job
from trainwright.planner.catalog import CPU

Key = tuple[str, str]
log = logging.getLogger("trainwright.operator")


@dataclass
class OperatorConfig:
    catalog: Catalog = field(default_factory=default_catalog)
    launch: LaunchSettings = field(default_factory=LaunchSettings)
    kube: Kube | None = None  # opened at startup, in kopf's event loop
    namespaces: list[str] = field(default_factory=list)  # empty: the whole cluster
    # Leader election (controller/leader.py): informers and reconcilers run only while this
    # replica holds the Lease leader_election_namespace/leader_election_id.
    leader_elect: bool = False
    leader_election_namespace: str = ""
    leader_election_id: str = "trainwright-operator"
    leader_election_timing: tuple[float, float, float] = (15.0, 10.0, 2.0)  # lease, renew deadline, retry (s)
    # Finished jobs' measurements calibrate new plans; kept in a ConfigMap here ("": in memory only).
    calibration_namespace: str = ""


def _job_of(body: dict) -> TrainingJob:
    meta = body["metadata"]
    return parse_job({"apiVersion": body["apiVersion"], "kind": body["kind"],
                      "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                                   "labels": dict(meta.get("labels") or {})},
                      "spec": dict(body["spec"])})


class ParsedJobs:
    """Each job's spec and plan as models, made again only when they change: a job is
    reconciled on every event of its pods and Jobs, and validation is the costly part.

    Before launch the plan comes from the spec (which may still change); once launched, from
    the status, so that what runs is what was planned."""

    def __init__(self, catalog: Catalog | None = None):
        self.catalog = catalog or default_catalog()
        self.calibration = Calibration()  # finished jobs' measurements: they calibrate new plans
        self._cache: dict[Key, tuple] = {}

    def get(self, key: Key, body: dict) -> tuple[TrainingJob, Plan]:
        meta, status = body["metadata"], body.get("status") or {}
        plan_wire = status.get("plan") if status.get("launchedAt") else None
        if status.get("phase") in FINISHED_PHASES:  # seldom reconciled: not worth its memory
            self._cache.pop(key, None)
            job = _job_of(body)
            return job, self._plan(job, plan_wire)
        version = (meta["uid"], meta.get("generation"), meta.get("labels") or {})
        old_version, job, old_plan_wire, plan = self._cache.get(key, (None, None, None, None))
        if version != old_version:
            job, plan = _job_of(body), None
        if plan is None or plan_wire != old_plan_wire:
            plan = self._plan(job, plan_wire)
        self._cache[key] = (version, job, plan_wire, plan)
        return job, plan

    def _plan(self, job: TrainingJob, plan_wire: dict | None) -> Plan:
        return Plan.model_validate(plan_wire) if plan_wire else plan_job(job.spec, self.catalog, calibration=self.calibration)

    def forget(self, key: Key) -> None:
        self._cache.pop(key, None)


async def create_children(kube: Kube, children: list[dict]) -> dict | None:
    """Create the children in the order the API server needs (see Reconciler._create_children);
    the launcher's create answer (None: it was there)."""
    *prerequisites, launcher = children
    for wave in ([c for c in prerequisites if c["kind"] != "RoleBinding"],
                 [c for c in prerequisites if c["kind"] == "RoleBinding"]):
        await asyncio.gather(*(kube.create(child) for child in wave))
    return await kube.create(launcher)


def changed(old: dict, new: dict) -> dict:
    return {k: v for k, v in new.items() if old.get(k) != v}


class Reconciler:
    """One job at a time: ``reconcile_job(key)``; ``run()`` is the pool of workers."""

    def __init__(self, kube: Kube, world: World, catalog: Catalog, launch: LaunchSettings, metrics: OperatorMetrics,
                 clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc), calibration_namespace: str = ""):
        self.kube, self.world, self.catalog, self.launch, self.metrics, self.clock = kube, world, catalog, launch, metrics, clock
        self.parsed = ParsedJobs(catalog)
        self.calibration_namespace = calibration_namespace  # where the calibration ConfigMap lives; "": memory only
        self._calibration_lock = asyncio.Lock()
        self.failures: dict[Key, int] = {}  # reconciles failed in a row, per job: their retries back off

    def forget(self, key: Key) -> None:
        self.parsed.forget(key)
        self.failures.pop(key, None)

    async def run(self, workers: int = c.RECONCILE_WORKERS) -> None:
        """Workers take jobs from the world's queue, woken by their events and by the times
        their last reconcile asked for (a resync among them)."""
        async def worker():
            while True:
                key = await self.world.take()
                try:
                    await self.reconcile_job(key)
                    self.failures.pop(key, None)
                except Exception:  # noqa: BLE001 - one job's trouble must not stop the others
                    self.failures[key] = failures = self.failures.get(key, 0) + 1
                    delay = retry_delay(failures)
                    log.exception("reconciling %s/%s failed (%d in a row); retrying in %.0fs", *key, failures, delay)
                    self.world.mark_after(key, delay)
                finally:
                    self.world.done(key)

        await self.load_calibration()
        await asyncio.gather(*(worker() for _ in range(workers)))

    async def reconcile_job(self, key: Key) -> None:
        """Plan, wait for what is missing, launch; for a launched job derive phase and cost
        from its children and enforce budget, deadline, suspend and TTL."""
        body = self.world.jobs.get(key)
        if body is None:
            return
        with self.metrics.timed("reconcile"):
            await self._reconcile(key, body)

    async def _reconcile(self, key: Key, body: dict) -> None:
        status = dict(body.get("status") or {})
        meta = body["metadata"]
        generation, now = meta.get("generation"), self.clock()
        if status.get("phase") in FINISHED_PHASES and not status.get("plan"):
            return  # failed before it could be planned: nothing of it exists
        try:
            job, plan = self.parsed.get(key, body)
        except (ManifestError, PlanningError) as error:
            reason = r.INVALID_SPEC if isinstance(error, ManifestError) else r.PLANNING_FAILED
            if status.get("phase") != "Failed":
                await self._write(key, body, changed(status, failed_status(status, reason, str(error), now, generation)),
                                  [("Warning", reason, str(error))])
            return
        launched = bool(status.get("launchedAt"))
        current = status if launched else planned_status(status, plan, now)
        if not launched and status.get("phase") not in FINISHED_PHASES:
            blocker = launch_blocker(job.spec, plan, await self._kuberay_installed(plan))
            if blocker:
                await self._write(key, body, changed(status, failed_status(current, *blocker, now, generation)),
                                  [("Warning", *blocker)])
                return
        observed = await self._observe(key, body, job, plan, current, now)
        decision = reconcile(job.spec, current, observed, self._price(job, plan))
        launcher_there = decision.create_launcher or observed.launcher.exists
        if decision.create_launcher:
            await self._create_children(job, plan, meta["uid"])
            first_events = decision.events
            decision = reconcile(job.spec, current, replace(observed, launcher=LauncherState(exists=True)),
                                 self._price(job, plan))
            decision.events[:0] = first_events
        elif decision.delete_launcher or decision.delete_job:
            await self._delete(job, plan, decision)
        if launcher_there:  # also one made by an operator that stopped before it could say so
            decision.status["launchedAt"] = status.get("launchedAt") or rfc3339(now)
        if decision.delete_job:
            return
        wanted = {**{k: current[k] for k in ("plan",) if k in current}, **decision.status}
        gone = list(self.world.gone_pods.get(key, {}))
        fields = fields_to_write(status, wanted, now)
        written = await self._write(key, body, fields, decision.events)
        if written and "cost" in fields:
            self.world.forget_gone_pods(key, gone)
        if written and (run := finished_run(job.spec, plan, status, decision.status, self.catalog)):
            await self.record_calibration(run)
        if decision.status.get("phase") in FINISHED_PHASES:
            self.parsed.forget(key)  # seldom needed again: made anew then (ParsedJobs.get)
        wait, resync = next_check(decision, plan), resync_after(decision.status.get("phase"), random.random())
        self.world.mark_after(key, resync if wait is None else min(wait, resync))

    async def _observe(self, key: Key, body: dict, job: TrainingJob, plan: Plan, status: dict, now: datetime) -> Observed:
        if plan.launcher == "rayjob":  # rare, and KubeRay may be absent: read it rather than watch it
            launcher = ray_job_state(await self.kube.get(f"{c.RAY_GROUP}/{c.RAY_VERSION}", "RayJob", key[0],
                                                         launcher_name(key[1])))
        else:
            launcher = batch_job_state(self.world.launchers.get(key))
        if launcher.suspended:  # held by Kueue: its Workload says why (read, as nothing watches Workloads)
            queue = (job.metadata.model_extra.get("labels") or {}).get(c.KUEUE_QUEUE_LABEL)
            try:
                listing = await self.kube.request(
                    "GET", f"/apis/{c.KUEUE_GROUP}/{c.KUEUE_VERSION}/namespaces/{key[0]}/{c.KUEUE_WORKLOADS}",
                    query=[("labelSelector", f"{c.KUEUE_JOB_UID_LABEL}={launcher.uid}")])
                workload = owned_workload(listing.get("items") or [], launcher.uid)
            except ApiException as error:
                if error.status not in (403, 404):  # 404: Kueue is not installed; 403: not allowed to read it
                    raise
                workload = None
            if patch := queue_label_patch(queue, workload):  # the job's label moved it: Kueue follows the launcher's
                kind = "RayJob" if plan.launcher == "rayjob" else "Job"
                api_version = f"{c.RAY_GROUP}/{c.RAY_VERSION}" if kind == "RayJob" else "batch/v1"
                await self.kube.request("PATCH", resource_path(api_version, kind, key[0], launcher_name(key[1])), patch,
                                        content_type="application/merge-patch+json")
            launcher = replace(launcher, queued=queued_message(workload, queue))
        pods = list(self.world.pods.get(key, {}).values())
        running, pod_seconds = pods_usage(pods, plan.gpus == 0, now)
        _, gone_seconds = pods_usage(list(self.world.gone_pods.get(key, {}).values()), plan.gpus == 0, now)
        about_to_launch = not launcher.exists and not job.spec.suspend and status.get("phase") not in FINISHED_PHASES
        missing = await self._missing(job) if about_to_launch else ()
        meta = body["metadata"]
        return Observed(launcher, running, pod_seconds, now, waiting_reason(pods), gone_seconds, missing=missing,
                        namespace=key[0], generation=meta.get("generation"),
                        created=parse_time(meta.get("creationTimestamp")),
                        running_devices=running_devices(pods, plan.gpus == 0))

    async def _missing(self, job: TrainingJob) -> tuple[Missing, ...]:
        """What the pods would mount and does not exist: the job waits for it, as a pod would."""
        namespace = job.metadata.namespace
        found = await asyncio.gather(*(self.kube.get("v1", kind, namespace, name) for _, kind, name in dependencies_of(job)))
        return tuple(Missing(field_, kind, name)
                     for (field_, kind, name), obj in zip(dependencies_of(job), found) if obj is None)

    async def _kuberay_installed(self, plan: Plan) -> bool:
        return plan.launcher != "rayjob" or await self.kube.has_resource(c.RAY_GROUP, c.RAY_VERSION, c.RAY_JOBS)

    async def _create_children(self, job: TrainingJob, plan: Plan, uid: str) -> None:
        """The launcher after its ServiceAccount and ConfigMap, or its pods are refused; the
        RoleBinding after its Role, or the API server refuses it (404: RBAC checks that the binder
        holds what the Role grants, and there is no Role yet). Creates are idempotent (409: it is
        there), so a restart part-way through is harmless."""
        with self.metrics.timed("launch"):
            launcher = await create_children(self.kube, build_children(job, plan, uid, self.launch))
            self.world.created_launcher((job.metadata.namespace, job.metadata.name), launcher)

    async def _delete(self, job: TrainingJob, plan: Plan, decision: Decision) -> None:
        name, namespace = job.metadata.name, job.metadata.namespace
        if decision.delete_launcher:
            launcher = build_launcher(job, plan, "", self.launch)
            await self.kube.delete(launcher["apiVersion"], launcher["kind"], namespace, launcher_name(name))
        if decision.delete_job:
            await self.kube.delete(f"{c.API[0]}/{c.API[1]}", "TrainingJob", namespace, name)

    async def _write(self, key: Key, body: dict, fields: dict, events) -> bool:
        """Patch these status fields, then post the events: an event never tells of a status
        the API server does not have. Whether the status now has the fields."""
        if fields:
            patched = await self._patch_status(key, fields)
            if not patched:
                return False
            self.world.saw_status(key, patched)
        now = self.clock()
        for type_, reason, message in events:
            try:
                await self.kube.create(build_event(body, type_, reason, message, now))
            except ApiException as error:  # e.g. the namespace is terminating: the status is what counts
                log.warning("event %s for %s/%s not posted: %s", reason, *key, error.reason)
        return bool(fields)

    async def _patch_status(self, key: Key, fields: dict) -> dict | None:
        path = resource_path(f"{c.API[0]}/{c.API[1]}", "TrainingJob", key[0], key[1]) + "/status"
        try:
            return await self.kube.request("PATCH", path, {"status": fields}, content_type="application/merge-patch+json")
        except ApiException as error:
            if error.status == 404:
                return None  # deleted meanwhile
            raise

    async def load_calibration(self) -> None:
        """The calibration ConfigMap's runs, when there is one; a broken one is logged and replaced."""
        if not self.calibration_namespace:
            return
        found = await self.kube.get("v1", "ConfigMap", self.calibration_namespace, c.CALIBRATION_CONFIG_MAP)
        try:
            self.parsed.calibration = Calibration.from_json(((found or {}).get("data") or {}).get(c.CALIBRATION_KEY))
        except CalibrationError as error:
            log.warning("ignoring %s/%s: %s", self.calibration_namespace, c.CALIBRATION_CONFIG_MAP, error)
        log.info("calibration: %d finished runs", len(self.parsed.calibration.runs))

    async def record_calibration(self, run: Run) -> None:
        """Add a finished job's measurements to the calibration (one writer at a time), and keep
        them in the ConfigMap so a restarted or new leader plans with them too."""
        async with self._calibration_lock:
            self.parsed.calibration = self.parsed.calibration.add(run)
            if not self.calibration_namespace:
                return
            data = {c.CALIBRATION_KEY: self.parsed.calibration.to_json()}
            path = resource_path("v1", "ConfigMap", self.calibration_namespace, c.CALIBRATION_CONFIG_MAP)
            try:
                await self.kube.request("PATCH", path, {"data": data}, content_type="application/merge-patch+json")
            except ApiException as error:
                if error.status != 404:
                    log.warning("calibration not kept in %s: %s", path, error.reason)
                    return
                await self.kube.create({"apiVersion": "v1", "kind": "ConfigMap", "data": data, "metadata": {
                    "name": c.CALIBRATION_CONFIG_MAP, "namespace": self.calibration_namespace,
                    "labels": {c.MANAGED_BY_LABEL: c.MANAGED_BY}}})

    def _price(self, job: TrainingJob, plan: Plan) -> float:
        return self.catalog.get(CPU if plan.gpus == 0 else job.spec.resources.gpuType).price_per_hour
