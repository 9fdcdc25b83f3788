"""Time and cost from FLOPs: 6 x parameters x tokens, over the device's peak and a utilisation,
plus the overheads every run has: start-up, evaluation and checkpoints."""

from dataclasses import dataclass

from trainwright.planner.catalog import GpuType

ADAPTER_FLOP_FACTOR = 2 / 3  # no weight gradients for the frozen base
MULTI_NODE_EFFICIENCY = 0.9  # network overhead once a job spans nodes
# Uncalibrated overheads. Start-up: the image is on the node; the interpreter, imports, building
# or loading the model and tokenising the data take this long before the first step.
DEFAULT_STARTUP_SECONDS = 30.0
CHECKPOINT_BYTES_PER_SECOND = 500e6  # a network volume's sustained write
BYTES_PER_PARAMETER = 4  # fp32 weights; trained ones carry two fp32 Adam moments besides


@dataclass(frozen=True)
class Estimate:
    seconds: float
    cost_usd: float


def training_tokens(samples: int, validation_split: float, seq_length: int, epochs: int) -> int:
    return int(samples * (1 - validation_split)) * seq_length * epochs


def training_flops(parameters: int, tokens: int, frozen_fraction: float = 0.0) -> float:
    """6 N T, with the share of work done on a frozen base costing 2/3 (no weight gradients)."""
    full = 6.0 * parameters * tokens
    return full * (1 - frozen_fraction) + full * ADAPTER_FLOP_FACTOR * frozen_fraction


def estimate(flops: float, device: GpuType, devices: int, utilization: float, multi_node: bool) -> Estimate:
    efficiency = MULTI_NODE_EFFICIENCY if multi_node else 1.0
    seconds = flops / (device.peak_flops * utilization * devices * efficiency)
    return Estimate(seconds, seconds * devices * device.price_per_hour / 3600)


def evaluation_flops(parameters: int, samples: int, validation_split: float, seq_length: int, epochs: int) -> float:
    """A forward pass (2 N T) over the validation set after every epoch."""
    return 2.0 * parameters * int(samples * validation_split) * seq_length * epochs


def checkpoint_seconds(parameters: int, frozen_fraction: float, checkpoints: int) -> float:
    trained = parameters * (1 - frozen_fraction)
    return checkpoints * (parameters + 2 * trained) * BYTES_PER_PARAMETER / CHECKPOINT_BYTES_PER_SECOND
