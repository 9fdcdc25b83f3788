"""GPU benchmarks of the trainer's loop on one H100/H200, against the transformers Trainer in the same run.

1. GPT-2 124M built from config, trained from scratch: batch 16 x 1024 tokens.
2. GPT-2 medium (355M, from config: no hub needed) with LoRA r=16 on c_attn (peft).

Each is run by our loop (bf16 autocast, fused AdamW, torch.compile, the trainer's default speed
settings), by the Trainer with its defaults, and by the Trainer with bf16 and torch_compile; the
variants alternate `--rounds` times and medians are reported. Tokens/s is measured in steady
state: between the first report after `--warmup` steps (compilation done) and the last step, with
device syncs at both. MFU = tokens/s x (6N + 12 L H Q T) / 989.5e12 (dense bf16 peak of an
H100/H200), with N the parameters less the position embeddings (nanoGPT's count, with the real
vocabulary even when the embedding is padded). For LoRA the same formula overstates the work (the
frozen base has no weight gradients: about 4N), so both are shown.
Targets: scratch MFU >= 45%; LoRA tokens/s >= 4x the Trainer's defaults and 1.3x the Trainer bf16 + compile.

--ablation (scratch model only) measures each speed lever alone against the baseline (our loop
as it was before the levers: every lever off), in alternating rounds, medians, then checks that
the levers keep the learning: 200 steps on the same learnable data and seed, bf16 with every
exact lever vs fp32 without levers or compile, compared as the loop reports the loss (the mean of
each 10 steps: 20 points); passes when the largest relative difference is under 2%. It runs the
parity check first, then as many rounds as `--budget-s` allows (default 420 s), and prints the plan.

    .venv/bin/python bench/trainer_gpu.py [--rounds 5] [--steps 30] [--warmup 10] [--only scratch|lora] [--ours LEVERS]
    .venv/bin/python bench/trainer_gpu.py --ablation [--rounds 2] [--levers all,vocab64,...] [--budget-s 420]
    .venv/bin/python bench/trainer_gpu.py --dry-run-cpu --rounds 1 --steps 16 --warmup 5   # checks the script
    .venv/bin/python bench/trainer_gpu.py --dry-run-cpu --ablation --rounds 1 --steps 16 --warmup 5 --parity-steps 40
"""

import argparse
import contextlib
import dataclasses
import gc
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parent.parent
try:  # a checkout without the package installed (the GPU machine): its two source folders
    import trainwright.trainer  # noqa: F401
except ImportError:
    sys.path[:0] = [str(ROOT / "operator"), str(ROOT / "trainer")]

import torch  # noqa: E402
from torch import nn  # noqa: E402

from trainwright.trainer import models as trainer_models  # noqa: E402
from trainwright.trainer.loop import LoopConfig  # noqa: E402

PEAK_FLOPS = 989.5e12
BATCH, SEQ = 16, 1024
DEVICE = "cuda"
VOCAB = 50257
MODELS = {
    "scratch": {"n_layer": 12, "n_embd": 768, "n_head": 12, "lora": None, "title": "GPT-2 124M from scratch"},
    "lora": {"n_layer": 24, "n_embd": 1024, "n_head": 16, "lora": 16, "title": "GPT-2 medium 355M, LoRA r=16"},
}
PARITY_BOUND = 0.02
PARITY_WINDOW = 10  # steps per point of the compared curves: the loop's report interval, whose loss is their mean


@dataclasses.dataclass(frozen=True)
class Settings:
    """How our loop runs: the model's and the loop's speed settings. The defaults are the baseline:
    the loop as it was before the levers (every lever off)."""

    vocab_multiple: int | None = None  # models.PaddedVocabGPT2LMHeadModel (scratch only)
    attention: str = "sdpa"  # or models.CAUSAL_SDPA
    name_loss: bool = False  # models.name_causal_lm_loss
    omit_full_mask: bool = False  # LoopConfig.omit_full_mask
    compile: bool = True  # on CUDA
    compile_mode: str | None = None  # LoopConfig.compile_mode
    batch: int | None = None  # micro-batch; None: BATCH
    accum: int = 1
    precision: str = "bf16"  # on CUDA; fp32 on CPU
    dropout: bool = True  # GPT-2's 0.1 (a model change, not a trainer lever)
    liger: bool = False  # Liger's fused linear cross-entropy (bench only)
    sdpa_backend: str | None = None  # limit SDPA to one backend: "cudnn", "flash"

    def tokens_per_step(self) -> int:
        return (self.batch or BATCH) * self.accum * SEQ

    def __str__(self) -> str:
        changed = [f"{f.name}={getattr(self, f.name)}" for f in dataclasses.fields(self)
                   if getattr(self, f.name) != f.default]
        return ", ".join(changed) or "every lever off"


