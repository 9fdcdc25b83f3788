"""The streaming data path's benchmark, as ratios against baselines measured in the same run.

1. Peak memory: a scratch causal-lm job's data path (read the source, train the tokenizer on its
   sample, tokenise into the token cache, memory-map it, train a few steps), each run in a fresh
   subprocess with a fresh cache; its own peak RSS (ru_maxrss) on a corpus 10x larger vs the small
   one (target: within 10%).
2. Tokenisation throughput: our cache build (reading the jsonl, checking each row, tokenising,
   writing shards) vs the `datasets` library's `map` over the same texts, already loaded, with the
   same fast tokenizer, truncation and batch size (target: >= 1.0x).
3. Training steps/s from the memory-mapped stream vs the in-memory `TokenizedSet` of the same
   blocks, the same model and loop (target: within 5%).

Corpora are generated here (jsonl of Zipf-distributed words) and kept in --data between runs.
A and B alternate `--rounds` times; medians are reported. The defaults took 17 minutes on a
loaded 2-core machine (most of it tokenising the 200 MB corpus five times).

    .venv/bin/python bench/data_stream.py [--small-mb 20] [--factor 10] [--rounds 5] [--steps 60]
    .venv/bin/python bench/data_stream.py --small-mb 200      # 200 MB vs 2 GB
"""

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

import numpy as np  # noqa: E402
from trainer_cpu import alternate  # noqa: E402 - the same A/B rounds as the trainer's bench

WORDS = 5000
VOCAB, SEQ, LAYERS, HIDDEN, HEADS, BATCH = 4096, 128, 2, 128, 4, 16
CHILD_STEPS = 20


def job_document(corpus: Path) -> dict:
    return {
        "apiVersion": "trainwright.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "bench"},
        "spec": {
            "strategy": "scratch", "resources": {"gpus": 0},
            "model": {"task": "causal-lm", "architecture": {"family": "gpt", "layers": LAYERS, "hidden": HIDDEN,
                                                             "heads": HEADS, "vocabSize": VOCAB, "contextLength": SEQ}},
            "dataset": {"source": str(corpus), "validationSplit": 0.01},
            "training": {"epochs": 1, "batchSize": BATCH, "maxSeqLength": SEQ, "seed": 0},
        },
    }


def make_corpus(path: Path, megabytes: int) -> Path:
    """`megabytes` MB of jsonl lines of 20-120 words drawn from a Zipf law (kept for later runs)."""
    if path.exists() and path.stat().st_size >= megabytes * 1_000_000:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = ["".join(rng.choice(letters, size=int(rng.integers(2, 9)))) for _ in range(WORDS)]
    weights = 1.0 / np.arange(1, WORDS + 1)
    weights /= weights.sum()
    partial = path.with_suffix(".partial")
    written = 0
    with open(partial, "w", encoding="utf-8") as handle:
        while written < megabytes * 1_000_000:
            ids = rng.choice(WORDS, size=200_000, p=weights)
            lengths = rng.integers(20, 121, size=4000)
            lines, start = [], 0
            for length in lengths:
                lines.append(json.dumps({"text": " ".join(words[i] for i in ids[start:start + length])}) + "\n")
                start += length
                if start + 120 > len(ids):
                    break
            chunk = "".join(lines)
            handle.write(chunk)
            written += len(chunk)
    partial.rename(path)
    return path


# --- 1. peak RSS of the whole data path, in a child process -----------------------------


