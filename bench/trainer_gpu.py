"""GPU benchmarks of the trainer's loop on one H100/H200, against the transformers Trainer in the same run.

1. GPT-2 124M built from config, trained from scratch: batch 16 x 1024 tokens.
2. GPT-2 medium (355M, from config: no hub needed) with LoRA r=16 on c_attn (peft).

Each is run by our loop (bf16 autocast, fused AdamW, torch.compile), by the Trainer with its
defaults, and by the Trainer with bf16 and torch_compile; the variants alternate `--rounds`
times and medians are reported. Tokens/s is measured in steady state: between the first
report after `--warmup` steps (compilation done) and the last step, with device syncs at both.
MFU = tokens/s x (6N + 12 L H Q T) / 989.5e12 (dense bf16 peak of an H100/H200), with N the
parameters less the position embeddings (nanoGPT's count). For LoRA the same formula
overstates the work (the frozen base has no weight gradients: about 4N), so both are shown.
Targets: scratch MFU >= 45%; LoRA tokens/s >= 3x the Trainer's defaults.

    .venv/bin/python bench/trainer_gpu.py [--rounds 5] [--steps 30] [--warmup 10] [--only scratch|lora]
    .venv/bin/python bench/trainer_gpu.py --dry-run-cpu --rounds 1 --steps 16 --warmup 5   # checks the script
"""

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

PEAK_FLOPS = 989.5e12
BATCH, SEQ = 16, 1024
DEVICE = "cuda"
VOCAB = 50257
MODELS = {
    "scratch": {"n_layer": 12, "n_embd": 768, "n_head": 12, "lora": None, "title": "GPT-2 124M from scratch"},
    "lora": {"n_layer": 24, "n_embd": 1024, "n_head": 16, "lora": 16, "title": "GPT-2 medium 355M, LoRA r=16"},
}


def build_model(kind: str):
    from transformers import GPT2Config, GPT2LMHeadModel

    spec = MODELS[kind]
    torch.manual_seed(0)
    config = GPT2Config(n_layer=spec["n_layer"], n_embd=spec["n_embd"], n_head=spec["n_head"], n_positions=SEQ,
                        vocab_size=VOCAB, attn_implementation="sdpa", bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config)
    if spec["lora"]:
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(r=spec["lora"], lora_alpha=2 * spec["lora"], lora_dropout=0.0,
                                                 target_modules=["c_attn"], task_type=TaskType.CAUSAL_LM))
    return model


