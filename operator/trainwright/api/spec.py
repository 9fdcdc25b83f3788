"""The TrainingJob spec: the one source of truth for the CRD schema, `validate` and the trainer.

Field names (camelCase on the wire) are a contract with users' manifests.
"""

from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

from trainwright.api.durations import DURATION_PATTERN, parse_duration
from trainwright.api.rules import CrossFieldRule, check_rules

Strategy = Literal["fine-tune", "scratch", "hybrid", "auto"]
ConcreteStrategy = Literal["fine-tune", "scratch", "hybrid"]
Task = Literal["causal-lm", "sequence-classification"]

SOURCE_PATTERN = r"^(hf://[A-Za-z0-9][A-Za-z0-9._/-]*|pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?(/.*)?|s3://[a-z0-9][a-z0-9.-]*(/.*)?|builtin:[a-z0-9][a-z0-9-]*|file://.+|/.+|\..*)$"
SOURCE_HELP = "hf://ID, pvc://CLAIM/PATH, s3://BUCKET/KEY, builtin:NAME, or a local path"
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|k|M|G|T)?$"
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SECRET_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"  # a DNS subdomain, as Secret names are


# What each strategy needs in spec.model, listed once: the CRD's CEL rules (`_needs_rule`), the
# planner's --compare and the trainer's check (`needs_for`) are all made from it.
STRATEGY_NEEDS: dict[str, tuple[str, ...]] = {  # model field -> the strategies that need it
    "architecture": ("scratch",),
    "source": ("fine-tune", "hybrid"),
    "head": ("hybrid",),
}
_NEED_NAMES = {"source": "a pre-trained model.source", "head": "model.head (new layers)"}


def need_name(field: str) -> str:
    """How a message names a needed model field."""
    return _NEED_NAMES.get(field, f"model.{field}")


def needs_for(model, strategy: str) -> list[str]:
    """The fields of ``model`` (a ModelSpec) that ``strategy`` needs and it lacks, as STRATEGY_NEEDS names them."""
    return [field for field, strategies in STRATEGY_NEEDS.items()
            if strategy in strategies and getattr(model, field) is None]


def _needs_rule(field: str) -> CrossFieldRule:
    """`STRATEGY_NEEDS[field]` as a rule on the spec: CEL for the API server, Python for the rest."""
    strategies = STRATEGY_NEEDS[field]
    if len(strategies) == 1:
        cel = f"self.strategy != '{strategies[0]}' || has(self.model.{field})"
        message = f"strategy {strategies[0]} needs {need_name(field)}"
    else:
        cel = f"!(self.strategy in {list(strategies)}) || has(self.model.{field})"
        message = f"strategies {' and '.join(strategies)} need {need_name(field)}"
    return CrossFieldRule(cel, f"model.{field}", message,
                          lambda spec: spec.strategy not in strategies or getattr(spec.model, field) is not None)


