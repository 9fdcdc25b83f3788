"""CPU benchmarks of the trainer, as ratios against baselines measured in the same run.

1. Our loop vs the transformers Trainer: the same tiny GPT-2, data, batch, optimizer settings
   and step count; tokens/s (target: ratio >= 1.0).
2. Ray Train with 2 workers vs plain torch DDP with 2 processes (torch.multiprocessing, gloo),
   both running our loop; time per step inside the workers (target: Ray overhead <= 10%).

A and B alternate `--rounds` times; medians are reported.

    .venv/bin/python bench/trainer_cpu.py [--rounds 5] [--steps 60] [--threads 1] [--skip-ray]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from trainwright.trainer.data import TokenizedSet  # noqa: E402
from trainwright.trainer.loop import LoopConfig, train  # noqa: E402
from trainwright.trainer.models import BuiltModel  # noqa: E402

VOCAB, SEQ, BATCH, LAYERS, HIDDEN, HEADS = 512, 128, 16, 2, 128, 4
LR = 3e-4


def tiny_gpt():
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS,
                                           bos_token_id=0, eos_token_id=0))


def token_blocks(rows: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(1)
    return torch.randint(0, VOCAB, (rows, SEQ), generator=generator).tolist()


def loop_config(steps: int, batch: int = BATCH) -> LoopConfig:
    return LoopConfig(task="causal-lm", epochs=1000, batch_size=batch, lr=LR, warmup_ratio=0.05, max_steps=steps,
                      log_every=10**9, checkpoint_every=10**9)


def ours_tokens_per_second(steps: int) -> float:
    data = TokenizedSet(token_blocks(steps * BATCH), None, pad_id=0, task="causal-lm")
    built = BuiltModel(tiny_gpt(), tokenizer=None, max_length=SEQ)
    started = time.perf_counter()
    result = train(built, data, None, loop_config(steps), device=torch.device("cpu"))
    return result.tokens / (time.perf_counter() - started)


def trainer_tokens_per_second(steps: int) -> float:
    from transformers import Trainer, TrainingArguments

    blocks = torch.tensor(token_blocks(steps * BATCH))
    dataset = [{"input_ids": b, "attention_mask": torch.ones_like(b), "labels": b} for b in blocks]
    with tempfile.TemporaryDirectory() as output:
        arguments = TrainingArguments(
            output_dir=output, per_device_train_batch_size=BATCH, max_steps=steps, learning_rate=LR, weight_decay=0.01,
            warmup_steps=int(0.05 * steps), lr_scheduler_type="cosine", max_grad_norm=1.0, save_strategy="no", report_to=[],
            logging_steps=10**9, dataloader_num_workers=0, use_cpu=True, seed=0, disable_tqdm=True,
        )
        trainer = Trainer(model=tiny_gpt(), args=arguments, train_dataset=dataset)
        started = time.perf_counter()
        trainer.train()
        return steps * BATCH * SEQ / (time.perf_counter() - started)


# --- Ray Train vs plain DDP: the same per-worker function --------------------------------


def _ddp_steps(rank: int, world: int, steps: int, out: str) -> None:
    """Our loop in one DDP worker; rank 0 writes seconds per step (after one warmup step)."""
    torch.set_num_threads(1)
    data = TokenizedSet(token_blocks(steps * BATCH), None, pad_id=0, task="causal-lm")
    built = BuiltModel(tiny_gpt(), tokenizer=None, max_length=SEQ)
    train(built, data, None, loop_config(1, BATCH // world), device=torch.device("cpu"), rank=rank, world=world)  # warm up
    built = BuiltModel(tiny_gpt(), tokenizer=None, max_length=SEQ)
    result = train(built, data, None, loop_config(steps, BATCH // world), device=torch.device("cpu"), rank=rank, world=world)
    if rank == 0:
        Path(out).write_text(json.dumps(result.seconds / result.step))


def _plain_ddp_worker(rank: int, world: int, steps: int, out: str, port: int) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        _ddp_steps(rank, world, steps, out)
    finally:
        dist.destroy_process_group()


def plain_ddp_step_seconds(steps: int, port: int) -> float:
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as directory:
        out = f"{directory}/result.json"
        mp.spawn(_plain_ddp_worker, args=(2, steps, out, port), nprocs=2, join=True)
        return json.loads(Path(out).read_text())


def _ray_worker(config: dict) -> None:
    import ray.train

    context = ray.train.get_context()
    _ddp_steps(context.get_world_rank(), context.get_world_size(), config["steps"], config["out"])


def ray_step_seconds(steps: int) -> float:
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    with tempfile.TemporaryDirectory() as directory:
        out = f"{directory}/result.json"
        TorchTrainer(
            _ray_worker, train_loop_config={"steps": steps, "out": out}, torch_config=TorchConfig(backend="gloo"),
            scaling_config=ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
            run_config=RunConfig(storage_path=directory, name="bench"),
        ).fit()
        return json.loads(Path(out).read_text())


def alternate(rounds: int, a, b) -> tuple[list[float], list[float]]:
    results_a, results_b = [], []
    for round_ in range(rounds):
        results_a.append(a())
        results_b.append(b())
        print(f"  round {round_ + 1}: {results_a[-1]:.6g} vs {results_b[-1]:.6g}", file=sys.stderr, flush=True)
    return results_a, results_b


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the single-process comparison")
    parser.add_argument("--skip-ray", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    print(f"tiny GPT-2: {LAYERS} layers, hidden {HIDDEN}, vocab {VOCAB}; batch {BATCH} x {SEQ} tokens; "
          f"{args.steps} steps; {args.threads} thread(s); {args.rounds} alternating rounds")
    ours, theirs = alternate(args.rounds, lambda: ours_tokens_per_second(args.steps), lambda: trainer_tokens_per_second(args.steps))
    ratio = statistics.median(ours) / statistics.median(theirs)
    print(f"our loop:             {statistics.median(ours):10,.0f} tokens/s (median)")
    print(f"transformers Trainer: {statistics.median(theirs):10,.0f} tokens/s (median)")
    print(f"ratio ours/Trainer:   {ratio:.2f}x (target >= 1.0x)")
    if args.skip_ray:
        return 0
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False, log_to_driver=False)
    try:
        ports = iter(range(29500, 29600))
        ray_times, ddp_times = alternate(args.rounds, lambda: ray_step_seconds(args.steps),
                                         lambda: plain_ddp_step_seconds(args.steps, next(ports)))
    finally:
        ray.shutdown()
    overhead = statistics.median(ray_times) / statistics.median(ddp_times)
    print(f"Ray Train, 2 workers: {statistics.median(ray_times) * 1000:8.1f} ms/step (median)")
    print(f"plain DDP, 2 procs:   {statistics.median(ddp_times) * 1000:8.1f} ms/step (median)")
    print(f"ratio Ray/DDP:        {overhead:.3f}x (target <= 1.10x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
