"""One job, start to end: check and prepare everything, train (in process or on Ray), save.

`prepare` does all the reading and checking, so bad input fails before the first step. It runs
where the training runs: in this process for one worker, inside each Ray worker for more (it is
deterministic), so workers need only the picklable `RunSettings`, and the Ray driver never reads
the data or builds the model; it checks what needs neither (`check_job`) before Ray starts.
"""

import json
import os
import sys
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from trainwright.api import Plan
from trainwright.api.spec import EarlyStoppingSpec
from trainwright.api.spec import need_name, needs_for
from trainwright.trainer import preemption
from trainwright.trainer.checkpoint import Checkpointer
from trainwright.trainer.data import (
    DataChoice, TokenizedSet, check_labels, check_texts, choose_data_path, pack_blocks, split_indices,
)
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.evaluation import metrics_for_task
from trainwright.trainer.loop import DEFAULT_LEARNING_RATES, LoopConfig, LoopResult, steps_per_epoch, train
from trainwright.trainer.records import dataset_files, read_records
from trainwright.trainer.reporting import build_reporters
from trainwright.trainer.settings import RunSettings, job_fingerprint
from trainwright.trainer.remote_checkpoints import RemoteCheckpoints
from trainwright.trainer.sources import Source, resolve_source
from trainwright.trainer.storage import Bucket

if TYPE_CHECKING:
    from trainwright.trainer.models import BuiltModel, TaskLabels
    from trainwright.trainer.shards import BlockSet


@dataclass
class Prepared:
    built: "BuiltModel"
    train_set: "TokenizedSet | BlockSet"
    validation: "TokenizedSet | BlockSet | None"
    labels: "TaskLabels"
    config: LoopConfig


@dataclass
class WorkerOutcome:
    """What rank 0 (or the single process) hands back: the loop's result and the model's size."""

    result: LoopResult
    trainable_parameters: int
    total_parameters: int

    @classmethod
    def from_dict(cls, data: dict) -> "WorkerOutcome":
        return cls(LoopResult(**data["result"]), data["trainable_parameters"], data["total_parameters"])


@dataclass
class RunOutcome:
    strategy: str
    workers: int
    result: LoopResult
    trainable_parameters: int
    total_parameters: int
    model_dir: str
    wall_seconds: float


def choose_device(plan: Plan) -> torch.device:
    return torch.device("cuda", torch.cuda.current_device()) if plan.gpus > 0 and torch.cuda.is_available() else torch.device("cpu")


def resolve_precision(requested: str, device: torch.device) -> str:
    if device.type != "cuda":
        return "fp32"
    if requested == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return requested


def loop_config(settings: RunSettings, device: torch.device) -> LoopConfig:
    """The loop's settings, each from the spec (whose defaults apply); none restated here. The
    hybrid fields pass through as they are: only a hybrid model has a backbone to freeze."""
    spec, strategy = settings.job.spec, settings.plan.strategy
    training = spec.training
    default_lr = DEFAULT_LEARNING_RATES["lora" if strategy == "fine-tune" and spec.model.adapter else strategy]
    early = training.earlyStopping
    stopping = early or EarlyStoppingSpec()  # its defaults; unused without a metric
    return LoopConfig(
        task=spec.model.task, epochs=training.epochs, batch_size=training.batchSize, grad_accum=training.gradientAccumulation,
        lr=training.learningRate or default_lr, weight_decay=training.weightDecay, warmup_ratio=training.warmupRatio,
        max_grad_norm=training.maxGradNorm, precision=resolve_precision(training.precision, device), compile=training.compile,
        seed=training.seed, freeze_epochs=training.freezeEpochs, backbone_lr_scale=training.backboneLrScale,
        early_stopping_metric=early.metric if early else None, patience=stopping.patience,
        min_delta=stopping.minDelta, restore_best=stopping.restoreBest,
        checkpoint_every=spec.checkpoint.everySteps, log_every=settings.log_every,
    )


def check_job(settings: RunSettings, config: LoopConfig) -> None:
    """What can be checked without the data or the model: the strategy's needs (the API's
    STRATEGY_NEEDS, the one place they are listed) and the early-stopping metric."""
    spec, strategy = settings.job.spec, settings.plan.strategy
    if needs := needs_for(spec.model, strategy):
        raise TrainerError(f"spec.model.{needs[0]}", f"strategy {strategy} needs {' and '.join(map(need_name, needs))}")
    if config.early_stopping_metric and config.early_stopping_metric not in metrics_for_task(spec.model.task):
        raise TrainerError("spec.training.earlyStopping.metric", f"{config.early_stopping_metric} is not measured for "
                           f"{spec.model.task}; use one of {', '.join(metrics_for_task(spec.model.task))}")
    if config.early_stopping_metric and spec.dataset.validationSplit == 0:
        raise TrainerError("spec.training.earlyStopping", "needs a validation set (spec.dataset.validationSplit > 0)")