class ApiModel(BaseModel):
    """Shared config: camelCase on the wire, unknown fields refused, values checked on assignment."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        validate_assignment=True,
    )
    cel_rules: ClassVar[tuple[CrossFieldRule, ...]] = ()

    @model_validator(mode="before")
    @classmethod
    def _drop_null_fields(cls, data):
        """A field set to null is as if absent, as the API server sees it: none of ours is
        nullable, so it gets its default (a required one is dropped, to be reported missing).
        The default is put in rather than the key dropped because an assignment (validated too)
        passes the whole object here, and a dropped key would leave the object without the
        attribute. Unknown fields stay, to be refused."""
        if not isinstance(data, dict):
            return data
        fields = {key: f for name, f in cls.model_fields.items() for key in (name, f.alias) if key}
        return {k: v if v is not None or k not in fields else fields[k].get_default(call_default_factory=True)
                for k, v in data.items() if v is not None or k not in fields or not fields[k].is_required()}

    @model_validator(mode="before")
    @classmethod
    def _integral_floats_as_integers(cls, data):
        """2.0 for an integer field is 2, as the API server's schema check takes it (JSON has one
        number type); strict parsing would refuse it, and the two must agree. 2.5 stays refused."""
        if not isinstance(data, dict):
            return data
        integers = {key for name, f in cls.model_fields.items() if f.annotation in (int, int | None)
                    for key in (name, f.alias) if key}
        return {k: int(v) if k in integers and isinstance(v, float) and v.is_integer() else v for k, v in data.items()}

    @model_validator(mode="after")
    def _check_cel_rules(self):
        check_rules(self, self.cel_rules)
        return self

    def to_wire(self) -> dict:
        """The manifest form: camelCase keys, unset optional fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class AdapterSpec(ApiModel):
    """A parameter-efficient adapter; only the adapter's weights train."""

    type: Literal["lora"] = Field("lora", description="Adapter kind. Only LoRA for now.")
    rank: int = Field(16, ge=1, le=1024, description="LoRA rank r.")
    alpha: float | None = Field(None, gt=0, le=4096, description="LoRA alpha; defaults to 2 x rank.")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the adapter's input.")
    targetModules: list[str] | None = Field(
        None, max_length=32, description="Module names to adapt; defaults to the model family's attention projections."
    )


class HeadLayer(ApiModel):
    """One new task-specific layer put on top of a pre-trained backbone (hybrid)."""

    type: Literal["linear", "dropout", "relu", "gelu", "tanh", "layernorm"] = Field(
        description="Layer kind."
    )
    size: int | None = Field(None, ge=1, le=65536, description="Output features; required for linear.")
    p: float | None = Field(None, ge=0, lt=1, description="Drop probability; required for dropout.")

    cel_rules = (
        CrossFieldRule("self.type != 'linear' || has(self.size)", "size", "a linear layer needs size",
                       lambda h: h.type != "linear" or h.size is not None),
        CrossFieldRule("self.type != 'dropout' || has(self.p)", "p", "a dropout layer needs p",
                       lambda h: h.type != "dropout" or h.p is not None),
    )


class ArchitectureSpec(ApiModel):
    """A built-in architecture trained from random weights (scratch)."""

    family: Literal["gpt", "classifier"] = Field(
        description="gpt: a GPT-style decoder; classifier: a small transformer encoder with a classification head."
    )
    layers: int = Field(ge=1, le=256, description="Transformer blocks.")
    hidden: int = Field(ge=8, le=65536, description="Hidden width.")
    heads: int | None = Field(None, ge=1, le=512, description="Attention heads; defaults to hidden / 64 (at least 1).")
    vocabSize: int = Field(50257, ge=2, le=1_000_000, description="Vocabulary size.")
    contextLength: int = Field(1024, ge=8, le=1_048_576, description="Longest sequence the model sees.")

    cel_rules = (
        CrossFieldRule("!has(self.heads) || self.hidden % self.heads == 0", "hidden",
                       "hidden must be a multiple of heads",
                       lambda a: a.heads is None or a.hidden % a.heads == 0),
    )

    def parameter_count(self) -> int:
        """Weights of the decoder stack plus embeddings (the usual 12 L h^2 + (V + T) h)."""
        return 12 * self.layers * self.hidden**2 + (self.vocabSize + self.contextLength) * self.hidden


class ModelSpec(ApiModel):
    source: str | None = Field(
        None, max_length=1024, pattern=SOURCE_PATTERN,
        description=f"Pre-trained weights: {SOURCE_HELP}. Required for fine-tune and hybrid.",
    )
    task: Task = Field(description="What the model learns to do.")
    numLabels: int | None = Field(None, ge=2, le=100_000, description="Classes, for sequence-classification; read from the data when absent.")
    parameters: int | None = Field(
        None, ge=1, le=10**13,
        description="Parameter count hint for estimates when the source is not a known model.",
    )
    adapter: AdapterSpec | None = Field(None, description="Fine-tune with an adapter; absent means full fine-tuning.")
    head: list[HeadLayer] | None = Field(None, min_length=1, max_length=32, description="New layers on the backbone (hybrid only).")
    architecture: ArchitectureSpec | None = Field(None, description="The model to build (scratch only).")


