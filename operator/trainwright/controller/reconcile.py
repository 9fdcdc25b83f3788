"""The operator's decisions as a pure function of the job and what it observes now.

reconcile(spec, status, observed) -> Decision: the new status and the actions to take.
Nothing here remembers events: run it twice on the same world and it decides the same.
The policies around it (what a job that cannot run looks like, when a cost-only change is
worth a write, how long to wait before looking again) are here too; the reconciler
(controller/reconciler.py) only reads the world and carries the decision out.
"""

from dataclasses import dataclass, field
from datetime import datetime

from trainwright.api import FINISHED_PHASES
from trainwright.api import reasons as r
from trainwright.api.durations import format_duration
from trainwright.api.spec import TrainingJobSpec
from trainwright.api.status import Plan
from trainwright.controller.projection import Projection, acts_on, budget_at_risk, project
from trainwright.planner import Catalog, Run, measured_run
from trainwright.planner.catalog import CPU


@dataclass(frozen=True)
class LauncherState:
    """The launcher (batch Job or RayJob) as observed; ``exists=False`` when there is none."""

    exists: bool
    uid: str = ""
    active: int = 0  # pods running or starting
    failures: int = 0  # failed pods so far (restarts)
    succeeded: bool = False
    failed: bool = False  # failed for good (backoff limit reached)
    suspended: bool = False  # e.g. held by Kueue
    message: str = ""
    queued: str = ""  # while suspended: why it waits, from Kueue's Workload


@dataclass(frozen=True)
class Missing:
    """Something the job's pods need that does not exist (yet): the job waits for it."""

    field: str  # the spec field that names it, e.g. checkpoint.pvc
    kind: str  # PersistentVolumeClaim, Secret or ConfigMap
    name: str

    @property
    def reason(self) -> str:
        return {"Secret": r.WAITING_FOR_SECRET, "ConfigMap": r.WAITING_FOR_CONFIG_MAP}.get(self.kind, r.WAITING_FOR_CLAIM)

    def message(self, namespace: str) -> str:
        return (f"spec.{self.field}: waiting for {self.kind} {self.name!r} in {namespace}; "
                "the job starts as soon as it exists")


@dataclass(frozen=True)
class Observed:
    launcher: LauncherState
    running_pods: int
    pod_seconds: dict[str, float]  # pod UID -> GPU-seconds (CPU-worker-seconds for CPU jobs), pods there now
    now: datetime
    waiting: str = ""  # why pods are not running yet, e.g. the scheduler's Unschedulable message
    gone_seconds: dict[str, float] = field(default_factory=dict)  # pods just deleted, from their final state
    missing: tuple[Missing, ...] = ()  # what the pods need and is not there (looked up before a launch)
    namespace: str = ""
    generation: int | None = None  # the spec generation this observation reflects
    created: datetime | None = None  # the job's creationTimestamp: bounds the wait for what is missing
    running_devices: int = 0  # devices (GPUs, or CPU pods) held by running pods: the rate cost grows at


@dataclass
class Decision:
    status: dict  # the full set of status fields the operator owns
    create_launcher: bool = False
    delete_launcher: bool = False
    delete_job: bool = False
    events: list[tuple[str, str, str]] = field(default_factory=list)  # (type, reason, message)
    recheck_after: float | None = None  # seconds until time alone may change the decision; None: never


ACCRUAL_SECONDS = 15.0  # while pods run, the cost in the status is brought up to date this often
BUDGET_CHECK_SECONDS = 3.0  # how late a running job may notice that it spent its maxCostUSD
MISSING_CHECK_SECONDS = 2.0  # a job waiting for a claim looks again this often (nothing tells us it came)
RAY_POLL_SECONDS = 3.0  # RayJobs are read, not watched: an unfinished one is read this often
QUEUE_POLL_SECONDS = 5.0  # Kueue's Workloads are read, not watched: a queued launcher's, this often
# Each job is looked at again at least this often, whatever its wake-ups say: should one ever be
# missed. Per job, from its own last reconcile (and jittered), so that the resyncs of thousands
# of jobs spread out instead of queueing together ahead of a job just applied.
RESYNC_SECONDS = 60.0
FINISHED_RESYNC_SECONDS = 600.0  # a finished job changes only by events (edits, its pods) and its TTL
RETRY_BASE_SECONDS = 1.0  # a failed reconcile is retried after 1, 2, 4, ... seconds (client-go's
RETRY_MAX_SECONDS = 300.0  # rate-limited workqueue backs off per item the same way), at most this


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def set_condition(conditions: list[dict], type_: str, status: str, reason: str, message: str, now: datetime) -> list[dict]:
    """Conditions with ``type_`` set; its transition time moves only when its status changes."""
    old = next((c for c in conditions if c["type"] == type_), None)
    since = old["lastTransitionTime"] if old and old["status"] == status else rfc3339(now)
    new = {"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": since}
    return [c for c in conditions if c["type"] != type_] + [new]