def _build_model(settings: RunSettings, train_texts: Iterable[str], labels: "TaskLabels") -> "BuiltModel":
    # imported here, where a model is built: the Ray driver builds none, and transformers costs it ~200 MB
    from trainwright.trainer.models import (
        BuiltModel, apply_lora, build_scratch, load_hybrid, load_pretrained, scratch_tokenizer,
    )

    spec, strategy = settings.job.spec, settings.plan.strategy
    torch.manual_seed(spec.training.seed)  # initial weights depend on the seed alone
    task = spec.model.task  # check_job has seen to the strategy's needs
    if strategy == "scratch":
        arch = spec.model.architecture
        tokenizer = scratch_tokenizer(arch, train_texts)
        return BuiltModel(build_scratch(arch, task, tokenizer, labels), tokenizer, arch.contextLength)
    source = resolve_source(spec.model.source, settings.pvc_root, "spec.model.source")
    if strategy == "hybrid":
        return load_hybrid(source, task, spec.model.head, labels)
    built = load_pretrained(source, task, labels)
    return apply_lora(built, spec.model.adapter, task) if spec.model.adapter else built


def prepare(settings: RunSettings, device: torch.device, rank: int = 0) -> Prepared:
    """Read, check and tokenise the data and build the model: every user error surfaces here.
    Causal-lm corpora above `data.IN_MEMORY_MAX_BYTES` stream from the token cache; the rest, and
    every classification set, are read into memory. Rank 0 logs which, and why, in one line."""
    spec = settings.job.spec
    config = loop_config(settings, device)
    check_job(settings, config)
    dataset = resolve_source(spec.dataset.source, settings.pvc_root, "spec.dataset.source")
    files = None if dataset.kind in ("builtin", "hf") else dataset_files(dataset)  # local or s3://: sized, not read
    choice = choose_data_path(spec.model.task, dataset.kind, sum(f.size for f in files) if files is not None else None)
    if choice.streaming:
        prepared = _prepare_streaming(settings, config, files, choice, rank)
    else:
        prepared = _prepare_in_memory(settings, config, dataset, choice, rank)
    steps_per_epoch(len(prepared.train_set), config, settings.workers)  # fails early when no step fits
    return prepared


def _log(rank: int, line: str) -> None:
    if rank == 0:
        print(line, file=sys.stderr, flush=True)


def _prepare_in_memory(settings: RunSettings, config: LoopConfig, dataset, choice: DataChoice, rank: int) -> Prepared:
    spec = settings.job.spec
    records = read_records(dataset, spec.dataset.textField, spec.dataset.samples if dataset.kind == "builtin" else None)
    texts = check_texts(records, spec.dataset.textField)
    classification = spec.model.task == "sequence-classification"
    from trainwright.trainer.models import TaskLabels

    label_ids, labels = None, TaskLabels()
    if classification:
        checked = check_labels(records, spec.dataset.labelField, spec.model.numLabels)
        label_ids, labels = checked.ids, TaskLabels(checked.names)
    train_rows, validation_rows = split_indices(len(texts), spec.dataset.validationSplit, spec.training.seed)
    built = _build_model(settings, [texts[i] for i in train_rows], labels)
    tokenizer = built.tokenizer
    max_length = min(spec.training.maxSeqLength, built.max_length)

    def tokenized(rows: list[int]) -> TokenizedSet | None:
        if not rows:
            return None
        sequences = tokenizer([texts[i] for i in rows], truncation=True, max_length=max_length)["input_ids"]
        if classification:
            return TokenizedSet(sequences, [label_ids[i] for i in rows], tokenizer.pad_token_id, spec.model.task)
        blocks = pack_blocks(sequences, max_length, tokenizer.eos_token_id)
        return TokenizedSet(blocks, None, tokenizer.pad_token_id, spec.model.task) if blocks else None

    train_set = tokenized(train_rows)
    if train_set is None:
        raise TrainerError(spec.dataset.source, "too little text for one training sequence")
    validation = tokenized(validation_rows)
    _log(rank, f"data: in memory ({len(texts):,} rows, {_size(sum(len(t.encode()) for t in texts))} of text; {choice.why})")
    return Prepared(built, train_set, validation, labels, config)


def _prepare_streaming(settings: RunSettings, config: LoopConfig, files: list, choice: DataChoice, rank: int) -> Prepared:
    """Causal-lm from the token cache: built once (streaming the source), then memory-mapped."""
    from trainwright.trainer.models import TaskLabels
    from trainwright.trainer.token_cache import TokenSettings, cache_root, open_or_build, training_texts

    spec = settings.job.spec
    dataset = spec.dataset
    built = _build_model(settings, training_texts(files, dataset.textField, dataset.validationSplit, spec.training.seed),
                         TaskLabels())
    token_settings = TokenSettings(task=spec.model.task, text_field=dataset.textField,
                                   max_length=min(spec.training.maxSeqLength, built.max_length),
                                   validation_split=dataset.validationSplit, seed=spec.training.seed)
    cached = open_or_build(cache_root(os.environ, settings.checkpoint_dir), files, built.tokenizer, token_settings)
    sets = cached.sets
    how = (f"tokenised {cached.documents:,} documents in {cached.seconds:.1f} s" if cached.built
           else "found in the cache, nothing tokenised")
    if cached.torn:
        how += f" (the cached copy was torn: {cached.torn}; rebuilt)"
    _log(rank, f"data: streaming from {sets.shards} token shards ({_size(sets.bytes)}) in {sets.directory} "
               f"({choice.why}); {how}")
    if len(sets.train) == 0:
        raise TrainerError(dataset.source, "too little text for one training sequence")
    return Prepared(built, sets.train, sets.validation, TaskLabels(), config)