def flops_per_token(kind: str, weight_grads: bool = True) -> float:
    spec = MODELS[kind]
    layers, hidden, heads = spec["n_layer"], spec["n_embd"], spec["n_head"]
    n = 12 * layers * hidden**2 + VOCAB * hidden  # blocks + token embedding (tied head); no position embeddings
    return (6 if weight_grads else 4) * n + 12 * layers * heads * (hidden // heads) * SEQ


def random_blocks(steps: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, VOCAB, (steps * BATCH, SEQ), generator=generator).tolist()


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


class StepClock:
    """A reporter that notes when each report (a host sync) happened."""

    def __init__(self):
        self.marks: list[tuple[int, float]] = []

    def on_step(self, progress):
        sync()
        self.marks.append((progress.step, time.perf_counter()))

    def on_eval(self, metrics): pass
    def on_checkpoint(self, step, path): pass
    def close(self): pass


def steady_rate(marks: list[tuple[int, float]], warmup: int) -> float:
    first_time_at = {}
    for step, moment in marks:  # a step can be reported twice (the loop's final report); the first counts
        first_time_at.setdefault(step, moment)
    after = sorted((step, moment) for step, moment in first_time_at.items() if step >= warmup)
    (first_step, first_time), (last_step, last_time) = after[0], after[-1]
    return (last_step - first_step) * BATCH * SEQ / (last_time - first_time)


def ours(kind: str, steps: int, warmup: int) -> float:
    from trainwright.trainer.data import TokenizedSet
    from trainwright.trainer.loop import LoopConfig, train
    from trainwright.trainer.models import BuiltModel

    data = TokenizedSet(random_blocks(steps), None, pad_id=0, task="causal-lm")
    clock = StepClock()
    config = LoopConfig(task="causal-lm", epochs=1, batch_size=BATCH, lr=3e-4 if kind == "scratch" else 2e-4,
                        precision="bf16" if DEVICE == "cuda" else "fp32", compile=DEVICE == "cuda", max_steps=steps,
                        log_every=5, checkpoint_every=10**9)
    device = torch.device("cuda", 0) if DEVICE == "cuda" else torch.device("cpu")
    train(BuiltModel(build_model(kind), None, SEQ), data, None, config, device=device, reporter=clock)
    return steady_rate(clock.marks, warmup)


def hf_trainer(kind: str, steps: int, warmup: int, tuned: bool) -> float:
    from transformers import Trainer, TrainerCallback, TrainingArguments

    marks = []

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % 5 == 0 or state.global_step == steps:
                sync()
                marks.append((state.global_step, time.perf_counter()))

    blocks = torch.tensor(random_blocks(steps))
    dataset = [{"input_ids": b, "labels": b} for b in blocks]
    with tempfile.TemporaryDirectory() as output:
        extra = {"bf16": True, "torch_compile": True} if tuned else {}
        if DEVICE != "cuda":
            extra = {"use_cpu": True}
        arguments = TrainingArguments(output_dir=output, per_device_train_batch_size=BATCH, max_steps=steps,
                                      learning_rate=3e-4 if kind == "scratch" else 2e-4, save_strategy="no", report_to=[],
                                      logging_steps=10**9, disable_tqdm=True, **extra)
        Trainer(model=build_model(kind), args=arguments, train_dataset=dataset, callbacks=[Clock()]).train()
    return steady_rate(marks, warmup)


def free_memory() -> None:
    gc.collect()
    if DEVICE == "cuda":
        torch.cuda.empty_cache()
    torch._dynamo.reset()


def run(kind: str, rounds: int, steps: int, warmup: int) -> None:
    variants = {
        "ours (bf16, fused AdamW, compile)": lambda: ours(kind, steps, warmup),
        "Trainer defaults": lambda: hf_trainer(kind, steps, warmup, tuned=False),
        "Trainer bf16 + torch_compile": lambda: hf_trainer(kind, steps, warmup, tuned=True),
    }
    results = {name: [] for name in variants}
    for round_ in range(rounds):
        for name, measure in variants.items():
            try:
                results[name].append(measure())
            except torch.cuda.OutOfMemoryError:
                results[name].append(float("nan"))
                print(f"  {name}: out of memory", file=sys.stderr)
            free_memory()
            print(f"  {MODELS[kind]['title']} round {round_ + 1} {name}: {results[name][-1]:,.0f} tokens/s",
                  file=sys.stderr, flush=True)
    print(f"\n{MODELS[kind]['title']}: batch {BATCH} x {SEQ}, {steps} steps ({warmup} warmup), median of {rounds}")
    baseline = statistics.median(results["Trainer defaults"])
    for name, values in results.items():
        rate = statistics.median(values)
        mfu = rate * flops_per_token(kind) / PEAK_FLOPS
        line = f"  {name:36s} {rate:12,.0f} tokens/s  MFU {mfu:6.1%}"
        if MODELS[kind]["lora"]:
            line += f" (4N: {rate * flops_per_token(kind, weight_grads=False) / PEAK_FLOPS:6.1%})"
        print(f"{line}  {rate / baseline:5.2f}x Trainer defaults")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10, help="steps before timing starts (compilation, allocator)")
    parser.add_argument("--only", choices=sorted(MODELS))
    parser.add_argument("--dry-run-cpu", action="store_true",
                        help="check the script on a CPU with toy sizes (numbers meaningless)")
    args = parser.parse_args()
    if args.dry_run_cpu:
        global DEVICE, BATCH, SEQ, VOCAB
        DEVICE, BATCH, SEQ, VOCAB = "cpu", 2, 32, 256
        for spec in MODELS.values():
            spec.update(n_layer=1, n_embd=32, n_head=2)
    elif not torch.cuda.is_available():
        print("bench/trainer_gpu.py needs a CUDA GPU (H100 or H200); none is visible here. "
              "Run bench/trainer_cpu.py on a CPU.", file=sys.stderr)
        return 2
    if args.steps <= args.warmup + 5:
        parser.error("--steps must exceed --warmup by more than 5")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    name = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu (dry run)"
    print(f"device: {name}; torch {torch.__version__}; peak {PEAK_FLOPS / 1e12:.1f} TFLOP/s bf16")
    for kind in [args.only] if args.only else list(MODELS):
        run(kind, args.rounds, args.steps, args.warmup)
    return 0


if __name__ == "__main__":
    sys.exit(main())