def cost_of(cost: dict | None, pod_seconds: dict[str, float], price_per_hour: float, now: datetime,
            gone_seconds: dict[str, float] | None = None) -> dict:
    """Cost = device-seconds of every pod the job has had: those there now, plus those gone
    (a deleted or retried pod, a removed launcher's), each once, at its final seconds when the
    watch brought its last state (``gone_seconds``), else at the seconds it was last seen with.

    Pure in the last status and the pods, so no pod is lost or counted twice, whatever the
    order of events; the list is replaced whole by a merge patch."""
    cost, gone_seconds = cost or {}, gone_seconds or {}
    last_seen = {p["uid"]: p["seconds"] for p in cost.get("pods") or []}
    gone = (set(last_seen) | set(gone_seconds)) - set(pod_seconds)
    settled = cost.get("settledGpuSeconds", 0.0) + sum(gone_seconds.get(uid, last_seen.get(uid, 0.0)) for uid in gone)
    total = settled + sum(pod_seconds.values())
    return {"gpuSeconds": round(total, 3), "usd": round(total * price_per_hour / 3600, 6),
            "settledGpuSeconds": round(settled, 3),
            "pods": [{"uid": uid, "seconds": round(s, 3)} for uid, s in sorted(pod_seconds.items())],
            "updatedAt": rfc3339(now)}


def _over_budget(spec: TrainingJobSpec, cost: dict, start: datetime | None, observed: Observed,
                 projection: Projection | None) -> tuple[str, str] | None:
    budget, now = spec.budget, observed.now
    if budget.maxCostUSD is not None and cost["usd"] >= budget.maxCostUSD:
        return r.COST_LIMIT_REACHED, f"cost ${cost['usd']:.2f} reached the ${budget.maxCostUSD:.2f} budget"
    at_risk = budget_at_risk(spec, projection)
    if budget.onProjectedOverrun == "stop" and at_risk and acts_on(projection):
        return r.PROJECTED_COST_OVERRUN, f"stopped at ${cost['usd']:.2f}, before the money was spent: {at_risk}"
    limit = budget.max_duration_seconds()
    if limit is not None and start is not None and (now - start).total_seconds() >= limit:
        return r.DEADLINE_EXCEEDED, f"ran {format_duration((now - start).total_seconds())}, over maxDuration {budget.maxDuration}"
    waited_since = observed.created if observed.missing else None
    if limit is not None and waited_since is not None and (now - waited_since).total_seconds() >= limit:
        what = observed.missing[0]
        return r.DEADLINE_EXCEEDED, (f"waited {format_duration((now - waited_since).total_seconds())} for {what.kind} "
                                     f"{what.name!r} (spec.{what.field}), over maxDuration {budget.maxDuration}")
    return None


