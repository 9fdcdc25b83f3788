"""plan_job: strategy, size and estimates for one spec. Pure: no I/O, same input, same plan."""

from trainwright.api.durations import format_duration
from trainwright.api.spec import TrainingJobSpec
from trainwright.api.status import Plan
from trainwright.planner.catalog import CPU, Catalog, UnknownGpuType
from trainwright.planner.estimate import Estimate, estimate, training_flops, training_tokens
from trainwright.planner.models import parameter_count
from trainwright.planner.sizing import Sizing, size_job
from trainwright.planner.strategy import choose_strategy

STRATEGIES = ("fine-tune", "scratch", "hybrid")


class PlanningError(ValueError):
    """A valid spec that cannot be planned, e.g. a GPU type the catalog lacks. Message: 'path: reason'."""


def _frozen_fraction(spec: TrainingJobSpec, strategy: str) -> float:
    if strategy == "fine-tune" and spec.model.adapter:
        return 1.0
    if strategy == "hybrid":
        return min(spec.training.freezeEpochs, spec.training.epochs) / spec.training.epochs
    return 0.0


def estimate_job(spec: TrainingJobSpec, strategy: str, sizing: Sizing, catalog: Catalog) -> tuple[Estimate | None, list[str]]:
    """The estimate, or None with notes saying what is missing; never a made-up number."""
    parameters = parameter_count(spec, strategy)
    missing = []
    if parameters is None:
        missing.append(f"no estimate: the parameter count of {spec.model.source} is unknown (set model.parameters)")
    if spec.dataset.samples is None:
        missing.append("no estimate: dataset.samples is not given")
    if missing:
        return None, missing
    tokens = training_tokens(spec.dataset.samples, spec.dataset.validationSplit,
                             spec.training.maxSeqLength, spec.training.epochs)
    flops = training_flops(parameters, tokens, _frozen_fraction(spec, strategy))
    device = catalog.get(CPU if sizing.gpus == 0 else spec.resources.gpuType)
    devices = max(sizing.gpus, sizing.workers)
    return estimate(flops, device, devices, catalog.utilization, sizing.pods > 1), []


def _budget_notes(spec: TrainingJobSpec, result: Estimate | None) -> list[str]:
    if result is None:
        return []
    notes = []
    budget = spec.budget
    if budget.maxCostUSD is not None and result.cost_usd > budget.maxCostUSD:
        notes.append(f"estimated ${result.cost_usd:,.2f} is over the ${budget.maxCostUSD:,.2f} budget: "
                     "the job will likely stop there")
    limit = budget.max_duration_seconds()
    if limit is not None and result.seconds > limit:
        notes.append(f"estimated {format_duration(result.seconds)} is over maxDuration {budget.maxDuration}")
    return notes


def _checkpoint_notes(spec: TrainingJobSpec) -> list[str]:
    if spec.checkpoint.pvc:
        return []
    return ["checkpoint.pvc is not set: in a cluster, checkpoints live in the pod and a restarted "
            "pod starts over"]


def plan_job(spec: TrainingJobSpec, catalog: Catalog, strategy: str | None = None) -> Plan:
    """The plan for ``spec``; ``strategy`` forces one (used by --compare)."""
    try:
        catalog.get(CPU if spec.resources.gpus == 0 else spec.resources.gpuType)
    except UnknownGpuType as error:
        raise PlanningError(f"spec.resources.gpuType: {error}") from None
    reason = f"compared as {strategy}"
    if strategy is None:
        scratch = size_job("scratch", spec.resources.gpus, spec.resources.gpusPerNode, spec.resources.cpu_workers())
        scratch_estimate, _ = estimate_job(spec, "scratch", scratch, catalog)
        strategy, reason = choose_strategy(spec, scratch_estimate and scratch_estimate.cost_usd)
    sizing = size_job(strategy, spec.resources.gpus, spec.resources.gpusPerNode, spec.resources.cpu_workers())
    result, estimate_notes = estimate_job(spec, strategy, sizing, catalog)
    return Plan(
        strategy=strategy,
        reason=reason,
        gpus=sizing.gpus,
        launcher=sizing.launcher,
        workers=sizing.workers,
        pods=sizing.pods,
        gpusPerPod=sizing.gpus_per_pod,
        estimatedSeconds=round(result.seconds, 1) if result else None,
        estimatedCostUSD=round(result.cost_usd, 4) if result else None,
        notes=sizing.notes + estimate_notes + _budget_notes(spec, result) + _checkpoint_notes(spec),
    )


def needs_for(spec: TrainingJobSpec, strategy: str) -> list[str]:
    """What the spec lacks to run as ``strategy``."""
    model = spec.model
    needs = []
    if strategy in ("fine-tune", "hybrid") and not model.source:
        needs.append("model.source (a pre-trained model)")
    if strategy == "hybrid" and not model.head:
        needs.append("model.head (new layers)")
    if strategy == "scratch" and not model.architecture:
        needs.append("model.architecture")
    return needs


def compare_strategies(spec: TrainingJobSpec, catalog: Catalog) -> list[tuple[str, Plan, list[str]]]:
    """The same job planned as each strategy: (strategy, plan, what the spec lacks for it)."""
    return [(s, plan_job(spec, catalog, strategy=s), needs_for(spec, s)) for s in STRATEGIES]
