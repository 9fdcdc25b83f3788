"""One job, start to end: check and prepare everything, train (in process or on Ray), save.

`prepare` does all the reading and checking, so bad input fails before the first step. The
same `prepare` runs again inside each Ray worker (it is deterministic), so workers need only
the picklable `RunSettings`.
"""

import json
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from trainwright.api import Plan, TrainingJob
from trainwright.trainer.checkpoint import Checkpointer
from trainwright.trainer.data import TokenizedSet, check_labels, check_texts, pack_blocks, split_indices
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.evaluation import metrics_for_task
from trainwright.trainer.loop import LoopConfig, LoopResult, steps_per_epoch, train
from trainwright.trainer.models import (
    BuiltModel, TaskLabels, apply_lora, build_scratch, load_hybrid, load_pretrained, scratch_tokenizer,
)
from trainwright.trainer.records import read_records
from trainwright.trainer.reporting import build_reporters
from trainwright.trainer.sources import resolve_source

DEFAULT_LEARNING_RATES = {"fine-tune": 2e-5, "lora": 2e-4, "scratch": 3e-4, "hybrid": 1e-3}


@dataclass
class RunSettings:
    """Everything a worker needs; picklable, so Ray can ship it."""

    job: TrainingJob
    plan: Plan
    output_dir: str
    checkpoint_dir: str
    pvc_root: str = "/mnt/pvc"
    reporters: list[str] = field(default_factory=lambda: ["console", "jsonl"])
    metrics_port: int = 9090
    workers: int = 1
    namespace: str | None = None
    job_name: str | None = None  # defaults to metadata.name
    log_every: int | None = None


@dataclass
class Prepared:
    built: BuiltModel
    train_set: TokenizedSet
    validation: TokenizedSet | None
    labels: TaskLabels
    config: LoopConfig


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
    spec, strategy = settings.job.spec, settings.plan.strategy
    training = spec.training
    default_lr = DEFAULT_LEARNING_RATES["lora" if strategy == "fine-tune" and spec.model.adapter else strategy]
    early = training.earlyStopping
    return LoopConfig(
        task=spec.model.task, epochs=training.epochs, batch_size=training.batchSize, grad_accum=training.gradientAccumulation,
        lr=training.learningRate or default_lr, weight_decay=training.weightDecay, warmup_ratio=training.warmupRatio,
        max_grad_norm=training.maxGradNorm, precision=resolve_precision(training.precision, device), compile=training.compile,
        seed=training.seed, freeze_epochs=training.freezeEpochs if strategy == "hybrid" else 0,
        backbone_lr_scale=training.backboneLrScale if strategy == "hybrid" else 1.0,
        early_stopping_metric=early.metric if early else None, patience=early.patience if early else 2,
        min_delta=early.minDelta if early else 0.0, restore_best=early.restoreBest if early else False,
        checkpoint_every=spec.checkpoint.everySteps, log_every=settings.log_every,
    )


def _build_model(settings: RunSettings, train_texts: list[str], labels: TaskLabels) -> BuiltModel:
    spec, strategy = settings.job.spec, settings.plan.strategy
    torch.manual_seed(spec.training.seed)  # initial weights depend on the seed alone
    task = spec.model.task
    if strategy == "scratch":
        arch = spec.model.architecture
        if arch is None:
            raise TrainerError("spec.model.architecture", "strategy scratch needs model.architecture")
        tokenizer = scratch_tokenizer(arch, train_texts)
        return BuiltModel(build_scratch(arch, task, tokenizer, labels), tokenizer, arch.contextLength)
    if spec.model.source is None:
        raise TrainerError("spec.model.source", f"strategy {strategy} needs a pre-trained model.source")
    source = resolve_source(spec.model.source, settings.pvc_root, "spec.model.source")
    if strategy == "hybrid":
        if not spec.model.head:
            raise TrainerError("spec.model.head", "strategy hybrid needs model.head")
        return load_hybrid(source, task, spec.model.head, labels)
    built = load_pretrained(source, task, labels)
    return apply_lora(built, spec.model.adapter, task) if spec.model.adapter else built


def prepare(settings: RunSettings, device: torch.device) -> Prepared:
    """Read, check and tokenise the data and build the model: every user error surfaces here."""
    spec = settings.job.spec
    config = loop_config(settings, device)
    if config.early_stopping_metric and config.early_stopping_metric not in metrics_for_task(spec.model.task):
        raise TrainerError("spec.training.earlyStopping.metric", f"{config.early_stopping_metric} is not measured for "
                           f"{spec.model.task}; use one of {', '.join(metrics_for_task(spec.model.task))}")
    if config.early_stopping_metric and spec.dataset.validationSplit == 0:
        raise TrainerError("spec.training.earlyStopping", "needs a validation set (spec.dataset.validationSplit > 0)")
    dataset = resolve_source(spec.dataset.source, settings.pvc_root, "spec.dataset.source")
    records = read_records(dataset, spec.dataset.textField, spec.dataset.samples if dataset.kind == "builtin" else None)
    texts = check_texts(records, spec.dataset.textField)
    classification = spec.model.task == "sequence-classification"
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
    steps_per_epoch(len(train_set), config, settings.workers)  # fails early when no step fits
    return Prepared(built, train_set, tokenized(validation_rows), labels, config)


def save_model(built: BuiltModel, directory: Path) -> None:
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


class StopFlag:
    """Set by SIGTERM (pod eviction, `kubectl delete`): the loop checkpoints and returns."""

    def __init__(self):
        self.stop = False
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame) -> None:
        self.stop = True

    def __call__(self) -> bool:
        return self.stop


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
            checkpointer=Checkpointer(settings.checkpoint_dir, settings.job.spec.checkpoint.keep), rank=rank, world=world,
            num_labels=prepared.labels.count, should_stop=StopFlag(),
        )
    finally:
        if reporter is not None:
            reporter.close()
    if rank == 0 and not result.interrupted:
        save_model(prepared.built, output / "model")
    return result


def run_job(settings: RunSettings) -> RunOutcome:
    """Check, train and save one job; Ray Train when the plan has more than one worker."""
    started = time.perf_counter()
    output = Path(settings.output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "job.json").write_text(json.dumps({**settings.job.model_dump(mode="json", by_alias=True, exclude_none=True)}, indent=2))
    device = choose_device(settings.plan)
    prepared = prepare(settings, device)
    trainable = prepared.built.trainable_parameters()
    total = sum(p.numel() for p in prepared.built.model.parameters())
    if settings.workers > 1:
        from trainwright.trainer.distributed import run_on_ray

        del prepared  # the workers build their own
        result = run_on_ray(settings)
    else:
        result = train_prepared(settings, prepared, device)
    outcome = RunOutcome(settings.plan.strategy, settings.workers, result, trainable, total, str(output / "model"),
                         time.perf_counter() - started)
    (output / "result.json").write_text(json.dumps(asdict(outcome), indent=2))
    return outcome
