"""plan_job: strategy, size and estimates for one spec. Pure: no I/O, same input, same plan."""

from trainwright.api.durations import format_duration
from trainwright.api.spec import TrainingJobSpec, need_name
from trainwright.api.spec import needs_for as model_needs_for
from trainwright.api.status import Plan
from trainwright.planner.calibration import Calibration, Run
from trainwright.planner.catalog import CPU, Catalog, UnknownGpuType
from trainwright.planner.estimate import (
    DEFAULT_STARTUP_SECONDS, Estimate, checkpoint_seconds, estimate, evaluation_flops,
    training_flops, training_tokens,
)
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


def estimate_job(spec: TrainingJobSpec, strategy: str, sizing: Sizing, catalog: Catalog,
                 calibration: Calibration | None = None) -> tuple[Estimate | None, list[str], str | None]:
    """The estimate and what it rests on, or None with notes saying what is missing; never a
    made-up number. Like jobs measured before (``calibration``) give the utilisation and the
    overhead; else the catalog's utilisation and the default overheads."""
    parameters = parameter_count(spec, strategy)
    missing = []
    if parameters is None:
        missing.append(f"no estimate: the parameter count of {spec.model.source} is unknown (set model.parameters)")
    if spec.dataset.samples is None:
        missing.append("no estimate: dataset.samples is not given")
    if missing:
        return None, missing, None
    data, training = spec.dataset, spec.training
    tokens = training_tokens(data.samples, data.validationSplit, training.maxSeqLength, training.epochs)
    frozen = _frozen_fraction(spec, strategy)
    flops = training_flops(parameters, tokens, frozen)
    gpu_type = CPU if sizing.gpus == 0 else spec.resources.gpuType
    device, devices, multi_node = catalog.get(gpu_type), max(sizing.gpus, sizing.workers), sizing.pods > 1
    fit = calibration.fit(gpu_type, strategy, parameters) if calibration else None
    if fit is not None:
        steps = estimate(flops, device, devices, fit.utilization, multi_node)
        return _plus(steps, fit.overhead_seconds, device.price_per_hour * devices), [], fit.describe()
    evaluation = estimate(evaluation_flops(parameters, data.samples, data.validationSplit, training.maxSeqLength,
                                           training.epochs), device, devices, catalog.utilization, multi_node)
    steps_total = max(1, int(data.samples * (1 - data.validationSplit)) * training.epochs
                      // (training.batchSize * max(1, sizing.workers)))
    overhead = (DEFAULT_STARTUP_SECONDS + evaluation.seconds
                + checkpoint_seconds(parameters, frozen, 1 + steps_total // spec.checkpoint.everySteps))
    steps = estimate(flops, device, devices, catalog.utilization, multi_node)
    basis = (f"FLOPs formula at the catalog's {catalog.utilization:.0%} utilisation, plus {overhead:.0f} s of "
             f"start-up, evaluation and checkpoints (no finished runs of {strategy} on {gpu_type} at this size)")
    return _plus(steps, overhead, device.price_per_hour * devices), [], basis


def _plus(steps: Estimate, overhead_seconds: float, dollars_per_hour: float) -> Estimate:
    seconds = steps.seconds + overhead_seconds
    return Estimate(seconds, seconds * dollars_per_hour / 3600)


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


def plan_job(spec: TrainingJobSpec, catalog: Catalog, strategy: str | None = None,
             calibration: Calibration | None = None) -> Plan:
    """The plan for ``spec``; ``strategy`` forces one (used by --compare); ``calibration``: what
    like jobs measured before."""
    try:
        catalog.get(CPU if spec.resources.gpus == 0 else spec.resources.gpuType)
    except UnknownGpuType as error:
        raise PlanningError(f"spec.resources.gpuType: {error}") from None
    reason = f"compared as {strategy}"
    if strategy is None:
        scratch = size_job("scratch", spec.resources.gpus, spec.resources.gpusPerNode, spec.resources.cpu_workers())
        scratch_estimate, _, _ = estimate_job(spec, "scratch", scratch, catalog, calibration)
        strategy, reason = choose_strategy(spec, scratch_estimate and scratch_estimate.cost_usd)
    sizing = size_job(strategy, spec.resources.gpus, spec.resources.gpusPerNode, spec.resources.cpu_workers())
    result, estimate_notes, basis = estimate_job(spec, strategy, sizing, catalog, calibration)
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
        estimateBasis=basis,
        notes=sizing.notes + estimate_notes + _budget_notes(spec, result) + _checkpoint_notes(spec),
    )


def needs_for(spec: TrainingJobSpec, strategy: str) -> list[str]:
    """What the spec lacks to run as ``strategy``, named for people (the API's STRATEGY_NEEDS)."""
    return [need_name(field) for field in model_needs_for(spec.model, strategy)]


def compare_strategies(spec: TrainingJobSpec, catalog: Catalog,
                       calibration: Calibration | None = None) -> list[tuple[str, Plan, list[str]]]:
    """The same job planned as each strategy: (strategy, plan, what the spec lacks for it)."""
    return [(s, plan_job(spec, catalog, strategy=s, calibration=calibration), needs_for(spec, s)) for s in STRATEGIES]


def measured_run(spec: TrainingJobSpec, strategy: str, gpu_type: str, devices: int, parameters: int | None,
                 samples_seen: int, share_done: float, step_seconds: float, wall_seconds: float,
                 catalog: Catalog) -> Run | None:
    """What a finished run measured, as a calibration record; None when it measured nothing.

    The work is counted as the planner counts it, so that a later plan divides by the same
    number: its parameter count when it has one, and the samples the spec says (the share of
    them the run got through), whatever the trainer made of them (a causal-lm packs documents
    into blocks). Without a sample count in the spec, the samples the trainer saw."""
    parameters = parameter_count(spec, strategy) or parameters
    data = spec.dataset
    if data.samples is not None:
        samples = int(data.samples * (1 - data.validationSplit)) * spec.training.epochs * min(1.0, share_done)
    else:
        samples = samples_seen
    if not parameters or samples <= 0 or step_seconds <= 0:
        return None
    flops = training_flops(parameters, int(samples * spec.training.maxSeqLength), _frozen_fraction(spec, strategy))
    return Run(gpu_type=gpu_type, strategy=strategy, parameters=parameters, devices=max(1, devices),
               formula_flops=flops, step_seconds=step_seconds, overhead_seconds=max(0.0, wall_seconds - step_seconds),
               peak_flops=catalog.get(gpu_type).peak_flops)
