"""The operator's decisions as a pure function of the job and what it observes now.

reconcile(spec, status, observed) -> Decision: the new status and the actions to take.
Nothing here remembers events: run it twice on the same world and it decides the same.
"""

from dataclasses import dataclass, field
from datetime import datetime

from trainwright.api import FINISHED_PHASES
from trainwright.api.durations import format_duration
from trainwright.api.spec import TrainingJobSpec
from trainwright.api.status import Plan


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


@dataclass(frozen=True)
class Observed:
    launcher: LauncherState
    running_pods: int
    pod_seconds: dict[str, float]  # pod UID -> GPU-seconds (CPU-worker-seconds for CPU jobs), pods there now
    now: datetime
    waiting: str = ""  # why pods are not running yet, e.g. the scheduler's Unschedulable message
    gone_seconds: dict[str, float] = field(default_factory=dict)  # pods just deleted, from their final state


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


def _over_budget(spec: TrainingJobSpec, cost: dict, start: datetime | None, now: datetime) -> tuple[str, str] | None:
    budget = spec.budget
    if budget.maxCostUSD is not None and cost["usd"] >= budget.maxCostUSD:
        return "CostLimitReached", f"cost ${cost['usd']:.2f} reached the ${budget.maxCostUSD:.2f} budget"
    limit = budget.max_duration_seconds()
    if limit is not None and start is not None and (now - start).total_seconds() >= limit:
        return "DeadlineExceeded", f"ran {format_duration((now - start).total_seconds())}, over maxDuration {budget.maxDuration}"
    return None


def reconcile(spec: TrainingJobSpec, status: dict, observed: Observed, price_per_hour: float) -> Decision:
    now, launcher = observed.now, observed.launcher
    old_phase = status.get("phase") or "Pending"
    conditions = list(status.get("conditions") or [])
    cost = cost_of(status.get("cost"), observed.pod_seconds, price_per_hour, now, observed.gone_seconds)
    new = {"cost": cost, "restarts": max(status.get("restarts") or 0, launcher.failures)}
    start = parse_time(status.get("startTime"))
    decision = Decision(status=new)

    if old_phase in FINISHED_PHASES:
        phase, reason, message = old_phase, None, None
        finished = parse_time(status.get("completionTime"))
        ttl = spec.ttlSecondsAfterFinished
        if ttl is not None and finished is not None and (now - finished).total_seconds() >= ttl:
            decision.delete_job = True
        decision.delete_launcher = launcher.exists and old_phase == "BudgetExceeded"
    elif over := _over_budget(spec, cost, start, now):
        phase, (reason, message) = "BudgetExceeded", over
        decision.delete_launcher = launcher.exists
    elif spec.suspend:
        phase, reason, message = "Suspended", "Suspended", "spec.suspend is true: pods removed, checkpoint kept"
        decision.delete_launcher = launcher.exists
    elif not launcher.exists:
        phase, reason, message = "Pending", "LauncherCreated", "creating the trainer"
        decision.create_launcher = True
    elif launcher.succeeded:
        phase, reason, message = "Succeeded", "TrainingSucceeded", launcher.message or "the trainer finished"
    elif launcher.failed:
        phase, reason, message = "Failed", "BackoffLimitExceeded", launcher.message or "the trainer failed"
    elif launcher.suspended:
        phase, reason, message = "Pending", "Queued", "the launcher is suspended (queued)"
    elif observed.running_pods > 0:
        phase, reason, message = "Running", "TrainerRunning", f"{observed.running_pods} pod(s) running"
    else:
        phase, reason, message = "Pending", "WaitingForPods", observed.waiting or "waiting for the trainer's pods to start"

    if phase == "Running" and start is None:
        new["startTime"] = rfc3339(now)
    if phase in FINISHED_PHASES and not status.get("completionTime"):
        new["completionTime"] = rfc3339(now)
    new["phase"] = phase
    if reason is not None:
        for type_ in ("Pending", "Running", "Succeeded", "Failed", "Suspended", "BudgetExceeded"):
            if type_ == phase:
                conditions = set_condition(conditions, type_, "True", reason, message, now)
            elif any(c["type"] == type_ for c in conditions):
                conditions = set_condition(conditions, type_, "False", reason, message, now)
    new["conditions"] = conditions
    if phase != old_phase:
        kind = "Warning" if phase in ("Failed", "BudgetExceeded") else "Normal"
        decision.events.append((kind, phase, message or phase))
    decision.recheck_after = _recheck_after(spec, {**status, **new}, observed.running_pods > 0, now)
    return decision


def _recheck_after(spec: TrainingJobSpec, status: dict, running: bool, now: datetime) -> float | None:
    """When time alone can change this job's status: its cost grows, a budget or deadline
    runs out, a finished job's TTL ends. Events wake the job for everything else."""
    waits = []
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


def launched_status(job, plan: Plan, status: dict, generation: int | None, price_per_hour: float,
                    now: datetime) -> dict:
    """The status fields that change when a job's children are created: plan, conditions and
    what reconcile says of a launcher with no pods yet, so the first status is one write."""
    conditions = set_condition(list(status.get("conditions") or []), "Planned", "True", "Planned", plan.reason, now)
    sized_down = [n for n in plan.notes if n.startswith("sized down")]
    if sized_down:
        conditions = set_condition(conditions, "SizedDown", "True", "SizedDown", sized_down[0], now)
    planned = {**status, "plan": plan.to_wire(), "conditions": conditions, "observedGeneration": generation}
    first = reconcile(job.spec, planned, Observed(LauncherState(exists=not job.spec.suspend), 0, {}, now),
                      price_per_hour)
    return {k: v for k, v in {**planned, **first.status}.items() if status.get(k) != v}
