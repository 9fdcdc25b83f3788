"""`auto`: pick fine-tune, scratch or hybrid from the spec the way a practitioner would."""

from trainwright.api.spec import TrainingJobSpec

FINE_TUNE_MAX_SAMPLES = 1_000_000  # beyond this a pre-trained start stops mattering much
SCRATCH_MIN_SAMPLES = 10_000_000  # enough data to learn every parameter
SCRATCH_MIN_GPUS = 8  # enough compute to do it in reasonable time


def choose_strategy(spec: TrainingJobSpec, scratch_cost_usd: float | None) -> tuple[str, str]:
    """(strategy, reason). ``scratch_cost_usd`` is the estimated cost of training from scratch."""
    model, samples, gpus = spec.model, spec.dataset.samples, spec.resources.gpus
    if spec.strategy != "auto":
        return spec.strategy, f"strategy {spec.strategy} was asked for"
    if model.head:
        return "hybrid", "a head is given: pre-trained backbone plus new layers"
    if model.adapter:
        return "fine-tune", "an adapter is given: fine-tune the pre-trained model with it"
    if not model.source:
        return "scratch", "no pre-trained model is given: every parameter is learned from the data"
    if not model.architecture:
        return "fine-tune", "a pre-trained model is given and no architecture to train from scratch"
    if samples is None:
        return "fine-tune", "a pre-trained model is given and the data set size is unknown"
    if samples <= FINE_TUNE_MAX_SAMPLES:
        return "fine-tune", (
            f"a pre-trained model and a modest data set ({samples:,} samples <= "
            f"{FINE_TUNE_MAX_SAMPLES:,})"
        )
    if samples < SCRATCH_MIN_SAMPLES or gpus < SCRATCH_MIN_GPUS:
        return "fine-tune", (
            f"a pre-trained model; scratch needs >= {SCRATCH_MIN_SAMPLES:,} samples and "
            f">= {SCRATCH_MIN_GPUS} GPUs (have {samples:,} and {gpus})"
        )
    budget = spec.budget.maxCostUSD
    if budget is not None and scratch_cost_usd is not None and scratch_cost_usd > budget:
        return "fine-tune", (
            f"scratch would cost about ${scratch_cost_usd:,.0f}, over the ${budget:,.0f} budget"
        )
    return "scratch", (
        f"{samples:,} samples and {gpus} GPUs are enough to learn every parameter"
    )