def reconcile(spec: TrainingJobSpec, status: dict, observed: Observed, price_per_hour: float) -> Decision:
    now, launcher = observed.now, observed.launcher
    old_phase = status.get("phase") or "Pending"
    conditions = list(status.get("conditions") or [])
    cost = cost_of(status.get("cost"), observed.pod_seconds, price_per_hour, now, observed.gone_seconds)
    start = parse_time(status.get("startTime"))
    projection = None
    if old_phase not in FINISHED_PHASES and observed.running_pods > 0:
        projection = project(status.get("progress"), cost["usd"], observed.running_devices, price_per_hour, start, now)
    cost.update(projected_cost_fields(projection, status.get("cost")))
    new = {"cost": cost, "restarts": max(status.get("restarts") or 0, launcher.failures)}
    if observed.generation is not None:
        new["observedGeneration"] = observed.generation
    decision = Decision(status=new)

    if old_phase in FINISHED_PHASES:
        phase, reason, message = old_phase, None, None
        finished = parse_time(status.get("completionTime"))
        ttl = spec.ttlSecondsAfterFinished
        if ttl is not None and finished is not None and (now - finished).total_seconds() >= ttl:
            decision.delete_job = True
        decision.delete_launcher = launcher.exists and old_phase == "BudgetExceeded"
    elif over := _over_budget(spec, cost, start, observed, projection):
        phase, (reason, message) = "BudgetExceeded", over
        decision.delete_launcher = launcher.exists
    elif spec.suspend:
        phase, reason, message = "Suspended", r.SUSPENDED_BY_SPEC, "spec.suspend is true: pods removed, checkpoint kept"
        decision.delete_launcher = launcher.exists
    elif not launcher.exists and observed.missing:
        phase, reason, message = "Pending", observed.missing[0].reason, observed.missing[0].message(observed.namespace)
    elif not launcher.exists:
        phase, reason, message = "Pending", r.LAUNCHER_CREATED, "creating the trainer"
        decision.create_launcher = True
    elif launcher.succeeded:
        phase, reason, message = "Succeeded", r.TRAINING_SUCCEEDED, launcher.message or "the trainer finished"
    elif launcher.failed:
        phase, reason, message = "Failed", r.BACKOFF_LIMIT_EXCEEDED, launcher.message or "the trainer failed"
    elif launcher.suspended:
        phase, reason, message = "Pending", r.QUEUED, launcher.queued or "the launcher is suspended (queued)"
    elif observed.running_pods > 0:
        phase, reason, message = "Running", r.TRAINER_RUNNING, f"{observed.running_pods} pod(s) running"
    else:
        phase, reason, message = "Pending", r.WAITING_FOR_PODS, observed.waiting or "waiting for the trainer's pods to start"

    if phase == "Running" and start is None:
        new["startTime"] = rfc3339(now)
    if phase in FINISHED_PHASES and not status.get("completionTime"):
        new["completionTime"] = rfc3339(now)
    new["phase"] = phase
    if reason is not None:
        conditions = _phase_conditions(conditions, phase, reason, message, now)
    conditions, risk_event = _budget_risk_condition(conditions, spec, projection, phase, now)
    new["conditions"] = conditions
    if risk_event:
        decision.events.append(risk_event)
    old_reason = _phase_reason(status)
    # Events tell of what a user acts on: waiting, stopping, the outcome. A pod starting is the
    # ordinary course (the condition keeps when), and an Event for it is one more write for
    # every job, as the Job controller and Kubeflow's trainers also judge.
    if (phase != old_phase and phase != "Running") or (reason in _WAIT_REASONS and reason != old_reason):
        kind = "Warning" if phase in ("Failed", "BudgetExceeded") else "Normal"
        decision.events.append((kind, reason if reason in _WAIT_REASONS else phase, message or phase))
    waiting_for_missing = not launcher.exists and bool(observed.missing) and phase == "Pending"
    decision.recheck_after = _recheck_after(spec, {**status, **new}, observed.running_pods > 0, now,
                                            MISSING_CHECK_SECONDS if waiting_for_missing else None)
    return decision


_WAIT_REASONS = (r.WAITING_FOR_CLAIM, r.WAITING_FOR_SECRET, r.WAITING_FOR_CONFIG_MAP)
PROJECTED_KEYS = ("projectedUSD", "projectedSeconds", "etaSeconds", "eta", "projectedCompletionTime")


def projected_cost_fields(projection: Projection | None, old_cost: dict | None) -> dict:
    """The projection's fields of ``status.cost``; without one, nulls that remove the old
    projection (a merge patch keeps what it does not name)."""
    if projection is not None:
        return projection.to_cost_fields()
    return {key: None for key in PROJECTED_KEYS if (old_cost or {}).get(key) is not None}


