"""The training loop: one readable function, the same in one process and in each Ray worker.

Speed habits (nanoGPT's): autocast to bf16/fp16 on GPU, fused AdamW on CUDA, optional
torch.compile, and no host sync inside a step: the loss stays on the device and is read only
at report intervals. Resumable: a checkpoint holds model, optimizer, scheduler, RNG states and
the data position (step; each epoch's order comes from the seed).
"""

import contextlib
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from trainwright.api.status import Progress
from trainwright.trainer.checkpoint import Checkpointer, restore_rng_state, rng_state
from trainwright.trainer.data import IGNORE_INDEX, TokenizedSet, epoch_order
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.evaluation import accuracy, improved, macro_f1, perplexity
from trainwright.trainer.models import BuiltModel
from trainwright.trainer.reporting import Reporter, now_rfc3339
from trainwright.trainer.schedule import lr_factor


@dataclass
class LoopConfig:
    task: str
    epochs: int = 1
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = 3e-4
    weight_decay: float = 0.01
    warmup_ratio: float = 0.05
    max_grad_norm: float = 1.0
    precision: str = "fp32"  # resolved: bf16, fp16 or fp32
    compile: bool = False
    seed: int = 0
    freeze_epochs: int = 0  # hybrid: epochs with the backbone frozen
    backbone_lr_scale: float = 1.0
    early_stopping_metric: str | None = None
    patience: int = 2
    min_delta: float = 0.0
    restore_best: bool = False  # early stopping: end with the weights of the best evaluation
    checkpoint_every: int = 500
    log_every: int | None = None  # steps between reports (host syncs); None: about 50 per run, at most 10 apart
    max_steps: int | None = None  # stop after this many steps in total (benchmarks)


@dataclass
class LoopResult:
    step: int
    total_steps: int
    epochs_done: int
    loss: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    stopped_early: bool = False
    interrupted: bool = False
    seconds: float = 0.0  # wall time of this process's steps (not evaluation)
    samples: int = 0  # over all workers
    tokens: int = 0  # over all workers, padding excluded


