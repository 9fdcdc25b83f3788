"""The training loop: one readable function, the same in one process and in each Ray worker.

Speed habits (nanoGPT's): autocast to bf16/fp16 on GPU, fused AdamW on CUDA, optional
torch.compile, and no host sync inside a step: the loss stays on the device and is read only
at report intervals; a batch without padding goes to the model without an attention mask (the
same attention, through SDPA's causal flag instead of a mask tensor). Resumable: a checkpoint
holds model, optimizer, scheduler, RNG states and the `LoopState` (the step is the data
position: each epoch's order comes from the seed), under the keys named in `checkpoint`.
"""

import contextlib
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Callable

import torch
from torch import nn

from trainwright.api.spec import CheckpointSpec, EarlyStoppingSpec, TrainingSpec
from trainwright.api.status import Progress
from trainwright.trainer.checkpoint import (
    MODEL_KEY, OPTIMIZER_KEY, PROGRESS_KEY, RNG_KEY, SCALER_KEY, SCHEDULER_KEY, TOTAL_STEPS_KEY, Checkpointer,
    restore_rng_state, rng_state,
)
from trainwright.trainer.data import IGNORE_INDEX, TokenizedSet, epoch_order_tensor
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.evaluation import accuracy, improved, macro_f1, perplexity
from trainwright.trainer.reporting import Reporter, now_rfc3339
from trainwright.trainer.schedule import lr_factor

if TYPE_CHECKING:  # transformers, which models imports, costs the Ray driver ~200 MB: it builds no model
    from trainwright.trainer.models import BuiltModel
    from trainwright.trainer.shards import BlockSet


# Peak learning rates when spec.training.learningRate is unset (the spec's field description says the same).
DEFAULT_LEARNING_RATES = {"fine-tune": 2e-5, "lora": 2e-4, "scratch": 3e-4, "hybrid": 1e-3}


def _spec(model, name: str):
    """The spec's default for a field: the loop's defaults are the spec's, never restated."""
    return model.model_fields[name].default


@dataclass
class LoopConfig:
    """The loop's settings (runner.loop_config fills them from a job's spec); the defaults are the
    spec's (`trainwright.api.spec`), for the tests and benchmarks that build one directly."""

    task: str
    epochs: int = _spec(TrainingSpec, "epochs")
    batch_size: int = _spec(TrainingSpec, "batchSize")
    grad_accum: int = _spec(TrainingSpec, "gradientAccumulation")
    lr: float = DEFAULT_LEARNING_RATES["scratch"]
    weight_decay: float = _spec(TrainingSpec, "weightDecay")
    warmup_ratio: float = _spec(TrainingSpec, "warmupRatio")
    max_grad_norm: float = _spec(TrainingSpec, "maxGradNorm")
    precision: str = "fp32"  # resolved: bf16, fp16 or fp32
    compile: bool = _spec(TrainingSpec, "compile")
    compile_mode: str | None = None  # torch.compile's mode: None (default), "reduce-overhead" (CUDA graphs), "max-autotune"...
    omit_full_mask: bool = True  # no attention_mask for a batch without padding (exact; see model_inputs)
    seed: int = _spec(TrainingSpec, "seed")
    freeze_epochs: int = _spec(TrainingSpec, "freezeEpochs")  # hybrid: epochs with the backbone frozen
    backbone_lr_scale: float = _spec(TrainingSpec, "backboneLrScale")
    early_stopping_metric: str | None = None  # None: no early stopping (spec.training.earlyStopping unset)
    patience: int = _spec(EarlyStoppingSpec, "patience")
    min_delta: float = _spec(EarlyStoppingSpec, "minDelta")
    restore_best: bool = _spec(EarlyStoppingSpec, "restoreBest")  # early stopping: end with the best evaluation's weights
    checkpoint_every: int = _spec(CheckpointSpec, "everySteps")
    log_every: int | None = None  # steps between reports (host syncs); None: about 50 per run, at most 10 apart
    max_steps: int | None = None  # stop after this many steps in total (benchmarks)


@dataclass
class LoopState:
    """Where a run is, besides its tensors: kept in one object, saved under PROGRESS_KEY and
    restored from it, so a resumed run goes on exactly where the checkpoint was written."""

    step: int = 0  # optimizer steps done
    epochs_done: int = 0  # epochs trained and evaluated
    epoch: int = 0  # the data position: the epoch being read...
    position: int = 0  # ...and how many of this rank's samples of that epoch's order were read
    best: float | None = None  # early stopping: the best value of the metric so far
    bad_evals: int = 0  # evaluations since it last improved
    best_metrics: dict = field(default_factory=dict)  # the best evaluation's metrics
    metrics: dict = field(default_factory=dict)  # the last evaluation's (or, finished, the exported weights')
    finished: bool = False
    stopped_early: bool = False


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
    checkpoint: str | None = None  # the last checkpoint this run wrote (rank 0), None if none or it failed
    checkpoint_seconds: float | None = None  # how long writing it took


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


