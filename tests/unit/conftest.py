import copy

import pytest

VALID_JOB = {
    "apiVersion": "trainwright.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "sentiment", "namespace": "ml"},
    "spec": {
        "strategy": "fine-tune",
        "model": {"source": "hf://distilbert-base-uncased", "task": "sequence-classification",
                  "adapter": {"type": "lora", "rank": 16}},
        "dataset": {"source": "pvc://data/reviews.jsonl", "samples": 25000, "validationSplit": 0.1},
        "resources": {"gpus": 1, "gpuType": "nvidia-h100"},
        "training": {"epochs": 3, "batchSize": 32, "learningRate": 2e-5},
        "budget": {"maxCostUSD": 50, "maxDuration": "6h"},
    },
}


@pytest.fixture
def job_dict():
    """A fresh, valid fine-tune manifest as a dict, for tests to mutate."""
    return copy.deepcopy(VALID_JOB)
