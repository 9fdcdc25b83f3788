"""Ray Train: the same prepare-and-loop in each of `workers` processes, DDP over gloo (CPU) or nccl (GPU).

`run_on_ray(settings, train)` runs `train(settings, device, rank, world)` (runner's
`train_in_ray_worker`, passed in, so that this module never imports the runner) in every worker
and returns rank 0's answer, a dict, through a file. A `TrainerError` in the workers (bad data)
comes back to the driver as itself, one line.

Ray is started here (local, `num_cpus` = the machine's) unless the process is already in a
Ray cluster (RAY_ADDRESS set, as in a KubeRay RayJob), and shut down again if we started it.

Preemption (docs/trainer.md): a SIGTERM to the driver or to any worker process stops every
worker at the same step boundary, and rank 0 writes a checkpoint. The driver's SIGTERM reaches
the workers through a `StopSignal` actor each of them watches; a worker's own SIGTERM is caught
by a handler installed on its actor's main thread; the loop's all-reduce makes them agree.
"""

import asyncio
import json
import os
import sys
import threading
from pathlib import Path
from typing import Callable

from trainwright.trainer import preemption
from trainwright.trainer.errors import TrainerError
from trainwright.trainer.settings import RunSettings

Train = Callable[..., dict]  # (settings, device, rank, world) -> a JSON-able dict


def _result_file(settings: RunSettings) -> Path:
    return Path(settings.output_dir) / "worker-result.json"


def _error_file(settings: RunSettings) -> Path:
    return Path(settings.output_dir) / "worker-error.json"


def _write_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}-{os.getpid()}")
    temporary.write_text(text)
    os.replace(temporary, path)


def _stop_signal_class():
    import ray

    @ray.remote(num_cpus=0)
    class StopSignal:
        """Raised once by the driver (its SIGTERM); every worker waits on it in a thread."""

        def __init__(self):
            self.raised = asyncio.Event()

        async def wait(self) -> bool:
            await self.raised.wait()
            return True

        async def raise_(self) -> None:
            self.raised.set()

    return StopSignal


def _watch_stop_signal(stop_signal) -> None:
    """In a worker: turn the driver's stop signal into this process's stop request."""
    import ray

    def watch():
        try:
            ray.get(stop_signal.wait.remote())
        except Exception:  # the driver and its actor are gone (the run ended): nothing to stop
            return
        preemption.request_stop("SIGTERM to the driver")

    threading.Thread(target=watch, name="trainwright-stop-watch", daemon=True).start()


def _install_on_actor_main_thread() -> bool:
    """Run `preemption.install` on this worker process's main thread, where Python lets a signal
    handler be set and runs it: Ray Train's worker actor executes its methods there."""
    import ray

    try:
        actor = ray.get_runtime_context().current_actor
        return bool(ray.get(actor.execute.remote(preemption.install), timeout=60))
    except Exception as error:  # another Ray Train worker class: the driver's signal still works
        print(f"warning: no SIGTERM handler in worker pid {os.getpid()} ({error}); a SIGTERM to this "
              "process kills it without a checkpoint", file=sys.stderr, flush=True)
        return False


def _worker(config: dict) -> None:
    import ray.train
    import ray.train.torch
    import torch.distributed as dist

    preemption.reset()
    _install_on_actor_main_thread()
    _watch_stop_signal(config["stop_signal"])
    settings: RunSettings = config["settings"]
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    try:
        answer = config["train"](settings, ray.train.torch.get_device(), rank, world)
    except TrainerError as error:  # every rank finds the same (prepare is deterministic); the driver says it
        _write_atomically(_error_file(settings), json.dumps({"where": error.where, "reason": error.reason}))
        raise
    if rank == 0:  # Ray Train keeps reported metrics only with checkpoints; a file is simpler
        _write_atomically(_result_file(settings), json.dumps(answer))
    dist.barrier()  # rank 0 has saved the model


def _relay(stop_signal, done: threading.Event) -> threading.Thread:
    """In the driver: pass this process's stop request (its SIGTERM) on to the workers."""

    def relay():
        while not done.is_set():
            if preemption.wait(0.2):
                stop_signal.raise_.remote()
                return

    thread = threading.Thread(target=relay, name="trainwright-stop-relay", daemon=True)
    thread.start()
    return thread


def run_on_ray(settings: RunSettings, train: Train) -> dict:
    """Rank 0's answer from `train`, run in every one of `settings.workers` Ray Train workers."""
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
    preemption.install()  # ray.init replaced it with one that exits at once
    _result_file(settings).unlink(missing_ok=True)
    _error_file(settings).unlink(missing_ok=True)
    stop_signal = _stop_signal_class().remote()
    done = threading.Event()
    relay = _relay(stop_signal, done)
    try:
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"settings": settings, "train": train, "stop_signal": stop_signal},
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            scaling_config=ScalingConfig(num_workers=settings.workers, use_gpu=use_gpu,
                                         resources_per_worker=None if use_gpu else {"CPU": 1}),
            run_config=RunConfig(name=settings.job.metadata.name, storage_path=str(Path(settings.output_dir).resolve() / "ray")),
        )
        try:
            trainer.fit()
        except Exception:
            if _error_file(settings).exists():
                error = json.loads(_error_file(settings).read_text())
                raise TrainerError(error["where"], error["reason"]) from None
            raise
        return json.loads(_result_file(settings).read_text())
    finally:
        done.set()
        relay.join()
        ray.kill(stop_signal)
        if started_ray:
            ray.shutdown()