def model_inputs(data: "TokenizedSet | BlockSet", indices, device: torch.device, config: LoopConfig) -> dict[str, torch.Tensor]:
    """The batch for `model(**batch)`; without the all-ones attention mask when `omit_full_mask` is
    set and every sequence in it has the same length (no padding, as in packed causal-lm blocks),
    which the host knows without looking at the device. The attention is the same, but transformers
    can then give SDPA `is_causal=True` (the flash kernel) instead of building a mask tensor; under
    torch.compile it can do so only without a mask (and, on torch < 2.14, only with
    models.CAUSAL_SDPA). In eager mode transformers reads the ids or mask once per forward either
    way (a host sync: to see whether the mask is all ones, or to warn about padding without one)."""
    batch = data.collate(indices, device)
    if config.omit_full_mask and data.same_length(indices):
        del batch["attention_mask"]
    return batch


def evaluate(model: nn.Module, data: "TokenizedSet | BlockSet", config: LoopConfig, device: torch.device, num_labels: int,
             stop: Callable[[], bool] | None = None) -> dict[str, float] | None:
    """Loss over the whole set (per sample, or per token for LM) and the task's metrics; None when
    `stop()` (asked before each batch) says to stop."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    count = torch.zeros((), device=device, dtype=torch.float64)
    predictions, labels = [], []
    with torch.no_grad(), _autocast(device, config.precision):
        for start in range(0, len(data), config.batch_size):
            if stop is not None and stop():
                model.train(was_training)
                return None
            batch = model_inputs(data, range(start, min(start + config.batch_size, len(data))), device, config)
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
            try:
                self.checkpointer.save_best(weights)
                self.weights = None
                return
            except OSError as error:  # a full disk: in memory instead, and never an older best from disk
                self.checkpointer.forget_best()
                print(f"warning: best weights kept in memory only ({error.strerror or error})", file=sys.stderr, flush=True)
        self.weights = weights

    def restore(self, model: nn.Module) -> bool:
        weights = self.weights
        if weights is None and self.checkpointer is not None:
            weights = self.checkpointer.load_best()
        if weights is None:
            return False
        model.load_state_dict(weights)
        return True


def _control_group(world: int):
    """The process group the ranks agree on control decisions in (stopping): the default one when
    it is gloo (CPU), else a gloo group beside it, so that agreeing never syncs a GPU stream."""
    if world <= 1:
        return None
    import torch.distributed as dist

    return None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")


def _agreed(flag: bool, world: int, group) -> bool:
    """True on every rank when it is true on any: one all-reduce of one int (0.47 ms for 2 gloo
    ranks on a loaded 2-core machine; docs/trainer.md, Preemption)."""
    if world <= 1:
        return flag
    import torch.distributed as dist

    value = torch.tensor([int(flag)], dtype=torch.int32)
    dist.all_reduce(value, op=dist.ReduceOp.MAX, group=group)
    return bool(value.item())


def _shape_mismatch(saved: dict, current: dict) -> str | None:
    """Why a checkpoint's model weights cannot load into this model (None when they can)."""
    missing, unexpected = sorted(current.keys() - saved.keys()), sorted(saved.keys() - current.keys())
    if missing or unexpected:
        return (f"holds another model: {len(missing)} of this model's tensors missing (e.g. {(missing or ['-'])[0]}), "
                f"{len(unexpected)} unknown (e.g. {(unexpected or ['-'])[0]})")
    for name, tensor in current.items():
        if tuple(saved[name].shape) != tuple(tensor.shape):
            return f"holds another model: {name} is {tuple(saved[name].shape)} there, {tuple(tensor.shape)} here"
    return None


def _gathered(value, world: int, group) -> list:
    """Every rank's `value`, in rank order (on rank 0; the others get them too)."""
    if world <= 1:
        return [value]
    import torch.distributed as dist

    values = [None] * world
    dist.all_gather_object(values, value, group=group)
    return values


FORWARD_SHARE = 1 / 3  # a forward pass is about a third of a training step's work (2N of 6N FLOPs a token)


def seconds_left(steps_left: int, step_seconds: float, evaluations_left: int, evaluation_seconds: float | None,
                 validation_samples: int, samples_per_step: int) -> float:
    """The run's ETA: the steps left at the measured rate, and the evaluations still to come at
    the last one's measured time or, before the first, a forward pass over the validation set at
    the steps' speed. Without the evaluations a projection made early comes in short."""
    if evaluation_seconds is None:
        evaluation_seconds = validation_samples / samples_per_step * step_seconds * FORWARD_SHARE
    return steps_left * step_seconds + evaluations_left * evaluation_seconds