BASELINE = Settings()
EXACT_LEVERS = {"vocab_multiple": 64, "name_loss": True, "attention": trainer_models.CAUSAL_SDPA, "omit_full_mask": True}
# name: (what it is, what it changes from the baseline, CUDA only)
LEVERS: dict[str, tuple[str, dict, bool]] = {
    "all": ("every exact lever: vocab64 + named-loss + causal-sdpa", EXACT_LEVERS, False),
    "causal-sdpa": ("models.CAUSAL_SDPA and no all-ones mask: SDPA is_causal (flash) under compile", {
        "attention": trainer_models.CAUSAL_SDPA, "omit_full_mask": True}, False),
    "named-loss": ("loss named (models.name_causal_lm_loss): one compiled graph, none at the loss", {"name_loss": True}, False),
    "vocab64": ("vocabulary padded to a multiple of 64: 50257 -> 50304 (128 gives the same)", {"vocab_multiple": 64}, False),
    "no-mask": ("no all-ones mask (LoopConfig.omit_full_mask) with stock SDPA (flash under compile on torch >= 2.14)",
                {"omit_full_mask": True}, False),
    "reduce-overhead": ("torch.compile mode reduce-overhead (CUDA graphs)", {"compile_mode": "reduce-overhead"}, True),
    "micro32": ("micro-batch 32 (32 x 1024 tokens a step)", {"batch": 32}, False),
    "micro8x2": ("micro-batch 8, 2 accumulated (16 x 1024 tokens a step)", {"batch": 8, "accum": 2}, False),
    "no-dropout": ("dropout 0, not GPT-2's 0.1 (changes the model: not a trainer lever)", {"dropout": False}, False),
    "liger": ("Liger fused linear cross-entropy (liger-kernel; skipped when not importable)", {"liger": True}, True),
    "cudnn": ("causal-sdpa with SDPA limited to the cuDNN backend", {
        "attention": trainer_models.CAUSAL_SDPA, "omit_full_mask": True, "sdpa_backend": "cudnn"}, True),
    "max-autotune": ("torch.compile mode max-autotune-no-cudagraphs (minutes to compile: not in the default list)",
                     {"compile_mode": "max-autotune-no-cudagraphs"}, True),
}
DEFAULT_ABLATION = ["all", "causal-sdpa", "named-loss", "vocab64", "no-dropout", "reduce-overhead", "micro32", "no-mask",
                    "liger", "micro8x2", "cudnn"]


def trainer_defaults() -> Settings:
    """What a job gets from the trainer today (models' and LoopConfig's defaults)."""
    return Settings(vocab_multiple=trainer_models.VOCAB_MULTIPLE, attention=trainer_models.ATTENTION, name_loss=True,
                    omit_full_mask=LoopConfig(task="causal-lm").omit_full_mask)


def with_levers(base: Settings, names: list[str]) -> Settings:
    for name in names:
        base = dataclasses.replace(base, **LEVERS[name][1])
    return base


class LigerLoss(nn.Module):
    """A GPT-2 LM whose loss is Liger's fused linear cross-entropy: the logits are never materialised."""

    def __init__(self, model: nn.Module):
        super().__init__()
        from liger_kernel.transformers import LigerFusedLinearCrossEntropyLoss

        self.model, self.loss = model, LigerFusedLinearCrossEntropyLoss()

    def forward(self, input_ids, attention_mask=None, labels=None):
        hidden = self.model.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        weight = self.model.lm_head.weight
        loss = self.loss(weight, hidden[:, :-1].reshape(-1, hidden.shape[-1]).to(weight.dtype), labels[:, 1:].reshape(-1))
        return dataclasses.make_dataclass("Output", ["loss"])(loss)


