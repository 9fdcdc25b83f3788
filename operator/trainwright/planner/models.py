"""Parameter counts of well-known pre-trained models, so estimates need no download."""

from trainwright.api.spec import TrainingJobSpec

KNOWN_PARAMETERS = {
    "distilbert-base-uncased": 66_000_000,
    "bert-base-uncased": 110_000_000,
    "bert-large-uncased": 340_000_000,
    "roberta-base": 125_000_000,
    "roberta-large": 355_000_000,
    "gpt2": 124_000_000,
    "gpt2-medium": 355_000_000,
    "gpt2-large": 774_000_000,
    "gpt2-xl": 1_558_000_000,
    "meta-llama/Llama-3.1-8B": 8_030_000_000,
    "mistralai/Mistral-7B-v0.1": 7_240_000_000,
    "Qwen/Qwen2.5-0.5B": 494_000_000,
}


def parameter_count(spec: TrainingJobSpec, strategy: str) -> int | None:
    """Parameters the job trains through (None when they cannot be known without the weights)."""
    model = spec.model
    if model.parameters:
        return model.parameters
    if strategy == "scratch" and model.architecture:
        return model.architecture.parameter_count()
    if model.source and model.source.startswith("hf://"):
        return KNOWN_PARAMETERS.get(model.source.removeprefix("hf://"))
    return None