class DataWait:
    """Time the loop spends getting batches ready (reading, collating, copying to the device),
    per report interval: the input pipeline's share of each step."""

    def __init__(self):
        self.since = 0.0
        self.steps = 0
        self.began = self.mark = time.perf_counter()

    def start(self) -> None:
        self.mark = time.perf_counter()

    def stop(self) -> None:
        self.since += time.perf_counter() - self.mark

    def restart(self) -> None:
        self.since, self.steps, self.began = 0.0, 0, time.perf_counter()

    def interval(self) -> dict[str, float]:
        """`data_wait_seconds` (per step) and `data_wait_share` (of the wall time) since the last call."""
        elapsed, steps, since = time.perf_counter() - self.began, self.steps, self.since
        self.restart()
        if not steps:
            return {}
        return {"data_wait_seconds": since / steps, "data_wait_share": since / elapsed if elapsed > 0 else 0.0}


def _set_backbone_frozen(backbone: list[nn.Parameter], frozen: bool) -> None:
    for parameter in backbone:
        parameter.requires_grad_(not frozen)


def train(
    built: "BuiltModel", train_set: "TokenizedSet | BlockSet", validation: "TokenizedSet | BlockSet | None", config: LoopConfig, *,
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

    control = _control_group(world)
    state = LoopState()
    best_weights = BestWeights(checkpointer) if config.restore_best and config.early_stopping_metric and rank == 0 else None

    def fits(saved: dict) -> str | None:
        """Why a checkpoint does not fit this run (None when it does)."""
        if saved[TOTAL_STEPS_KEY] != total:
            return f"written for a run of {saved[TOTAL_STEPS_KEY]} steps, this one has {total}"
        if len(saved[RNG_KEY]) != world:
            return f"written by {len(saved[RNG_KEY])} worker(s), this run has {world}"
        return _shape_mismatch(saved[MODEL_KEY], model.state_dict())

    found = checkpointer.resume(fits) if checkpointer else None
    resumed_steps = _gathered(found[1][PROGRESS_KEY]["step"] if found else 0, world, control)
    if len(set(resumed_steps)) > 1:  # e.g. a volume that shows the ranks different files
        raise TrainerError(str(checkpointer.directory), f"the ranks found different checkpoints (steps {resumed_steps})")
    if found is not None:
        latest, saved = found
        model.load_state_dict(saved[MODEL_KEY])
        optimizer.load_state_dict(saved[OPTIMIZER_KEY])
        scheduler.load_state_dict(saved[SCHEDULER_KEY])
        scaler.load_state_dict(saved[SCALER_KEY])
        restore_rng_state(saved[RNG_KEY][rank])  # each rank's own: dropout draws as many numbers as its batches hold
        state = LoopState(**saved[PROGRESS_KEY])
        if "position" not in saved[PROGRESS_KEY]:  # written before the position was kept: it follows from the step
            state.epoch = state.epochs_done
            state.position = (state.step - state.epochs_done * per_epoch) * config.grad_accum * config.batch_size
        if rank == 0:  # the one line a person looking at a restarted pod's log wants first
            print(f"resumed from {latest} at step {state.step} of {total}", file=sys.stderr, flush=True)

    def save_checkpoint() -> str | None:
        """Rank 0 writes; every rank calls it (at the same steps), to hand rank 0 its RNG state."""
        if checkpointer is None:
            return None
        rng = _gathered(rng_state(), world, control)
        if rank != 0:
            return None
        try:
            path = checkpointer.save(state.step, {
                TOTAL_STEPS_KEY: total, PROGRESS_KEY: asdict(state), MODEL_KEY: model.state_dict(),
                OPTIMIZER_KEY: optimizer.state_dict(), SCHEDULER_KEY: scheduler.state_dict(),
                SCALER_KEY: scaler.state_dict(), RNG_KEY: rng,
            })
        except OSError as error:  # a full disk: the earlier checkpoints stand, training goes on
            kept = checkpointer.latest()
            print(f"warning: checkpoint at step {state.step} not written ({error.strerror or error}); "
                  f"{'the newest is still ' + kept.name if kept else 'there is none yet'}", file=sys.stderr, flush=True)
            return None
        if reporter:
            reporter.on_checkpoint(state.step, str(path))
        return str(path)

    def stop_agreed() -> bool:
        return _agreed(should_stop(), world, control)  # every rank stops at the same step

    frozen = None
    forward, ddp = model, None
    loss_sum = torch.zeros((), device=device)
    loss_terms, last_loss = 0, None
    samples_per_step = config.batch_size * config.grad_accum * world
    run_start, run_steps, samples, tokens = time.perf_counter(), 0, 0, 0
    interrupted = False
    waiting = DataWait()
    evaluating = validation is not None and len(validation) > 0
    evaluation_seconds = None  # the last evaluation's, for the ETA

    def report(epoch: int) -> None:
        nonlocal loss_sum, loss_terms, last_loss
        if loss_terms:
            last_loss = (loss_sum / loss_terms).item()  # the one host sync, at report intervals
            loss_sum.zero_()
            loss_terms = 0
        wait = waiting.interval()
        if reporter is None or rank != 0:
            return
        elapsed = time.perf_counter() - run_start
        rate = run_steps / elapsed if elapsed > 0 and run_steps else None
        evaluations_left = max(0, min(config.epochs, total // per_epoch) - state.epochs_done) if evaluating else 0
        metrics = {**{k: v for k, v in state.metrics.items() if k.startswith("val_")}, **wait}
        reporter.on_step(Progress(
            step=state.step, totalSteps=total, epoch=epoch, ratio=round(state.step / total, 4) if total else None, loss=last_loss,
            samplesPerSecond=rate * samples_per_step if rate else None,
            etaSeconds=seconds_left(total - state.step, 1 / rate, evaluations_left, evaluation_seconds,
                                    len(validation) if evaluating else 0,
                                    config.batch_size * config.grad_accum) if rate else None,
            metrics=metrics or None, updatedAt=now_rfc3339(),
            stepSeconds=round(elapsed, 3), samplesSeen=samples,
        ))

    for epoch in range(state.epochs_done, config.epochs):
        if state.finished:
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
                forward = torch.compile(forward, mode=config.compile_mode)
        order = epoch_order_tensor(len(train_set), config.seed, epoch, rank, world)
        micro = config.batch_size
        per_step = micro * config.grad_accum  # samples of this rank's order an optimizer step reads
        if state.epoch != epoch:  # a new epoch (a resumed one goes on at its saved position)
            state.epoch, state.position = epoch, 0
        for step_in_epoch in range(state.position // per_step, per_epoch):
            if state.step >= total:
                break
            for m in range(config.grad_accum):
                start = state.position + m * micro
                indices = order[start:start + micro].tolist()
                waiting.start()
                batch = model_inputs(train_set, indices, device, config)
                waiting.stop()
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
            state.step += 1
            state.position += per_step
            waiting.steps += 1
            run_steps += 1
            samples += samples_per_step
            if state.step % log_every == 0 or state.step == total:
                report(epoch)
            if state.step % config.checkpoint_every == 0:
                save_checkpoint()
            if stop_agreed():
                interrupted = True
                break
        if interrupted:
            break
        seconds = time.perf_counter() - run_start
        if evaluating and state.step == (epoch + 1) * per_epoch:
            measured = evaluate(model, validation, config, device, num_labels, stop=stop_agreed)
            if measured is None:  # stopped in the middle: a resumed run evaluates this epoch again
                interrupted = True
                break
            evaluation_seconds = time.perf_counter() - run_start - seconds
            state.metrics = {"epoch": float(epoch), **measured}
            if reporter and rank == 0:
                reporter.on_eval(state.metrics)
            if config.early_stopping_metric:
                value = state.metrics[config.early_stopping_metric]
                if improved(config.early_stopping_metric, value, state.best, config.min_delta):
                    state.best, state.bad_evals, state.best_metrics = value, 0, dict(state.metrics)
                    if best_weights is not None:
                        best_weights.keep(model)
                else:
                    state.bad_evals += 1
        state.epochs_done = epoch + 1
        state.epoch, state.position = epoch + 1, 0
        waiting.restart()  # the next interval's clock starts after evaluation
        run_start += time.perf_counter() - run_start - seconds  # evaluation is not training time
        if config.early_stopping_metric and state.bad_evals >= config.patience:
            state.stopped_early = True
            break
        if state.step >= total:  # max_steps
            break
    if not interrupted and not state.finished:
        state.finished = True
        if best_weights is not None and state.best_metrics and best_weights.restore(model):
            state.metrics = state.best_metrics  # what the exported model scored
    report(max(0, min(state.epochs_done, config.epochs) - (0 if interrupted else 1)))
    seconds = time.perf_counter() - run_start
    writing = time.perf_counter()
    final = save_checkpoint()
    return LoopResult(
        step=state.step, total_steps=total, epochs_done=state.epochs_done, loss=last_loss, metrics=state.metrics,
        stopped_early=state.stopped_early, interrupted=interrupted, seconds=seconds, samples=samples, tokens=tokens,
        checkpoint=final, checkpoint_seconds=time.perf_counter() - writing if final else None,
    )