def steps_per_epoch(rows: int, config: LoopConfig, world: int) -> int:
    steps = (rows // world) // (config.batch_size * config.grad_accum)
    if steps == 0:
        raise TrainerError("spec.training.batchSize", f"{rows} training rows make no full step of batchSize {config.batch_size}"
                           f" x gradientAccumulation {config.grad_accum} x {world} worker(s)")
    return steps


def _parameter_groups(model: nn.Module, backbone: list[nn.Parameter], config: LoopConfig) -> list[dict]:
    """Decay matrices, not biases and norms; the backbone (hybrid) at a scaled learning rate."""
    backbone_ids = {id(p) for p in backbone}
    groups: dict[tuple[bool, bool], list] = {}
    for parameter in model.parameters():
        is_backbone = id(parameter) in backbone_ids
        if not parameter.requires_grad and not is_backbone:
            continue  # frozen for good (LoRA's base)
        groups.setdefault((is_backbone, parameter.dim() >= 2), []).append(parameter)
    return [
        {"params": params, "lr": config.lr * (config.backbone_lr_scale if is_backbone else 1.0),
         "weight_decay": config.weight_decay if decays else 0.0}
        for (is_backbone, decays), params in sorted(groups.items())
    ]


def _autocast(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def evaluate(model: nn.Module, data: TokenizedSet, config: LoopConfig, device: torch.device, num_labels: int) -> dict[str, float]:
    """Loss over the whole set (per sample, or per token for LM) and the task's metrics."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    count = torch.zeros((), device=device, dtype=torch.float64)
    predictions, labels = [], []
    with torch.no_grad(), _autocast(device, config.precision):
        for start in range(0, len(data), config.batch_size):
            batch = data.collate(range(start, min(start + config.batch_size, len(data))), device)
            output = model(**batch)
            if config.task == "causal-lm":
                n = (batch["labels"][:, 1:] != IGNORE_INDEX).sum()
            else:
                n = torch.tensor(len(batch["labels"]), device=device)
                predictions.append(output.logits.argmax(-1))
                labels.append(batch["labels"])
            loss_sum += output.loss.double() * n
            count += n
    model.train(was_training)
    loss = (loss_sum / count.clamp(min=1)).item()
    if config.task == "causal-lm":
        return {"val_loss": loss, "val_perplexity": perplexity(loss)}
    predicted, actual = torch.cat(predictions).cpu(), torch.cat(labels).cpu()
    return {"val_loss": loss, "val_accuracy": accuracy(predicted, actual), "val_f1": macro_f1(predicted, actual, num_labels)}


class BestWeights:
    """The weights of the best evaluation so far, for early stopping to end with: on disk beside
    the checkpoints when there are any (a resumed run still has them), else in memory."""

    def __init__(self, checkpointer: Checkpointer | None):
        self.checkpointer, self.weights = checkpointer, None

    def keep(self, model: nn.Module) -> None:
        weights = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if self.checkpointer is not None:
            self.checkpointer.save_best(weights)
        else:
            self.weights = weights

    def restore(self, model: nn.Module) -> bool:
        weights = self.checkpointer.load_best() if self.checkpointer is not None else self.weights
        if weights is None:
            return False
        model.load_state_dict(weights)
        return True


def _set_backbone_frozen(backbone: list[nn.Parameter], frozen: bool) -> None:
    for parameter in backbone:
        parameter.requires_grad_(not frozen)


def train(
    built: BuiltModel, train_set: TokenizedSet, validation: TokenizedSet | None, config: LoopConfig, *,
    device: torch.device, reporter: Reporter | None = None, checkpointer: Checkpointer | None = None,
    rank: int = 0, world: int = 1, num_labels: int = 0, should_stop: Callable[[], bool] = lambda: False,
) -> LoopResult:
    model = built.model.to(device)
    model.train()
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # fp32 leftovers on tensor cores
        torch.backends.cudnn.allow_tf32 = True
    per_epoch = steps_per_epoch(len(train_set), config, world)
    total = per_epoch * config.epochs
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    log_every = config.log_every or max(1, min(10, total // 50))
    groups = _parameter_groups(model, built.backbone, config)
    cuda = device.type == "cuda"
    optimizer = torch.optim.AdamW(groups, lr=config.lr, fused=cuda, foreach=not cuda)  # one kernel per group, not per tensor
    warmup = int(total * config.warmup_ratio)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total, warmup))
    scaler = torch.amp.GradScaler(device.type, enabled=config.precision == "fp16")
    trainable = [p for g in groups for p in g["params"]]

    step, epochs_done, best, bad_evals, metrics, finished = 0, 0, None, 0, {}, False
    best_metrics: dict = {}
    best_weights = BestWeights(checkpointer) if config.restore_best and config.early_stopping_metric and rank == 0 else None
    latest = checkpointer.latest() if checkpointer else None
    if latest is not None:
        state = checkpointer.load(latest)
        if state["total_steps"] != total:
            raise TrainerError(str(latest), f"was written for {state['total_steps']} steps, this run has {total}; "
                               "use a fresh checkpoint directory for a changed job")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        restore_rng_state(state["rng"])
        step, epochs_done, best, bad_evals = state["step"], state["epochs_done"], state["best"], state["bad_evals"]
        metrics, finished = state["metrics"], state["finished"]
        best_metrics = state.get("best_metrics", {})
        if rank == 0:  # the one line a person looking at a restarted pod's log wants first
            print(f"resumed from {latest} at step {step} of {total}", file=sys.stderr, flush=True)

    def save_checkpoint() -> None:
        if checkpointer is None or rank != 0:
            return
        path = checkpointer.save(step, {
            "step": step, "total_steps": total, "epochs_done": epochs_done, "best": best, "bad_evals": bad_evals,
            "best_metrics": best_metrics, "metrics": metrics, "finished": finished, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": rng_state(),
        })
        if reporter:
            reporter.on_checkpoint(step, str(path))

    frozen = None
    forward, ddp = model, None
    loss_sum = torch.zeros((), device=device)
    loss_terms, last_loss = 0, None
    samples_per_step = config.batch_size * config.grad_accum * world
    run_start, run_steps, samples, tokens = time.perf_counter(), 0, 0, 0
    stopped_early = interrupted = False

    def report(epoch: int) -> None:
        nonlocal loss_sum, loss_terms, last_loss
        if loss_terms:
            last_loss = (loss_sum / loss_terms).item()  # the one host sync, at report intervals
            loss_sum.zero_()
            loss_terms = 0
        if reporter is None or rank != 0:
            return
        elapsed = time.perf_counter() - run_start
        rate = run_steps / elapsed if elapsed > 0 and run_steps else None
        reporter.on_step(Progress(
            step=step, totalSteps=total, epoch=epoch, ratio=step / total if total else None, loss=last_loss,
            samplesPerSecond=rate * samples_per_step if rate else None, etaSeconds=(total - step) / rate if rate else None,
            metrics={k: v for k, v in metrics.items() if k.startswith("val_")} or None, updatedAt=now_rfc3339(),
        ))

    for epoch in range(epochs_done, config.epochs):
        if finished or step >= total:
            break
        want_frozen = bool(built.backbone) and epoch < config.freeze_epochs
        if want_frozen != frozen:
            _set_backbone_frozen(built.backbone, want_frozen)
            frozen = want_frozen
            ddp = None
            if world > 1:  # DDP registers the trainable parameters when it wraps the model
                ddp = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
            forward = ddp if ddp is not None else model
            if config.compile:
                forward = torch.compile(forward)
        order = epoch_order(len(train_set), config.seed, epoch, rank, world)
        micro = config.batch_size
        for step_in_epoch in range(step - epoch * per_epoch, per_epoch):
            if step >= total:
                break
            for m in range(config.grad_accum):
                start = (step_in_epoch * config.grad_accum + m) * micro
                indices = order[start:start + micro]
                batch = train_set.collate(indices, device)
                tokens += train_set.tokens_in(indices) * world
                sync = ddp is None or m == config.grad_accum - 1
                with (contextlib.nullcontext() if sync else ddp.no_sync()), _autocast(device, config.precision):
                    loss = forward(**batch).loss / config.grad_accum
                scaler.scale(loss).backward()
                loss_sum += loss.detach()
            loss_terms += 1
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainable, config.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            run_steps += 1
            samples += samples_per_step
            if step % log_every == 0 or step == total:
                report(epoch)
            if step % config.checkpoint_every == 0:
                save_checkpoint()
            if should_stop():
                interrupted = True
                break
        if interrupted:
            break
        seconds = time.perf_counter() - run_start
        if validation is not None and len(validation) and step == (epoch + 1) * per_epoch:
            metrics = {"epoch": float(epoch), **evaluate(model, validation, config, device, num_labels)}
            if reporter and rank == 0:
                reporter.on_eval(metrics)
            if config.early_stopping_metric:
                value = metrics[config.early_stopping_metric]
                if improved(config.early_stopping_metric, value, best, config.min_delta):
                    best, bad_evals, best_metrics = value, 0, dict(metrics)
                    if best_weights is not None:
                        best_weights.keep(model)
                else:
                    bad_evals += 1
        epochs_done = epoch + 1
        run_start += time.perf_counter() - run_start - seconds  # evaluation is not training time
        if config.early_stopping_metric and bad_evals >= config.patience:
            stopped_early = True
            break
    if not interrupted:
        finished = True
        if best_weights is not None and best_metrics and best_weights.restore(model):
            metrics = best_metrics  # what the exported model scored
    report(max(0, min(epochs_done, config.epochs) - (0 if interrupted else 1)))
    save_checkpoint()
    return LoopResult(
        step=step, total_steps=total, epochs_done=epochs_done, loss=last_loss, metrics=metrics, stopped_early=stopped_early,
        interrupted=interrupted, seconds=time.perf_counter() - run_start, samples=samples, tokens=tokens,
    )
