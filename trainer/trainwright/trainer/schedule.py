"""The learning-rate shape: linear warmup, then cosine decay to a tenth of the peak (pure)."""

import math

MIN_RATIO = 0.1


def lr_factor(step: int, total_steps: int, warmup_steps: int) -> float:
    """Multiplier on the peak learning rate before optimizer step `step` (0-based)."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    if total_steps <= warmup_steps:
        return 1.0
    progress = min(1.0, (step - warmup_steps) / (total_steps - warmup_steps))
    return MIN_RATIO + (1 - MIN_RATIO) * 0.5 * (1 + math.cos(math.pi * progress))
