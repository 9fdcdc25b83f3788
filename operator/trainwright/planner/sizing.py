"""How many GPUs, workers and pods a strategy gets (docs/architecture.md, "Sizing")."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sizing:
    gpus: int
    launcher: str  # "job" | "rayjob"
    workers: int
    pods: int
    gpus_per_pod: int
    notes: list[str] = field(default_factory=list)


def size_single(requested_gpus: int, strategy: str) -> Sizing:
    """One pod, one worker, at most one GPU: fine-tune (and a hybrid asking for one)."""
    gpus = min(requested_gpus, 1)
    notes = []
    if requested_gpus > 1:
        notes.append(f"sized down from {requested_gpus} GPUs to 1: {strategy} runs on one GPU")
    return Sizing(gpus, "job", 1, 1, gpus, notes)


def size_cpu(workers: int, workers_per_pod: int) -> Sizing:
    """CPU Ray Train workers: one pod up to ``workers_per_pod``, a RayJob of pods beyond that."""
    if workers == 1:
        return Sizing(0, "job", 1, 1, 0, ["no GPUs asked for: one CPU worker"])
    if workers <= workers_per_pod:
        return Sizing(0, "job", workers, 1, 0)
    return Sizing(0, "rayjob", workers, workers // workers_per_pod, 0)


def size_distributed(requested_gpus: int, gpus_per_node: int) -> Sizing:
    """Ray Train, one worker per GPU; one pod up to a node, whole nodes beyond that."""
    if requested_gpus <= gpus_per_node:
        return Sizing(requested_gpus, "job", requested_gpus, 1, requested_gpus)
    nodes = requested_gpus // gpus_per_node
    gpus = nodes * gpus_per_node
    notes = []
    if gpus != requested_gpus:
        notes.append(
            f"sized down from {requested_gpus} to {gpus} GPUs: multi-node jobs use whole "
            f"nodes of {gpus_per_node}"
        )
    return Sizing(gpus, "rayjob", gpus, nodes, gpus_per_node, notes)


def size_job(strategy: str, requested_gpus: int, gpus_per_node: int, cpu_workers: tuple[int, int] = (1, 1)) -> Sizing:
    """``cpu_workers``: (workers, per pod) of a CPU job, as ResourcesSpec.cpu_workers gives them."""
    workers, per_pod = cpu_workers
    if strategy == "fine-tune" or (strategy == "hybrid" and requested_gpus <= 1 and workers <= 1):
        single = size_single(requested_gpus, strategy)
        if workers > 1:
            single.notes.append(f"sized down from {workers} workers to 1: {strategy} runs on one worker")
        return single
    if requested_gpus == 0:
        return size_cpu(workers, per_pod)
    return size_distributed(requested_gpus, gpus_per_node)
