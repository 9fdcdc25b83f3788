"""The TrainingJob status: what the operator and the trainer write back.

Every field is declared in the CRD, because the API server drops undeclared status fields.
"""

from typing import Literal

from pydantic import Field

from trainwright.api.spec import ApiModel, ConcreteStrategy

Phase = Literal["Pending", "Running", "Succeeded", "Failed", "Suspended", "BudgetExceeded"]
PHASES: tuple[str, ...] = Phase.__args__
FINISHED_PHASES = ("Succeeded", "Failed", "BudgetExceeded")
Launcher = Literal["job", "rayjob"]


class Plan(ApiModel):
    """The planner's decision: what runs where, and what it should cost."""

    strategy: ConcreteStrategy = Field(description="The strategy that runs (auto resolved).")
    reason: str = Field(max_length=2048, description="Why this strategy and this size, in words.")
    gpus: int = Field(ge=0, description="GPUs the job runs on.")
    launcher: Launcher = Field(description="job: one batch/v1 Job pod; rayjob: a KubeRay RayJob across nodes.")
    workers: int = Field(ge=1, description="Training processes (Ray Train workers, or 1).")
    pods: int = Field(ge=1, description="Pods the job runs in.")
    gpusPerPod: int = Field(ge=0, description="GPUs requested by each pod.")
    estimatedSeconds: float | None = Field(None, ge=0, description="Estimated training time; absent when the model size is unknown.")
    estimatedCostUSD: float | None = Field(None, ge=0, description="Estimated cost; absent when the time is unknown.")
    estimateBasis: str | None = Field(None, max_length=512, description="What the estimate rests on: the FLOPs formula, or calibration from N finished runs of like jobs.")
    notes: list[str] = Field(default_factory=list, description="Adjustments and caveats, e.g. a GPU request sized down.")


class Progress(ApiModel):
    """Reported by the trainer, throttled."""

    step: int = Field(0, ge=0, description="Optimizer steps done.")
    totalSteps: int | None = Field(None, ge=0, description="Optimizer steps planned.")
    epoch: int = Field(0, ge=0, description="Current epoch, from 0.")
    ratio: float | None = Field(None, ge=0, le=1, description="step / totalSteps.")
    loss: float | None = Field(None, description="Recent training loss.")
    samplesPerSecond: float | None = Field(None, ge=0, description="Training throughput over all workers.")
    etaSeconds: float | None = Field(None, ge=0, description="Estimated seconds left: the steps at the measured rate and the evaluations still to come.")
    metrics: dict[str, float] | None = Field(None, description="Latest validation metrics, e.g. val_loss, val_accuracy.")
    stepSeconds: float | None = Field(None, ge=0, description="Wall time spent in training steps by this attempt (evaluation excluded): calibrates later plans.")
    samplesSeen: int | None = Field(None, ge=0, description="Samples trained on by this attempt, over all workers.")
    updatedAt: str | None = Field(None, description="RFC 3339 time of this report.")


class PodCost(ApiModel):
    uid: str = Field(max_length=64, description="The pod's UID.")
    seconds: float = Field(ge=0, description="Its device-seconds when last seen.")


class Cost(ApiModel):
    gpuSeconds: float = Field(0.0, ge=0, description="GPU-seconds accrued by every pod the job has had (CPU-seconds for CPU jobs).")
    usd: float = Field(0.0, ge=0, description="Accrued cost in dollars.")
    settledGpuSeconds: float = Field(0.0, ge=0, description="GPU-seconds of pods that are gone (deleted, retried, suspended, stopped).")
    pods: list[PodCost] | None = Field(None, max_length=10_000, description="The pods there now and their device-seconds so far.")
    updatedAt: str | None = Field(None, description="RFC 3339 time of the last accrual.")
    projectedUSD: float | None = Field(None, ge=0, description="Accrued cost plus the steps left at the measured rate on the devices held now.")
    projectedSeconds: float | None = Field(None, ge=0, description="Projected run time, from the first start to the end.")
    etaSeconds: float | None = Field(None, ge=0, description="Projected seconds left.")
    eta: str | None = Field(None, max_length=32, description="Projected time left, e.g. 1h05m (kubectl get's ETA column).")
    projectedCompletionTime: str | None = Field(None, description="RFC 3339 time the job is projected to finish.")


class CheckpointStatus(ApiModel):
    step: int = Field(ge=0, description="Step of the newest complete checkpoint.")
    path: str = Field(description="Where it is.")


class Condition(ApiModel):
    type: str = Field(description="Condition type, e.g. Planned, Ready, Succeeded, Failed, BudgetExceeded, SizedDown.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field("", description="CamelCase reason.")
    message: str = Field("", description="Human-readable details.")
    lastTransitionTime: str | None = Field(None, description="RFC 3339 time of the last change.")


class TrainingJobStatus(ApiModel):
    phase: Phase | None = Field(None, description="Pending, Running, Succeeded, Failed, Suspended or BudgetExceeded.")
    plan: Plan | None = Field(None, description="The planner's decision.")
    progress: Progress | None = Field(None, description="Training progress reported by the trainer.")
    cost: Cost | None = Field(None, description="Accrued cost.")
    checkpoint: CheckpointStatus | None = Field(None, description="The newest checkpoint.")
    conditions: list[Condition] | None = Field(None, description="Observations with reasons.")
    restarts: int | None = Field(None, ge=0, description="Times the trainer was restarted after a failure.")
    launchedAt: str | None = Field(None, description="When the operator first created the trainer; from then on the spec's training fields are immutable.")
    startTime: str | None = Field(None, description="When the trainer first ran.")
    completionTime: str | None = Field(None, description="When the job finished.")
    observedGeneration: int | None = Field(None, ge=0, description="The spec generation this status reflects.")