class DatasetSpec(ApiModel):
    source: str = Field(max_length=1024, pattern=SOURCE_PATTERN, description=f"Training data: {SOURCE_HELP}. Files: jsonl, csv, parquet, txt.")
    samples: int | None = Field(None, ge=1, le=10**12, description="Approximate number of samples: a hint for auto and for estimates.")
    validationSplit: float = Field(0.1, ge=0, lt=1, description="Fraction held out for validation.")
    textField: str = Field("text", min_length=1, max_length=128, description="Field holding the input text.")
    labelField: str = Field("label", min_length=1, max_length=128, description="Field holding the label (classification).")


class ResourcesSpec(ApiModel):
    gpus: int = Field(1, ge=0, le=4096, description="GPUs asked for; 0 runs on CPU. The planner may size a fine-tune down to one.")
    gpuType: str = Field("nvidia-h100", min_length=1, max_length=64, pattern=NAME_PATTERN, description="A GPU type from the catalog, e.g. nvidia-h100, nvidia-a100-80gb, nvidia-l4.")
    gpusPerNode: int = Field(8, ge=1, le=64, description="GPUs on one node: up to this many run in one pod.")
    cpusPerWorker: float = Field(4, gt=0, le=512, description="CPU cores requested per worker; fractions allowed (0.5 is 500m).")
    memoryPerWorker: str = Field("16Gi", max_length=32, pattern=QUANTITY_PATTERN, description="Memory requested per worker, a Kubernetes quantity.")
    workers: int | None = Field(None, ge=1, le=4096, description="Ray Train workers of a CPU job (gpus: 0); default 1. With GPUs each GPU is one worker.")
    workersPerPod: int | None = Field(
        None, ge=1, le=512,
        description="CPU jobs: workers in one pod (Ray started inside it); more run as a KubeRay RayJob of workers / workersPerPod pods. Default: all in one pod.",
    )

    cel_rules = (
        CrossFieldRule("!has(self.workers) || self.gpus == 0", "workers",
                       "workers applies to CPU jobs (gpus: 0); with GPUs each GPU is one worker",
                       lambda r: r.workers is None or r.gpus == 0),
        CrossFieldRule("!has(self.workersPerPod) || self.gpus == 0", "workersPerPod",
                       "workersPerPod applies to CPU jobs (gpus: 0); with GPUs, gpusPerNode sets the pod size",
                       lambda r: r.workersPerPod is None or r.gpus == 0),
        CrossFieldRule("!has(self.workersPerPod) || (has(self.workers) ? self.workers : 1) % self.workersPerPod == 0",
                       "workersPerPod", "workers must be a multiple of workersPerPod (every pod runs the same number)",
                       lambda r: r.workersPerPod is None or (r.workers or 1) % r.workersPerPod == 0),
    )

    def cpu_workers(self) -> tuple[int, int]:
        """(workers, workers per pod) of a CPU job, defaults applied."""
        workers = self.workers or 1
        return workers, self.workersPerPod or workers


class EarlyStoppingSpec(ApiModel):
    metric: Literal["val_loss", "val_accuracy", "val_f1", "val_perplexity"] = Field("val_loss", description="Validation metric to watch.")
    patience: int = Field(2, ge=1, le=1000, description="Evaluations without improvement before stopping.")
    minDelta: float = Field(0.0, ge=0, description="Smallest change that counts as improvement.")
    restoreBest: bool = Field(True, description="End with the weights of the best evaluation (the exported model), not the last.")