def _budget_risk_condition(conditions: list[dict], spec: TrainingJobSpec, projection: Projection | None, phase: str,
                           now: datetime) -> tuple[list[dict], tuple[str, str, str] | None]:
    """BudgetAtRisk: True, with the numbers, while a projection that has seen enough of the run
    passes the budget (and an Event when it turns True); False once it no longer does."""
    if not acts_on(projection) or phase in FINISHED_PHASES:
        return conditions, None
    at_risk = budget_at_risk(spec, projection)
    was = next((c["status"] for c in conditions if c["type"] == r.BUDGET_AT_RISK), None)
    if at_risk and was == "True":
        return conditions, None  # its numbers as they were when it turned True: no write per reconcile
    if at_risk:
        return (set_condition(conditions, r.BUDGET_AT_RISK, "True", r.BUDGET_AT_RISK, at_risk, now),
                ("Warning", r.BUDGET_AT_RISK, at_risk))
    if was == "True":
        message = f"projected cost ${projection.cost_usd:.2f} is within the budget again"
        return set_condition(conditions, r.BUDGET_AT_RISK, "False", r.PROJECTED_WITHIN_BUDGET, message, now), None
    return conditions, None


def _phase_conditions(conditions: list[dict], phase: str, reason: str, message: str, now: datetime) -> list[dict]:
    """The phase's condition True, the others that exist False."""
    for type_ in r.PHASE_CONDITIONS:
        if type_ == phase:
            conditions = set_condition(conditions, type_, "True", reason, message, now)
        elif any(c["type"] == type_ for c in conditions):
            conditions = set_condition(conditions, type_, "False", reason, message, now)
    return conditions


def _phase_reason(status: dict) -> str | None:
    phase = status.get("phase")
    return next((c["reason"] for c in status.get("conditions") or [] if c["type"] == phase and c["status"] == "True"), None)


def _recheck_after(spec: TrainingJobSpec, status: dict, running: bool, now: datetime,
                   looking_for: float | None = None) -> float | None:
    """When time alone can change this job's status: its cost grows, a budget or deadline
    runs out, a finished job's TTL ends, what it waits for may have come. Events wake the job
    for everything else."""
    waits = [looking_for] if looking_for is not None else []
    start, finished = parse_time(status.get("startTime")), parse_time(status.get("completionTime"))
    limit = spec.budget.max_duration_seconds()
    if status["phase"] in FINISHED_PHASES:
        if spec.ttlSecondsAfterFinished is not None and finished is not None:
            waits.append(spec.ttlSecondsAfterFinished - (now - finished).total_seconds())
    else:
        if running:
            waits.append(ACCRUAL_SECONDS)
        if running and spec.budget.maxCostUSD is not None:
            waits.append(BUDGET_CHECK_SECONDS)
        if limit is not None and start is not None:  # the clock runs from the first start, pods or not
            waits.append(limit - (now - start).total_seconds())
    return max(0.0, min(waits)) if waits else None


def planned_status(status: dict, plan: Plan, now: datetime) -> dict:
    """The status with the plan in it: every job that could be planned shows it (kubectl get
    tj's strategy and GPUs), whatever happens next."""
    conditions = set_condition(list(status.get("conditions") or []), r.PLANNED, "True", r.PLANNED, plan.reason, now)
    sized_down = [n for n in plan.notes if n.startswith("sized down")]
    if sized_down:
        conditions = set_condition(conditions, r.SIZED_DOWN, "True", r.SIZED_DOWN, sized_down[0], now)
    return {**status, "plan": plan.to_wire(), "conditions": conditions}


def failed_status(status: dict, reason: str, message: str, now: datetime, generation: int | None) -> dict:
    """A job that cannot run: Failed at once, with the reason; what it had (a plan) is kept."""
    failed = {**status, "phase": "Failed", "completionTime": status.get("completionTime") or rfc3339(now),
              "conditions": _phase_conditions(list(status.get("conditions") or []), "Failed", reason, message, now)}
    if generation is not None:
        failed["observedGeneration"] = generation
    return failed


