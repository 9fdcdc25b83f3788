"""Reading a dataset from S3 vs from a local file, as ratios against the local baseline measured
in the same run, against a real S3-compatible server on loopback (tests/s3kit.py: s3proxy).

1. Rows/s: every row of a jsonl corpus through the trainer's reader (records.iter_file_rows),
   from s3:// (storage.py: ranged reads of READ_BUFFER) vs the same file on local disk.
2. Training steps/s end to end: `run_job` of a tiny scratch causal-lm job (read, tokenise, train
   one epoch), its dataset.source s3:// vs a local path; steps / wall time of the whole run.

Target: S3 within 10% of local. Loopback has no network latency to speak of: this measures what
the trainer adds (client, buffering, copies), not a real bucket's bandwidth.
One untimed run of each first; then A and B alternate `--rounds` times; medians are reported.

    .venv/bin/python bench/data_s3.py [--megabytes 20] [--train-megabytes 2] [--rounds 5]
"""

import argparse
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import s3kit  # noqa: E402
import torch  # noqa: E402

from trainwright.api import parse_job  # noqa: E402
from trainwright.api.status import Plan  # noqa: E402
from trainwright.trainer.records import dataset_files, iter_file_rows  # noqa: E402
from trainwright.trainer.runner import run_job  # noqa: E402
from trainwright.trainer.settings import RunSettings  # noqa: E402
from trainwright.trainer.sources import resolve_source  # noqa: E402

BATCH, SEQ = 8, 64


def make_corpus(path: Path, megabytes: float) -> Path:
    rng = random.Random(0)
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 8))) for _ in range(2000)]
    with path.open("w", encoding="utf-8") as handle:
        while handle.tell() < megabytes * 1_000_000:
            handle.write(json.dumps({"text": " ".join(rng.choices(words, k=rng.randint(20, 120)))}) + "\n")
    return path


def read_rate(text: str) -> float:
    """Rows per second through the trainer's reader."""
    start = time.perf_counter()
    rows = sum(1 for file in dataset_files(resolve_source(text, ".", "spec.dataset.source"))
               for _ in iter_file_rows(file))
    return rows / (time.perf_counter() - start)


def train_rate(text: str, out: Path, endpoint: str) -> float:
    """Steps per second of a whole run (read, tokenise, train one epoch) over dataset `text`."""
    job = parse_job({
        "apiVersion": "trainwright.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "bench"},
        "spec": {"strategy": "scratch", "resources": {"gpus": 0},
                 "model": {"task": "causal-lm", "architecture": {"family": "gpt", "layers": 1, "hidden": 64, "heads": 2,
                                                                  "vocabSize": 512, "contextLength": SEQ}},
                 "dataset": {"source": text, "validationSplit": 0.01},
                 "objectStorage": {"secret": "bench", "endpoint": endpoint},
                 "training": {"epochs": 1, "batchSize": BATCH, "maxSeqLength": SEQ, "seed": 0},
                 "checkpoint": {"everySteps": 10**6}}})
    plan = Plan(strategy="scratch", reason="bench", gpus=0, launcher="job", workers=1, pods=1, gpusPerPod=0)
    settings = RunSettings(job=job, plan=plan, output_dir=str(out), checkpoint_dir=str(out / "checkpoints"),
                           pvc_root=".", reporters=[], workers=1)
    start = time.perf_counter()
    outcome = run_job(settings)
    return outcome.result.step / (time.perf_counter() - start)


def process_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def alternate(rounds: int, local, remote) -> tuple[float, float, float]:
    """Medians of local and s3 rates and of their per-round ratios (s3 / local), after one
    untimed run of each (the server's JIT, the page cache, first imports)."""
    local(), remote()
    pairs = []
    for i in range(rounds):
        a, b = (local(), remote()) if i % 2 == 0 else tuple(reversed((remote(), local())))
        pairs.append((a, b))
        print(f"  round {i + 1}: local {a:,.1f}  s3 {b:,.1f}  ratio {b / a:.3f}", flush=True)
    return (statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs),
            statistics.median(b / a for a, b in pairs))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--megabytes", type=float, default=20, help="corpus size for the read benchmark")
    parser.add_argument("--train-megabytes", type=float, default=2, help="corpus size for the training benchmark")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="trainwright-bench-s3-"))
    server = s3kit.server().start()
    try:
        os.environ.update(server.env())
        bucket = server.create_bucket("bench")
        big = make_corpus(work / "read.jsonl", args.megabytes)
        small = make_corpus(work / "train.jsonl", args.train_megabytes)
        big_url, small_url = server.put(bucket, "read.jsonl", big), server.put(bucket, "train.jsonl", small)
        print(f"s3proxy {server.endpoint}; {os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.2f}")

        print(f"1. rows/s reading {big.stat().st_size / 1e6:.1f} MB of jsonl")
        server_cpu = []

        def remote_read():
            before = process_cpu_seconds(server.process.pid)
            rate = read_rate(big_url)
            server_cpu.append(process_cpu_seconds(server.process.pid) - before)
            return rate

        local, remote, ratio = alternate(args.rounds, lambda: read_rate(str(big)), remote_read)
        print(f"   median: local {local:,.0f} rows/s, s3 {remote:,.0f} rows/s; s3/local {ratio:.3f} (target >= 0.90)")
        print(f"   the server's CPU per s3 read (median): {statistics.median(server_cpu[1:]):.2f} s, on the same cores as the reader")

        print(f"2. steps/s of a whole run (one epoch of a {small.stat().st_size / 1e6:.1f} MB corpus, batch {BATCH})")
        runs = iter(range(10**6))
        local, remote, ratio = alternate(
            args.rounds, lambda: train_rate(str(small), work / f"run-{next(runs)}", server.endpoint),
            lambda: train_rate(small_url, work / f"run-{next(runs)}", server.endpoint))
        print(f"   median: local {local:.2f} steps/s, s3 {remote:.2f} steps/s; s3/local {ratio:.3f} (target >= 0.90)")
        print(f"load average at the end {os.getloadavg()[0]:.2f}")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