def _size(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count / 1e3:.1f} kB"


def save_model(built: "BuiltModel", directory: Path) -> None:
    """save_pretrained format; a LoRA model is saved merged (loadable as a plain model) and as an adapter."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    directory.mkdir(parents=True, exist_ok=True)
    model = built.model
    if hasattr(model, "merge_and_unload"):
        model.save_pretrained(directory.parent / "adapter")
        model = model.merge_and_unload()
    model.save_pretrained(directory)
    built.tokenizer.save_pretrained(directory)


def remote_checkpoints(settings: RunSettings) -> RemoteCheckpoints | None:
    """Where `spec.checkpoint.uri` copies the checkpoints to; None without one."""
    uri = settings.job.spec.checkpoint.uri
    return RemoteCheckpoints(Bucket(Source("s3", uri, uri, "spec.checkpoint.uri"))) if uri else None


def train_prepared(settings: RunSettings, prepared: Prepared, device: torch.device, rank: int = 0, world: int = 1) -> LoopResult:
    """The loop with this run's reporters and checkpoints; rank 0 saves the final model."""
    output = Path(settings.output_dir)
    reporter = None
    if rank == 0:
        reporter = build_reporters(settings.reporters, output_dir=output, metrics_port=settings.metrics_port,
                                   job_name=settings.job_name or settings.job.metadata.name, namespace=settings.namespace,
                                   title=f"{settings.job.metadata.name} ({settings.plan.strategy})")
    try:
        result = train(
            prepared.built, prepared.train_set, prepared.validation, prepared.config, device=device, reporter=reporter,
            checkpointer=Checkpointer(settings.checkpoint_dir, settings.job.spec.checkpoint.keep,
                                      fingerprint=job_fingerprint(settings), writer=rank == 0,
                                      remote=remote_checkpoints(settings)), rank=rank, world=world,
            num_labels=prepared.labels.count, should_stop=preemption.stop_requested,
        )
    finally:
        if reporter is not None:
            reporter.close()
    if rank == 0 and result.interrupted:  # the line a person reading a preempted pod's log wants
        why = preemption.reason() or "a stop request on another rank"
        written = (f"checkpoint written in {result.checkpoint_seconds:.2f} s: {result.checkpoint}" if result.checkpoint
                   else "no checkpoint written (none configured, or the write failed)")
        print(f"stopped at step {result.step} of {result.total_steps} ({why}); {written}", file=sys.stderr, flush=True)
    if rank == 0 and not result.interrupted:
        save_model(prepared.built, output / "model")
    return result


def train_in_worker(settings: RunSettings, device: torch.device, rank: int = 0, world: int = 1) -> WorkerOutcome:
    """Prepare and train: the single process, or one Ray worker."""
    prepared = prepare(settings, device, rank)
    trainable = prepared.built.trainable_parameters()
    total = sum(p.numel() for p in prepared.built.model.parameters())
    return WorkerOutcome(train_prepared(settings, prepared, device, rank=rank, world=world), trainable, total)


def train_in_ray_worker(settings: RunSettings, device: torch.device, rank: int, world: int) -> dict:
    """`train_in_worker` for `distributed.run_on_ray`, which hands rank 0's dict back to the driver."""
    return asdict(train_in_worker(settings, device, rank, world))


def run_job(settings: RunSettings) -> RunOutcome:
    """Check, train and save one job; Ray Train when the plan has more than one worker. A SIGTERM
    meanwhile stops it at the next step boundary with a checkpoint (`result.interrupted`)."""
    with preemption.handling_sigterm():
        return _run_job(settings)


def _run_job(settings: RunSettings) -> RunOutcome:
    started = time.perf_counter()
    output = Path(settings.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "job.json").write_text(json.dumps({**settings.job.model_dump(mode="json", by_alias=True, exclude_none=True)}, indent=2))
    device = choose_device(settings.plan)
    if settings.workers > 1:
        from trainwright.trainer.distributed import run_on_ray

        check_job(settings, loop_config(settings, device))  # before Ray starts; the data and model are the workers'
        worker = WorkerOutcome.from_dict(run_on_ray(settings, train_in_ray_worker))
    else:
        worker = train_in_worker(settings, device)
    outcome = RunOutcome(settings.plan.strategy, settings.workers, worker.result, worker.trainable_parameters,
                         worker.total_parameters, str(output / "model"), time.perf_counter() - started)
    (output / "result.json").write_text(json.dumps(asdict(outcome), indent=2))
    return outcome
