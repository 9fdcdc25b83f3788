"""Ray Train: the same prepare-and-loop in each of `workers` processes, DDP over gloo (CPU) or nccl (GPU).

Ray is started here (local, `num_cpus` = the machine's) unless the process is already in a
Ray cluster (RAY_ADDRESS set, as in a KubeRay RayJob), and shut down again if we started it.
"""

import json
import os
from dataclasses import asdict
from pathlib import Path

from trainwright.trainer.loop import LoopResult
from trainwright.trainer.runner import RunSettings


def _result_file(settings: RunSettings) -> Path:
    return Path(settings.output_dir) / "worker-result.json"


def _worker(config: dict) -> None:
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    from trainwright.trainer.runner import prepare, train_prepared

    settings: RunSettings = config["settings"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    prepared = prepare(settings, device)
    result = train_prepared(settings, prepared, device, rank=rank, world=world)
    if rank == 0:  # Ray Train keeps reported metrics only with checkpoints; a file is simpler
        _result_file(settings).write_text(json.dumps(asdict(result)))
    dist.barrier()  # rank 0 has saved the model


def run_on_ray(settings: RunSettings) -> LoopResult:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    use_gpu = settings.plan.gpus > 0
    started_ray = False
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init()
        else:
            ray.init(num_cpus=max(settings.workers, os.cpu_count() or 1), include_dashboard=False,
                     log_to_driver=True, configure_logging=False)
        started_ray = True
    try:
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"settings": settings},
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            scaling_config=ScalingConfig(num_workers=settings.workers, use_gpu=use_gpu,
                                         resources_per_worker=None if use_gpu else {"CPU": 1}),
            run_config=RunConfig(name=settings.job.metadata.name, storage_path=str(Path(settings.output_dir).resolve() / "ray")),
        )
        trainer.fit()
        return LoopResult(**json.loads(_result_file(settings).read_text()))
    finally:
        if started_ray:
            ray.shutdown()
