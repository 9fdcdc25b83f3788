"""Validation metrics (pure): loss, accuracy and macro F1 for classification, perplexity for LM."""

import math

import torch

LOWER_IS_BETTER = {"val_loss", "val_perplexity"}


def accuracy(predictions: torch.Tensor, labels: torch.Tensor) -> float:
    return (predictions == labels).float().mean().item() if len(labels) else 0.0


def macro_f1(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> float:
    """F1 averaged over the classes that occur in labels or predictions."""
    scores = []
    for c in range(num_classes):
        predicted, actual = predictions == c, labels == c
        if not predicted.any() and not actual.any():
            continue
        tp = (predicted & actual).sum().item()
        precision = tp / max(predicted.sum().item(), 1)
        recall = tp / max(actual.sum().item(), 1)
        scores.append(0.0 if tp == 0 else 2 * precision * recall / (precision + recall))
    return sum(scores) / len(scores) if scores else 0.0


def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def improved(metric: str, value: float, best: float | None, min_delta: float) -> bool:
    if best is None:
        return True
    return value < best - min_delta if metric in LOWER_IS_BETTER else value > best + min_delta


def metrics_for_task(task: str) -> tuple[str, ...]:
    return ("val_loss", "val_perplexity") if task == "causal-lm" else ("val_loss", "val_accuracy", "val_f1")