def child_data_path(corpus: str, cache: str) -> None:
    """Runs in the child: the trainer's own prepare (streaming) and a few training steps."""
    import torch

    from trainwright.api import parse_job
    from trainwright.trainer.loop import train
    from trainwright.trainer.runner import prepare
    from trainwright.trainer.settings import RunSettings

    torch.set_num_threads(1)
    os.environ["TRAINWRIGHT_TOKEN_CACHE"] = cache
    job = parse_job(job_document(Path(corpus)))
    from trainwright.trainer.local import plan_locally

    with tempfile.TemporaryDirectory() as output:
        settings = RunSettings(job=job, plan=plan_locally(job), output_dir=output, checkpoint_dir=f"{output}/checkpoints",
                               reporters=[], workers=1)
        started = time.perf_counter()
        prepared = prepare(settings, torch.device("cpu"))
        prepared.config.max_steps = CHILD_STEPS
        prepared.config.log_every = 10**9
        prepared.config.checkpoint_every = 10**9
        result = train(prepared.built, prepared.train_set, None, prepared.config, device=torch.device("cpu"))
    print(json.dumps({"max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "blocks": len(prepared.train_set), "steps": result.step,
                      "seconds": time.perf_counter() - started}))


def peak_rss_mb(corpus: Path) -> float:
    cache = tempfile.mkdtemp(prefix="bench-token-cache-")
    try:
        done = subprocess.run([sys.executable, __file__, "--child", str(corpus), cache], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"child failed:\n{done.stderr[-3000:]}")
        report = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"    {corpus.name}: {report['blocks']:,} blocks, {report['steps']} steps, {report['seconds']:.1f} s, "
              f"peak RSS {report['max_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
        return report["max_rss_mb"]
    finally:
        shutil.rmtree(cache, ignore_errors=True)


# --- 2. tokenisation throughput ---------------------------------------------------------


def bench_tokenizer(corpus: Path):
    from trainwright.trainer.models import scratch_tokenizer
    from trainwright.trainer.records import dataset_files
    from trainwright.trainer.sources import resolve_source
    from trainwright.trainer.token_cache import iter_texts
    from trainwright.api import parse_job

    arch = parse_job(job_document(corpus)).spec.model.architecture
    files = dataset_files(resolve_source(str(corpus), "."))
    return scratch_tokenizer(arch, iter_texts(files, "text")), files


def ours_megabytes_per_second(corpus: Path, tokenizer, files) -> float:
    from trainwright.trainer.token_cache import TokenSettings, open_or_build

    settings = TokenSettings(task="causal-lm", text_field="text", max_length=SEQ, validation_split=0.0, seed=0)
    with tempfile.TemporaryDirectory() as cache:
        started = time.perf_counter()
        result = open_or_build(Path(cache), files, tokenizer, settings)
        seconds = time.perf_counter() - started
    assert result.built
    return corpus.stat().st_size / 1e6 / seconds


def datasets_megabytes_per_second(corpus: Path, tokenizer, loaded) -> float:
    from trainwright.trainer.token_cache import BATCH_ROWS

    started = time.perf_counter()
    loaded.map(lambda batch: tokenizer(batch["text"], truncation=True, max_length=SEQ), batched=True,
               batch_size=BATCH_ROWS, remove_columns=["text"], load_from_cache_file=False)
    return corpus.stat().st_size / 1e6 / (time.perf_counter() - started)


# --- 3. training steps/s: stream vs memory ----------------------------------------------


def tiny_gpt():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    return GPT2LMHeadModel(GPT2Config(vocab_size=VOCAB, n_positions=SEQ, n_embd=HIDDEN, n_layer=LAYERS, n_head=HEADS))