def launch_blocker(spec: TrainingJobSpec, plan: Plan, kuberay_installed: bool) -> tuple[str, str] | None:
    """What makes this plan impossible, for good, as (reason, message)."""
    if plan.pods > 1 and not spec.checkpoint.pvc:
        return r.SHARED_CLAIM_MISSING, (f"spec.checkpoint.pvc: a job across {plan.pods} pods needs a checkpoint claim "
                                        "that every pod mounts (ReadWriteMany across nodes): the model and result of "
                                        "rank 0 reach the driver on the head pod through it")
    if plan.launcher == "rayjob" and not kuberay_installed:
        return r.KUBERAY_MISSING, (f"the plan needs {plan.pods} pods, which run as a KubeRay RayJob, "
                                   "but KubeRay's CRDs are not installed")
    return None


def fields_to_write(old: dict, new: dict, now: datetime) -> dict:
    """The status fields that changed and are worth a write now."""
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    if set(changed) == {"cost"} and not cost_write_due(old.get("cost"), changed["cost"], now):
        return {}
    return changed


def cost_write_due(old: dict | None, new: dict, now: datetime) -> bool:
    """Whether a cost-only change is worth a write: rarely while only the running total grows
    (every job's status every few seconds would load the API server), at once otherwise. A pod
    that has not started holds no money yet: it is written with the first seconds it has (a
    burst of jobs would otherwise write each job's status once more, for a zero)."""
    old = dict(old or {})
    growing = ("gpuSeconds", "usd", "updatedAt", "pods", *PROJECTED_KEYS)  # pods: only their seconds grow
    if {k: v for k, v in new.items() if k not in growing} != {k: v for k, v in old.items() if k not in growing} \
            or _pods_holding_money(new) != _pods_holding_money(old) \
            or _projected(new) != _projected(old):  # a projection appears or goes: at once
        return True
    if new.get("gpuSeconds") == old.get("gpuSeconds"):
        return False
    last = parse_time(old.get("updatedAt"))
    return last is None or (now - last).total_seconds() >= ACCRUAL_SECONDS


def _pods_holding_money(cost: dict) -> set[str]:
    return {p["uid"] for p in cost.get("pods") or [] if p["seconds"] > 0}


def _projected(cost: dict) -> bool:
    return cost.get("projectedUSD") is not None


def next_check(decision: Decision, plan: Plan) -> float | None:
    """When to look at the job again: what the decision asks for, an unfinished RayJob at
    least every RAY_POLL_SECONDS and a queued launcher every QUEUE_POLL_SECONDS (nothing
    watches RayJobs or Kueue's Workloads; a queued job's label may move it to another queue)."""
    waits = [] if decision.recheck_after is None else [decision.recheck_after]
    if plan.launcher == "rayjob" and decision.status.get("phase") not in FINISHED_PHASES and not decision.delete_job:
        waits.append(RAY_POLL_SECONDS)
    if _phase_reason(decision.status) == r.QUEUED and not decision.delete_job:
        waits.append(QUEUE_POLL_SECONDS)
    return min(waits) if waits else None


def resync_after(phase: str | None, jitter: float) -> float:
    """Seconds until the job's resync; ``jitter`` in [0, 1) moves it within +-10%."""
    base = FINISHED_RESYNC_SECONDS if phase in FINISHED_PHASES else RESYNC_SECONDS
    return base * (0.9 + 0.2 * jitter)


def retry_delay(failures: int) -> float:
    """Seconds before retrying a job whose reconcile failed ``failures`` times in a row."""
    return min(RETRY_MAX_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, failures - 1))


def finished_run(spec: TrainingJobSpec, plan: Plan, status: dict, new_status: dict, catalog: Catalog) -> Run | None:
    """What a job that has just succeeded measured, for the calibration of later plans: its
    trainer's step time and samples, and its wall time from the first start to completion.
    Not a job that was restarted: the failed attempts' time would count as overhead."""
    if new_status.get("phase") != "Succeeded" or status.get("phase") == "Succeeded" or new_status.get("restarts"):
        return None
    start, end = parse_time(status.get("startTime")), parse_time(new_status.get("completionTime"))
    progress = status.get("progress") or {}
    if start is None or end is None:
        return None
    return measured_run(spec, plan.strategy, CPU if plan.gpus == 0 else spec.resources.gpuType,
                        plan.gpus or plan.workers, None, progress.get("samplesSeen") or 0,
                        (progress.get("step") or 0) / max(1, progress.get("totalSteps") or 1),
                        progress.get("stepSeconds") or 0.0, (end - start).total_seconds(), catalog)