class TrainingSpec(ApiModel):
    epochs: int = Field(3, ge=1, le=10_000, description="Passes over the training data.")
    batchSize: int = Field(32, ge=1, le=65536, description="Samples per optimizer step per worker, before accumulation.")
    gradientAccumulation: int = Field(1, ge=1, le=1024, description="Micro-batches per optimizer step.")
    learningRate: float | None = Field(None, gt=0, le=10, description="Peak learning rate; defaults by strategy (fine-tune 2e-5, LoRA 2e-4, scratch 3e-4, hybrid 1e-3 for the head).")
    weightDecay: float = Field(0.01, ge=0, le=10, description="AdamW weight decay.")
    warmupRatio: float = Field(0.05, ge=0, lt=1, description="Fraction of steps spent warming up the learning rate.")
    maxGradNorm: float = Field(1.0, gt=0, le=1e6, description="Gradient clipping norm.")
    maxSeqLength: int = Field(512, ge=8, le=1_048_576, description="Tokens per sample after truncation.")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = Field("auto", description="Autocast precision; auto picks bf16 on GPUs that support it, fp32 on CPU.")
    compile: bool = Field(False, description="Use torch.compile.")
    freezeEpochs: int = Field(1, ge=0, le=10_000, description="Hybrid: epochs with the backbone frozen before it is unfrozen.")
    backboneLrScale: float = Field(0.1, gt=0, le=1, description="Hybrid: backbone learning rate relative to the head's once unfrozen.")
    earlyStopping: EarlyStoppingSpec | None = Field(None, description="Stop when a validation metric stops improving.")
    seed: int = Field(0, ge=0, le=2**31 - 1, description="Seed for weights, data order and dropout.")


class CheckpointSpec(ApiModel):
    pvc: str | None = Field(None, max_length=253, pattern=NAME_PATTERN, description="PersistentVolumeClaim that holds checkpoints; survives pod loss.")
    everySteps: int = Field(500, ge=1, le=10**9, description="Save every N optimizer steps (and at the end).")
    keep: int = Field(3, ge=1, le=1000, description="Checkpoints kept; older ones are deleted.")
    uri: str | None = Field(None, max_length=1024, pattern=r"^s3://[a-z0-9][a-z0-9.-]*(/.*)?$",
                            description="s3://BUCKET/PREFIX each checkpoint is also copied to (with objectStorage): it outlives the pod, the claim and the node, and a new pod resumes from it.")


class ObjectStorageSpec(ApiModel):
    """Credentials and server for s3:// sources. The keys stay in the Secret: pods get them as
    environment variables (secretKeyRef); the job's status, events and logs never hold them."""

    secret: str = Field(
        max_length=253, pattern=SECRET_NAME_PATTERN,
        description="Secret in the job's namespace with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                    "given to the trainer as those environment variables. Its pods wait until it exists.",
    )
    endpoint: str | None = Field(
        None, max_length=2048, pattern=r"^https?://[^\s/]+(/[^\s]*)?$",
        description="URL of an S3-compatible server (MinIO, Ceph, s3proxy), e.g. http://minio.storage:9000; absent: AWS S3. "
                    "The trainer gets it as AWS_ENDPOINT_URL.",
    )
    region: str | None = Field(None, max_length=64, pattern=r"^[a-z0-9-]+$",
                               description="The buckets' region, e.g. eu-west-1 (AWS_REGION); default us-east-1.")


class BudgetSpec(ApiModel):
    maxCostUSD: float | None = Field(None, gt=0, le=1e9, description="Stop the job when its accrued cost passes this many dollars.")
    maxDuration: str | None = Field(None, max_length=32, pattern=DURATION_PATTERN, description="Stop the job after it has run this long, e.g. 6h or 1h30m.")
    onProjectedOverrun: Literal["warn", "stop"] = Field(
        "warn", description="When the cost projected from measured throughput passes maxCostUSD: warn (condition "
                            "BudgetAtRisk, an Event, an alert) or stop (checkpoint, then BudgetExceeded before the money is spent).")

    def max_duration_seconds(self) -> float | None:
        return parse_duration(self.maxDuration) if self.maxDuration else None