def steps_per_second(data, steps: int) -> float:
    import torch

    from trainwright.trainer.loop import LoopConfig, train
    from trainwright.trainer.models import BuiltModel

    config = LoopConfig(task="causal-lm", epochs=1000, batch_size=BATCH, max_steps=steps, log_every=10**9,
                        checkpoint_every=10**9)
    result = train(BuiltModel(tiny_gpt(), tokenizer=None, max_length=SEQ), data, None, config, device=torch.device("cpu"))
    return result.step / result.seconds


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child_data_path(sys.argv[2], sys.argv[3])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small-mb", type=int, default=20, help="the small corpus; the large one is --factor times it")
    parser.add_argument("--factor", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30, help="training steps per steps/s measurement")
    parser.add_argument("--data", type=Path, default=Path(tempfile.gettempdir()) / "trainwright-bench-data")
    parser.add_argument("--skip", action="append", default=[], choices=["rss", "tokenise", "steps"])
    args = parser.parse_args()
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(1)
    small = make_corpus(args.data / f"corpus-{args.small_mb}mb.jsonl", args.small_mb)
    print(f"corpora: {small.stat().st_size / 1e6:.0f} MB and {args.factor}x; scratch GPT-2 {LAYERS} layers, hidden {HIDDEN}, "
          f"vocab {VOCAB}, blocks of {SEQ}; {args.rounds} alternating rounds; {os.cpu_count()} CPUs; "
          f"load average {os.getloadavg()[0]:.1f} at start")

    if "rss" not in args.skip:
        large = make_corpus(args.data / f"corpus-{args.small_mb * args.factor}mb.jsonl", args.small_mb * args.factor)
        print(f"1. peak RSS of the data path (a subprocess each): {small.name} vs {large.name}", flush=True)
        small_rss, large_rss = alternate(args.rounds, lambda: peak_rss_mb(small), lambda: peak_rss_mb(large))
        ratio = statistics.median(large_rss) / statistics.median(small_rss)
        print(f"   peak RSS {small.name}: {statistics.median(small_rss):8.0f} MB (median)")
        print(f"   peak RSS {large.name}: {statistics.median(large_rss):8.0f} MB (median)")
        print(f"   ratio large/small:  {ratio:.3f}x (target <= 1.10x)", flush=True)

    tokenizer, files = bench_tokenizer(small)
    if "tokenise" not in args.skip:
        import datasets

        datasets.disable_progress_bars()
        with tempfile.TemporaryDirectory() as hf_cache:
            loaded = datasets.load_dataset("json", data_files=str(small), split="train", cache_dir=hf_cache)
            print(f"2. tokenisation of {small.name} ({len(loaded):,} rows), batches of 1000, max length {SEQ}", flush=True)
            ours, theirs = alternate(args.rounds, lambda: ours_megabytes_per_second(small, tokenizer, files),
                                     lambda: datasets_megabytes_per_second(small, tokenizer, loaded))
        print(f"   token cache build:  {statistics.median(ours):8.2f} MB/s (median; reading, checking, writing shards included)")
        print(f"   datasets map:       {statistics.median(theirs):8.2f} MB/s (median; loading excluded)")
        print(f"   ratio ours/datasets: {statistics.median(ours) / statistics.median(theirs):.2f}x (target >= 1.0x)", flush=True)

    if "steps" not in args.skip:
        from trainwright.trainer.data import TokenizedSet
        from trainwright.trainer.token_cache import TokenSettings, open_or_build

        settings = TokenSettings(task="causal-lm", text_field="text", max_length=SEQ, validation_split=0.0, seed=0)
        with tempfile.TemporaryDirectory() as cache:
            stream = open_or_build(Path(cache), files, tokenizer, settings).sets.train
            memory = TokenizedSet(stream.collate(range(len(stream)))["input_ids"].tolist(), None, tokenizer.pad_token_id,
                                  "causal-lm")
            print(f"3. training steps/s on the same {len(stream):,} blocks, batch {BATCH}, {args.steps} steps", flush=True)
            streamed, in_memory = alternate(args.rounds, lambda: steps_per_second(stream, args.steps),
                                            lambda: steps_per_second(memory, args.steps))
        print(f"   from the stream:    {statistics.median(streamed):8.2f} steps/s (median)")
        print(f"   in memory:          {statistics.median(in_memory):8.2f} steps/s (median)")
        print(f"   ratio stream/memory: {statistics.median(streamed) / statistics.median(in_memory):.3f}x (target >= 0.95x)")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