def build_model(kind: str, settings: Settings = BASELINE):
    from transformers import GPT2Config, GPT2LMHeadModel

    spec = MODELS[kind]
    torch.manual_seed(0)
    if settings.attention == trainer_models.CAUSAL_SDPA:
        trainer_models.register_causal_sdpa()
    dropout = {} if settings.dropout else {"resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
    config = GPT2Config(n_layer=spec["n_layer"], n_embd=spec["n_embd"], n_head=spec["n_head"], n_positions=SEQ,
                        vocab_size=VOCAB, attn_implementation=settings.attention, bos_token_id=0, eos_token_id=0, **dropout)
    if settings.vocab_multiple and not spec["lora"]:
        model = trainer_models.PaddedVocabGPT2LMHeadModel(config, settings.vocab_multiple)
    else:
        model = GPT2LMHeadModel(config)
    if settings.name_loss:
        trainer_models.name_causal_lm_loss(model)
    if spec["lora"]:
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(r=spec["lora"], lora_alpha=2 * spec["lora"], lora_dropout=0.0,
                                                 target_modules=["c_attn"], task_type=TaskType.CAUSAL_LM))
    if settings.liger:
        model = LigerLoss(model)
    return model


def flops_per_token(kind: str, weight_grads: bool = True) -> float:
    spec = MODELS[kind]
    layers, hidden, heads = spec["n_layer"], spec["n_embd"], spec["n_head"]
    n = 12 * layers * hidden**2 + VOCAB * hidden  # blocks + token embedding (tied head); no position embeddings
    return (6 if weight_grads else 4) * n + 12 * layers * heads * (hidden // heads) * SEQ


def random_blocks(steps: int, per_step: int | None = None) -> list[list[int]]:
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, VOCAB, (steps * (per_step or BATCH), SEQ), generator=generator).tolist()


def learnable_blocks(count: int) -> list[list[int]]:
    """Token streams with structure to learn (random tokens teach nothing): a fixed random chain over
    the first 8192 ids (fewer in a dry run), each id followed by one of 4 successors (p .5 .25 .15 .1)."""
    generator = torch.Generator().manual_seed(1)
    used = min(8192, VOCAB)
    successors = torch.randint(0, used, (used, 4), generator=generator)
    probabilities = torch.tensor([0.5, 0.25, 0.15, 0.1]).expand(count, 4)
    current = torch.randint(0, used, (count,), generator=generator)
    columns = [current]
    for _ in range(SEQ - 1):
        current = successors[current, torch.multinomial(probabilities, 1, generator=generator).squeeze(1)]
        columns.append(current)
    return torch.stack(columns, 1).tolist()


def sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


class StepClock:
    """A reporter that notes when each report (a host sync) happened, and the loss it reported."""

    def __init__(self, count_syncs_after: int | None = None):
        self.marks: list[tuple[int, float]] = []
        self.losses: dict[int, float] = {}
        self.count_syncs_after = count_syncs_after
        self.counting = False

    def on_step(self, progress):
        sync()
        self.marks.append((progress.step, time.perf_counter()))
        self.losses.setdefault(progress.step, progress.loss)
        if self.count_syncs_after is not None and progress.step >= self.count_syncs_after and not self.counting:
            self.counting = True
            torch.cuda.set_sync_debug_mode("warn")

    def on_eval(self, metrics): pass
    def on_checkpoint(self, step, path): pass
    def close(self): pass


def steady_rate(marks: list[tuple[int, float]], warmup: int, tokens_per_step: int | None = None) -> float:
    first_time_at = {}
    for step, moment in marks:  # a step can be reported twice (the loop's final report); the first counts
        first_time_at.setdefault(step, moment)
    after = sorted((step, moment) for step, moment in first_time_at.items() if step >= warmup)
    (first_step, first_time), (last_step, last_time) = after[0], after[-1]
    return (last_step - first_step) * (tokens_per_step or BATCH * SEQ) / (last_time - first_time)


