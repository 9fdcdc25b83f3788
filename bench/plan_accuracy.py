"""How close the plan and the running projection come to what a run measures, on this CPU.

Each round: a calibration job (A) runs through the same path as `trainwright run` and leaves its
record; then a second job (B) of a different size and data volume, in the same size class, is
planned twice, with the FLOPs formula only and calibrated from the records so far, and run. The
plan's time is compared with B's measured wall time, and the cost projected at 25% of B's steps
(as the operator projects it: cost accrued so far plus the trainer's reported time left on the
same devices) with B's final cost. Errors are |estimate - measured| / measured; medians over
the rounds. Targets: calibrated time within 30%; projected cost at 25% within 15%.

    .venv/bin/python bench/plan_accuracy.py [--rounds 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from trainwright.api import parse_job
from trainwright.controller.projection import project
from trainwright.planner import Calibration, default_catalog, plan_job
from trainwright.planner.catalog import CPU

CATALOG = default_catalog()
PRICE = CATALOG.get(CPU).price_per_hour
TIME_TARGET, PROJECTION_TARGET, PROJECT_AT = 0.30, 0.15, 0.25


def job(name: str, layers: int, hidden: int, samples: int, epochs: int) -> dict:
    """A scratch causal-lm on the built-in patterns, CPU, one worker."""
    return {"apiVersion": "trainwright.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": name}, "spec": {
        "strategy": "scratch",
        "model": {"task": "causal-lm", "architecture": {"family": "gpt", "layers": layers, "hidden": hidden, "heads": 4,
                                                        "vocabSize": 256, "contextLength": 64}},
        "dataset": {"source": "builtin:patterns", "samples": samples, "validationSplit": 0.1},
        "resources": {"gpus": 0},
        "training": {"epochs": epochs, "batchSize": 16, "maxSeqLength": 64, "learningRate": 1e-3, "seed": 0},
        "checkpoint": {"everySteps": 100_000}}}


CALIBRATION_JOB = job("calibration", layers=3, hidden=192, samples=1500, epochs=1)  # about 1.4M parameters
SECOND_JOB = job("second", layers=4, hidden=256, samples=3000, epochs=2)  # about 3.2M: same decade, 4x the steps


def run(document: dict, output: Path):
    from trainwright.trainer.local import calibration_record, run_local

    parsed = parse_job(document)
    plan = plan_job(parsed.spec, CATALOG)
    outcome = run_local(parsed, plan, output, reporters=["jsonl"])
    return outcome, calibration_record(parsed, plan, outcome, CATALOG)


def projection_error(output: Path, wall_seconds: float) -> float:
    """The projected cost at the first report past PROJECT_AT of the steps, against the final cost."""
    events = [json.loads(line) for line in (output / "metrics.jsonl").read_text().splitlines()]
    steps = [e for e in events if e["event"] == "step" and e.get("ratio") is not None]
    report = next(e for e in steps if e["ratio"] >= PROJECT_AT)
    ended = datetime.fromisoformat(steps[-1]["updatedAt"].replace("Z", "+00:00"))
    start = ended - timedelta(seconds=wall_seconds)  # the run's start, as the last report dates it
    at = datetime.fromisoformat(report["updatedAt"].replace("Z", "+00:00"))
    accrued = (at - start).total_seconds() * PRICE / 3600
    projection = project(report, accrued, 1, PRICE, start, at)
    final = wall_seconds * PRICE / 3600
    return abs(projection.cost_usd - final) / final


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="trainwright-plan-accuracy-"))
    second = parse_job(SECOND_JOB).spec
    calibration = Calibration()
    rows = []
    for round_ in range(args.rounds):
        _, record = run(CALIBRATION_JOB, work / f"a{round_}")
        calibration = calibration.add(record)
        formula = plan_job(second, CATALOG)
        calibrated = plan_job(second, CATALOG, calibration=calibration)
        began = time.perf_counter()
        outcome, _ = run(SECOND_JOB, work / f"b{round_}")
        measured = outcome.wall_seconds
        row = {"measured": measured, "formula": formula.estimatedSeconds, "calibrated": calibrated.estimatedSeconds,
               "formula_error": abs(formula.estimatedSeconds - measured) / measured,
               "calibrated_error": abs(calibrated.estimatedSeconds - measured) / measured,
               "projection_error": projection_error(work / f"b{round_}", measured), "basis": calibrated.estimateBasis}
        rows.append(row)
        print(f"round {round_ + 1}: B measured {measured:.1f}s (bench wall {time.perf_counter() - began:.1f}s); "
              f"formula {row['formula']:.1f}s ({row['formula_error']:.0%} off), calibrated {row['calibrated']:.1f}s "
              f"({row['calibrated_error']:.0%} off; {row['basis']}); projected cost at {PROJECT_AT:.0%} of steps "
              f"{row['projection_error']:.1%} off the final", flush=True)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    print(f"\n{args.rounds} rounds, medians. Calibration job A: {CALIBRATION_JOB['spec']['model']['architecture']}, "
          f"{CALIBRATION_JOB['spec']['dataset']['samples']} samples x {CALIBRATION_JOB['spec']['training']['epochs']} epoch; "
          f"job B: {SECOND_JOB['spec']['model']['architecture']}, {SECOND_JOB['spec']['dataset']['samples']} samples x "
          f"{SECOND_JOB['spec']['training']['epochs']} epochs")
    checks = [("estimated time, calibrated", median("calibrated_error"), TIME_TARGET),
              ("estimated time, FLOPs formula only (for comparison)", median("formula_error"), None),
              (f"projected cost at {PROJECT_AT:.0%} progress", median("projection_error"), PROJECTION_TARGET)]
    failed = False
    for name, error, target in checks:
        verdict = "" if target is None else f" (target <= {target:.0%}: {'PASS' if error <= target else 'FAIL'})"
        failed |= target is not None and error > target
        print(f"{name}: {error:.1%} off the measured{verdict}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