class TrainingJobSpec(ApiModel):
    """What a user asks for: strategy, model, dataset, resources, and the limits around them."""

    # What the launched trainer and its checkpoints are made from: fixed once the job has
    # launched (a CEL transition rule on the CRD). suspend, budget and the TTL stay editable.
    immutable_after_launch: ClassVar[tuple[str, ...]] = (
        "strategy", "model", "dataset", "resources", "training", "checkpoint", "backoffLimit")

    strategy: Strategy = Field("auto", description="fine-tune, scratch, hybrid, or auto (the planner picks and says why).")
    model: ModelSpec = Field(description="The model: pre-trained source, adapter, head or architecture.")
    dataset: DatasetSpec = Field(description="The training data.")
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec, description="GPUs and their type.")
    training: TrainingSpec = Field(default_factory=TrainingSpec, description="Optimisation settings.")
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec, description="Where and how often to checkpoint.")
    objectStorage: ObjectStorageSpec | None = Field(None, description="Credentials and server for s3:// sources; required when a source is s3://.")
    budget: BudgetSpec = Field(default_factory=BudgetSpec, description="Cost and time limits.")
    suspend: bool = Field(False, description="True removes the pods and keeps the checkpoint; false resumes from it.")
    backoffLimit: int = Field(3, ge=0, le=100, description="Restarts of a failed trainer (from its last checkpoint) before the job fails.")
    ttlSecondsAfterFinished: int | None = Field(None, ge=0, le=10**9, description="Delete the job this long after it finished.")

    cel_rules = (
        *(_needs_rule(field) for field in STRATEGY_NEEDS),
        CrossFieldRule("!has(self.model.head) || self.strategy in ['hybrid', 'auto']", "model.head",
                       "a head is only used with strategy hybrid (or auto)",
                       lambda s: s.model.head is None or s.strategy in ("hybrid", "auto")),
        CrossFieldRule("!has(self.model.adapter) || self.strategy in ['fine-tune', 'auto']", "model.adapter",
                       "an adapter is only used with strategy fine-tune (or auto)",
                       lambda s: s.model.adapter is None or s.strategy in ("fine-tune", "auto")),
        CrossFieldRule("!has(self.model.architecture) || self.strategy in ['scratch', 'auto']", "model.architecture",
                       "an architecture is only used with strategy scratch (or auto)",
                       lambda s: s.model.architecture is None or s.strategy in ("scratch", "auto")),
        CrossFieldRule("has(self.model.source) || has(self.model.architecture)", "model",
                       "needs a pre-trained source or an architecture",
                       lambda s: s.model.source is not None or s.model.architecture is not None),
        CrossFieldRule("!has(self.model.head) || !has(self.model.adapter)", "model",
                       "a head and an adapter exclude each other",
                       lambda s: s.model.head is None or s.model.adapter is None),
        CrossFieldRule("!self.dataset.source.startsWith('s3://') || has(self.objectStorage)", "objectStorage.secret",
                       "an s3:// dataset.source needs objectStorage.secret (a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                       lambda s: not s.dataset.source.startswith("s3://") or s.objectStorage is not None),
        CrossFieldRule("!has(self.checkpoint.uri) || has(self.objectStorage)", "objectStorage.secret",
                       "an s3:// checkpoint.uri needs objectStorage.secret (a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                       lambda s: s.checkpoint.uri is None or s.objectStorage is not None),
        CrossFieldRule("!has(self.model.source) || !self.model.source.startsWith('s3://') || has(self.objectStorage)",
                       "objectStorage.secret",
                       "an s3:// model.source needs objectStorage.secret (a Secret with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)",
                       lambda s: s.model.source is None or not s.model.source.startswith("s3://") or s.objectStorage is not None),
        CrossFieldRule("self.model.task == 'sequence-classification' || !has(self.model.numLabels)", "model.numLabels",
                       "numLabels only applies to sequence-classification",
                       lambda s: s.model.task == "sequence-classification" or s.model.numLabels is None),
    )