@contextlib.contextmanager
def sdpa_backend(name: str | None):
    if name is None:
        yield
        return
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel({"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION}[name]):
        yield


def train_ours(kind: str, settings: Settings, blocks: list[list[int]], steps: int, clock: StepClock,
               log_every: int = 5, lr: float | None = None):
    from trainwright.trainer.data import TokenizedSet
    from trainwright.trainer.loop import train
    from trainwright.trainer.models import BuiltModel

    data = TokenizedSet(blocks, None, pad_id=0, task="causal-lm")
    cuda = DEVICE == "cuda"
    config = LoopConfig(task="causal-lm", epochs=1, batch_size=settings.batch or BATCH, grad_accum=settings.accum,
                        lr=lr or (3e-4 if kind == "scratch" else 2e-4), precision=settings.precision if cuda else "fp32",
                        compile=settings.compile and cuda, compile_mode=settings.compile_mode,
                        omit_full_mask=settings.omit_full_mask, max_steps=steps, log_every=log_every,
                        checkpoint_every=10**9)
    device = torch.device("cuda", 0) if cuda else torch.device("cpu")
    with sdpa_backend(settings.sdpa_backend if cuda else None):
        return train(BuiltModel(build_model(kind, settings), None, SEQ), data, None, config, device=device, reporter=clock)


def ours(kind: str, steps: int, warmup: int, settings: Settings | None = None) -> float:
    settings = settings or trainer_defaults()
    clock = StepClock()
    per_step = (settings.batch or BATCH) * settings.accum
    train_ours(kind, settings, random_blocks(steps, per_step), steps, clock)
    return steady_rate(clock.marks, warmup, settings.tokens_per_step())


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


def measure(name: str, function) -> tuple[float, str | None]:
    """One run; a failure (out of memory, a kernel that cannot run) is a missing number with its reason."""
    try:
        return function(), None
    except Exception as error:  # noqa: BLE001 - a variant that cannot run is a result, not the end of the bench
        reason = f"{type(error).__name__}: {str(error).splitlines()[0][:160] if str(error) else ''}"
        print(f"  {name}: failed: {reason}", file=sys.stderr, flush=True)
        return float("nan"), reason
    finally:
        free_memory()


def run(kind: str, rounds: int, steps: int, warmup: int, ours_settings: Settings) -> None:
    variants = {
        "ours (bf16, fused AdamW, compile)": lambda: ours(kind, steps, warmup, ours_settings),
        "Trainer defaults": lambda: hf_trainer(kind, steps, warmup, tuned=False),
        "Trainer bf16 + torch_compile": lambda: hf_trainer(kind, steps, warmup, tuned=True),
    }
    results = {name: [] for name in variants}
    for round_ in range(rounds):
        for name, function in variants.items():
            results[name].append(measure(name, function)[0])
            print(f"  {MODELS[kind]['title']} round {round_ + 1} {name}: {results[name][-1]:,.0f} tokens/s",
                  file=sys.stderr, flush=True)
    print(f"\n{MODELS[kind]['title']}: batch {BATCH} x {SEQ}, {steps} steps ({warmup} warmup), median of {rounds}")
    print(f"  ours: {ours_settings}")
    baseline = statistics.median(results["Trainer defaults"])
    tuned = statistics.median(results["Trainer bf16 + torch_compile"])
    for name, values in results.items():
        rate = statistics.median(values)
        mfu = rate * flops_per_token(kind) / PEAK_FLOPS
        line = f"  {name:36s} {rate:12,.0f} tokens/s  MFU {mfu:6.1%}"
        if MODELS[kind]["lora"]:
            line += f" (4N: {rate * flops_per_token(kind, weight_grads=False) / PEAK_FLOPS:6.1%})"
        print(f"{line}  {rate / baseline:5.2f}x Trainer defaults  {rate / tuned:5.2f}x Trainer bf16 + compile")


def smoothed_curve(losses: dict[int, float], steps: int) -> list[float]:
    """The loop's reports every PARITY_WINDOW steps: each the mean loss of the steps since the last."""
    return [losses[s] for s in range(PARITY_WINDOW, steps + 1, PARITY_WINDOW)]


def parity(steps: int, warmup: int) -> bool:
    """bf16 + every exact lever vs fp32 without levers or compile: same data, same seed."""
    blocks = learnable_blocks(steps * BATCH)
    cuda = DEVICE == "cuda"
    runs = {  # on CPU (dry run) both are fp32 and eager: the check of the script, not of the levers' numerics
        f"{'bf16, compiled' if cuda else 'fp32, eager'}, every exact lever": with_levers(BASELINE, ["all"]),
        f"fp32{' (TF32 matmuls)' if cuda else ''}, eager, no lever": dataclasses.replace(BASELINE, precision="fp32", compile=False),
    }
    curves, syncs = {}, None
    for name, settings in runs.items():
        started = time.perf_counter()
        counting = DEVICE == "cuda" and settings.compile
        clock = StepClock(count_syncs_after=warmup if counting else None)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                train_ours("scratch", settings, blocks, steps, clock, log_every=PARITY_WINDOW)
            finally:
                if clock.counting:
                    torch.cuda.set_sync_debug_mode(0)
        if counting:
            reports = sum(1 for step in clock.losses if step >= warmup)
            flagged = sum(1 for w in caught if "synchroniz" in str(w.message))
            syncs = (flagged, steps - warmup, reports)
        curves[name] = smoothed_curve(clock.losses, steps)
        free_memory()
        print(f"  parity run '{name}': {time.perf_counter() - started:.0f} s, "
              f"{steady_rate(clock.marks, warmup):,.0f} tokens/s after step {warmup}", file=sys.stderr, flush=True)
    (fast_name, fast), (reference_name, reference) = curves.items()
    differences = [abs(a - b) / b for a, b in zip(fast, reference, strict=True)]
    worst = max(differences)
    passed = worst < PARITY_BOUND
    print(f"\nLoss parity: GPT-2 124M from scratch, {steps} steps of {BATCH} x {SEQ} on learnable data (seed 0), "
          f"lr 3e-4; each point the mean loss of {PARITY_WINDOW} steps (the loop's report)")
    print(f"  {'step':>6s} {fast_name:>34s} {reference_name:>34s} {'rel. diff':>9s}")
    for i, (a, b, d) in enumerate(zip(fast, reference, differences)):
        print(f"  {(i + 1) * PARITY_WINDOW:6d} {a:34.4f} {b:34.4f} {d:9.2%}")
    print(f"  largest relative difference {worst:.2%} (step {(differences.index(worst) + 1) * PARITY_WINDOW}): "
          f"{'PASS' if passed else 'FAIL'} (bound {PARITY_BOUND:.0%})")
    if syncs is not None:
        print(f"  host syncs flagged by torch.cuda.set_sync_debug_mode in the bf16 run after step {warmup}: {syncs[0]} "
              f"in {syncs[1]} steps with {syncs[2]} reports (the bench's clock and the loop's loss read: 2 per report)")
    return passed


def ablation(levers: list[str], rounds: int, steps: int, warmup: int, parity_steps: int, budget_s: float) -> None:
    started = time.perf_counter()
    skipped = {n: "CUDA only" for n in levers if LEVERS[n][2] and DEVICE != "cuda"}
    if "liger" in levers and "liger" not in skipped:
        try:
            import liger_kernel  # noqa: F401
        except ImportError:
            skipped["liger"] = "liger-kernel is not importable"
    names = ["baseline"] + [n for n in levers if n not in skipped]
    settings = {"baseline": BASELINE, **{n: with_levers(BASELINE, [n]) for n in names[1:]}}
    parity_estimate = 60 + 2 * parity_steps * BATCH * SEQ / 150e3  # a compilation, and 150k tokens/s or better
    round_estimate = len(names) * 40  # a compiled run: about 40 s on an H200, mostly compilation
    print(f"\nAblation plan: the parity check ({parity_steps} steps bf16 compiled + {parity_steps} steps fp32 eager), then "
          f"up to {rounds} round(s) of {len(names)} runs of {steps} steps ({warmup} warmup) each, in the order below; "
          f"at most {budget_s:.0f} s in all: a run starts only while the slowest run so far still fits, and runs left out "
          f"are listed. Estimated (H200; guesses until measured): parity {parity_estimate:.0f} s, a round "
          f"{round_estimate:.0f} s, so about {max(0.0, (budget_s - parity_estimate) / round_estimate):.1f} round(s) fit.")
    for name, reason in skipped.items():
        print(f"  skipped {name}: {reason}")
    print(f"  {'baseline':16s} our loop before the levers: {BASELINE}")
    for name in names[1:]:
        print(f"  {name:16s} {LEVERS[name][0]}")
    sys.stdout.flush()

    passed = parity(parity_steps, warmup)
    results: dict[str, list[float]] = {name: [] for name in names}
    failures: dict[str, str] = {}
    slowest = 0.0
    for round_ in range(rounds):
        for name in names:
            elapsed = time.perf_counter() - started
            if elapsed + slowest > budget_s:
                print(f"  budget: {elapsed:.0f} s spent, the slowest run took {slowest:.0f} s; "
                      f"stopping before round {round_ + 1} {name}", file=sys.stderr, flush=True)
                break
            run_started = time.perf_counter()
            rate, failure = measure(name, lambda: ours("scratch", steps, warmup, settings[name]))
            slowest = max(slowest, time.perf_counter() - run_started)
            if failure:
                failures[name] = failure
            results[name].append(rate)
            print(f"  ablation round {round_ + 1} {name}: {rate:,.0f} tokens/s ({time.perf_counter() - run_started:.0f} s)",
                  file=sys.stderr, flush=True)
        else:
            continue
        break

    base_values = [v for v in results["baseline"] if v == v]
    base = statistics.median(base_values) if base_values else float("nan")
    print(f"\nAblation: GPT-2 124M from scratch, {steps} steps ({warmup} warmup), each lever alone vs the baseline; "
          "median of the rounds run")
    print(f"  {'lever':16s} {'tokens/s':>12s} {'MFU':>7s} {'vs baseline':>11s} {'rounds':>6s}")
    for name in names:
        values = [v for v in results[name] if v == v]
        rate = statistics.median(values) if values else float("nan")
        note = f"  {failures[name]}" if name in failures else ("  not measured: budget" if not results[name] else "")
        print(f"  {name:16s} {rate:12,.0f} {rate * flops_per_token('scratch') / PEAK_FLOPS:7.1%} "
              f"{rate / base:10.2f}x {len(values):6d}{note}")
    print(f"  MFU target 45%: {PEAK_FLOPS * 0.45 / flops_per_token('scratch'):,.0f} tokens/s. "
          f"Loss parity: {'PASS' if passed else 'FAIL'}. Total {time.perf_counter() - started:.0f} s.")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 5; 2 with --ablation)")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=10, help="steps before timing starts (compilation, allocator)")
    parser.add_argument("--only", choices=sorted(MODELS))
    parser.add_argument("--ours", default=None, help="comma list of levers for our loop in the comparison "
                        "(default: the trainer's default settings)")
    parser.add_argument("--ablation", action="store_true", help="scratch: each lever alone vs the baseline, then loss parity")
    parser.add_argument("--levers", default=",".join(DEFAULT_ABLATION), help=f"ablation levers, in order; of {', '.join(LEVERS)}")
    parser.add_argument("--parity-steps", type=int, default=200)
    parser.add_argument("--budget-s", type=float, default=420, help="ablation: start no run that would end past this")
    parser.add_argument("--dry-run-cpu", action="store_true",
                        help="check the script on a CPU with toy sizes (numbers meaningless)")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.ablation else 5)
    chosen = [n for n in args.levers.split(",") if n] if args.ablation else []
    ours_levers = [n for n in (args.ours or "").split(",") if n]
    unknown = [n for n in chosen + ours_levers if n not in LEVERS]
    if unknown:
        parser.error(f"unknown lever(s) {', '.join(unknown)}; known: {', '.join(LEVERS)}")
    if args.dry_run_cpu:
        global DEVICE, BATCH, SEQ, VOCAB
        DEVICE, BATCH, SEQ, VOCAB = "cpu", 2, 32, 250  # 250: padding to 64 has work to do
        for spec in MODELS.values():
            spec.update(n_layer=1, n_embd=32, n_head=2)
    elif not torch.cuda.is_available():
        print("bench/trainer_gpu.py needs a CUDA GPU (H100 or H200); none is visible here. "
              "Run bench/trainer_cpu.py on a CPU.", file=sys.stderr)
        return 2
    if args.steps <= args.warmup + 5:
        parser.error("--steps must exceed --warmup by more than 5")
    if args.ablation and (args.parity_steps % PARITY_WINDOW or args.parity_steps <= args.warmup):
        parser.error(f"--parity-steps must be a multiple of {PARITY_WINDOW} and exceed --warmup")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    name = torch.cuda.get_device_name(0) if DEVICE == "cuda" else "cpu (dry run)"
    import transformers

    print(f"device: {name}; torch {torch.__version__}; transformers {transformers.__version__}; "
          f"peak {PEAK_FLOPS / 1e12:.1f} TFLOP/s bf16")
    if args.ablation:
        ablation(chosen, rounds, args.steps, args.warmup, args.parity_steps, args.budget_s)
        return 0
    ours_settings = with_levers(trainer_defaults(), ours_levers)
    for kind in [args.only] if args.only else list(MODELS):
        run(kind, rounds, args.steps, args.warmup, ours_settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
