"""Where a running job is heading: its projected time, completion and cost, from what it has
measured so far, and whether that overruns its budget.

Pure: the trainer's last progress report (steps done, steps planned, its own ETA from measured
throughput), the cost accrued and the devices the job holds now give the rest. The accrued cost
already contains start-up and every earlier attempt; only the steps left are projected, at the
rate the trainer measures, on the devices the job holds now.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from trainwright.api.durations import format_duration
from trainwright.api.spec import TrainingJobSpec

# A projection from the first steps (compilation, warm-up, the first evaluation) overstates the
# time left; below this share of the steps the job's projection is shown but never acted on.
MIN_RATIO_TO_ACT = 0.05


@dataclass(frozen=True)
class Projection:
    seconds_left: float
    total_seconds: float  # from the first start to the projected end
    completion: datetime
    cost_usd: float
    ratio: float

    def to_cost_fields(self) -> dict:
        """The fields it adds to ``status.cost``."""
        return {"projectedUSD": round(self.cost_usd, 6), "projectedSeconds": round(self.total_seconds, 1),
                "etaSeconds": round(self.seconds_left, 1), "eta": format_duration(self.seconds_left),
                "projectedCompletionTime": self.completion.strftime("%Y-%m-%dT%H:%M:%SZ")}


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None


def project(progress: dict | None, accrued_usd: float, devices: float, price_per_hour: float,
            start: datetime | None, now: datetime) -> Projection | None:
    """The job's projection, or None while there is nothing to project from (no step done yet,
    no step count, no measured rate)."""
    progress = progress or {}
    step, total = progress.get("step") or 0, progress.get("totalSteps")
    if not total or step <= 0:
        return None
    reported_left = progress.get("etaSeconds")
    reported_at = _parse(progress.get("updatedAt"))
    if reported_left is None:
        if start is None or reported_at is None or reported_at <= start:
            return None  # no rate to go by
        rate = step / (reported_at - start).total_seconds()
        reported_left = (total - step) / rate
    since_report = max(0.0, (now - reported_at).total_seconds()) if reported_at else 0.0
    left = max(0.0, reported_left - since_report) if step < total else 0.0
    elapsed = (now - start).total_seconds() if start else 0.0
    return Projection(seconds_left=left, total_seconds=elapsed + left, completion=now + timedelta(seconds=left),
                      cost_usd=accrued_usd + left * devices * price_per_hour / 3600, ratio=min(1.0, step / total))


def budget_at_risk(spec: TrainingJobSpec, projection: Projection | None) -> str | None:
    """The BudgetAtRisk message when the projected cost passes ``budget.maxCostUSD``, else None."""
    limit = spec.budget.maxCostUSD
    if limit is None or projection is None or projection.cost_usd <= limit:
        return None
    return (f"projected cost ${projection.cost_usd:.2f} passes the ${limit:.2f} budget "
            f"({projection.ratio:.0%} of steps done, {format_duration(projection.seconds_left)} left)")


def acts_on(projection: Projection | None) -> bool:
    """Whether the projection has seen enough of the run to stop a job on it."""
    return projection is not None and projection.ratio >= MIN_RATIO_TO_ACT
