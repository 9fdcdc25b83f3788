"""How close the plan and the running projection come to what a run measures: on this CPU, or
on real pods under the chart's operator.

Each round: a calibration job (A) runs and leaves its record; then a second job (B) of a
different size and data volume, in the same size class, is planned twice, with the FLOPs formula
only and calibrated from the records so far, and run. The plan's time is compared with B's
measured wall time, and the cost projected at 25% of B's steps (as the operator projects it:
cost accrued so far plus the trainer's reported time left on the same devices) with B's final
cost. Errors are |estimate - measured| / measured; medians over the rounds. Targets: calibrated
time within 30%; projected cost at 25% within 15%.

On this CPU (the default) A and B run through the same path as `trainwright run`, and only A's
runs calibrate. With `--real-pods` they are TrainingJobs on the real node (hack/devcluster),
launched by the chart's operator, which keeps every finished job's record in its ConfigMap and
plans each B from it, as on any cluster; since every B is recorded too, each round's B is a
different size (B of round r is planned from the A and B runs before it, never from itself).
B's wall time is its status's startTime to completionTime: pod start-up, image and all.

    .venv/bin/python bench/plan_accuracy.py [--rounds 3] [--threads 2] [--real-pods]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from trainwright.api import parse_job
from trainwright.api.status import Plan
from trainwright.controller.projection import project
from trainwright.controller.reconcile import parse_time
from trainwright.planner import Calibration, default_catalog, plan_job
from trainwright.planner.catalog import CPU

ROOT = Path(__file__).resolve().parents[1]
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
    ended = parse_time(steps[-1]["updatedAt"])
    start = ended - timedelta(seconds=wall_seconds)  # the run's start, as the last report dates it
    at = parse_time(report["updatedAt"])
    accrued = (at - start).total_seconds() * PRICE / 3600
    projection = project(report, accrued, 1, PRICE, start, at)
    final = wall_seconds * PRICE / 3600
    return abs(projection.cost_usd - final) / final


def error(estimate: float, measured: float) -> float:
    return abs(estimate - measured) / measured


def cpu_rounds(rounds: int, threads: int) -> list[dict]:
    import torch

    torch.set_num_threads(threads)
    work = Path(tempfile.mkdtemp(prefix="trainwright-plan-accuracy-"))
    second = parse_job(SECOND_JOB).spec
    calibration = Calibration()
    rows = []
    for round_ in range(rounds):
        _, record = run(CALIBRATION_JOB, work / f"a{round_}")
        calibration = calibration.add(record)
        formula = plan_job(second, CATALOG)
        calibrated = plan_job(second, CATALOG, calibration=calibration)
        outcome, _ = run(SECOND_JOB, work / f"b{round_}")
        rows.append(row(round_, formula.estimatedSeconds, calibrated, outcome.wall_seconds,
                        projection_error(work / f"b{round_}", outcome.wall_seconds)))
    return rows


def row(round_: int, formula_seconds: float, calibrated, measured: float, projection: float) -> dict:
    """One round's errors, printed as they come."""
    result = {"formula_error": error(formula_seconds, measured),
              "calibrated_error": error(calibrated.estimatedSeconds, measured), "projection_error": projection}
    print(f"round {round_ + 1}: B measured {measured:.1f}s; formula {formula_seconds:.1f}s "
          f"({result['formula_error']:.0%} off), calibrated {calibrated.estimatedSeconds:.1f}s "
          f"({result['calibrated_error']:.0%} off; {calibrated.estimateBasis}); projected cost at {PROJECT_AT:.0%} "
          f"of steps {projection:.1%} off the final", flush=True)
    return result


# --------------------------------------------------------------------------- real pods

SYSTEM_NS, JOBS_NS, RELEASE = "tw-system", "tw-bench", "trainwright"
# Every finished B calibrates the next plan too, so each round's B has its own size (all 1e6+).
POD_SECOND_JOBS = [SECOND_JOB, job("second-2", layers=5, hidden=224, samples=2500, epochs=2),
                   job("second-3", layers=4, hidden=288, samples=2000, epochs=3)]


def on_pods(document: dict, name: str) -> dict:
    """The job as a TrainingJob for the 2-core node: one pod, whole cores unlimited (as on this
    CPU: torch takes both), memory to spare."""
    spec = {**document["spec"], "resources": {"gpus": 0, "cpusPerWorker": 1, "memoryPerWorker": "3Gi"}}
    return {**document, "metadata": {"name": name, "namespace": JOBS_NS}, "spec": spec}


def pod_rounds(rounds: int) -> list[dict]:
    sys.path.insert(0, str(ROOT / "hack"))
    from devcluster import wait_for
    from devcluster.node import RealNodeCluster

    cluster = RealNodeCluster(images=("operator", "trainer"))
    cluster.start()
    try:
        print(f"real node up; helm install to a Ready operator "
              f"{cluster.install_chart(ROOT / 'charts' / 'trainwright', RELEASE, SYSTEM_NS):.1f}s", flush=True)
        cluster.restricted_namespace(JOBS_NS)

        def status(name: str) -> dict:
            found = cluster.kubectl_run("get", "trainingjob", name, "-n", JOBS_NS, "-o", "json")
            return (json.loads(found.stdout).get("status") or {}) if found.returncode == 0 else {}

        def finish(name: str, observe=lambda status: None) -> dict:
            def done() -> dict | None:
                now = status(name)
                observe(now)
                if now.get("phase") in ("Failed", "BudgetExceeded"):
                    raise RuntimeError(f"{name} is {now['phase']}: {now.get('conditions')}")
                return now if now.get("phase") == "Succeeded" else None
            return wait_for(done, timeout=900, interval=0.5, message=f"{name} Succeeded")

        def recorded() -> int:
            found = cluster.kubectl_run("get", "configmap", "trainwright-calibration", "-n", SYSTEM_NS, "-o", "json")
            return len(json.loads(json.loads(found.stdout)["data"]["runs.json"])["runs"]) if found.returncode == 0 else 0

        rows = []
        for round_ in range(rounds):
            cluster.kubectl("apply", "-f", "-", input=json.dumps(on_pods(CALIBRATION_JOB, f"a{round_}")))
            finish(f"a{round_}")
            wait_for(lambda: recorded() == 2 * round_ + 1, timeout=60, message="A's record in the ConfigMap")
            second = on_pods(POD_SECOND_JOBS[round_ % len(POD_SECOND_JOBS)], f"b{round_}")
            cluster.kubectl("apply", "-f", "-", input=json.dumps(second))
            plan = Plan.model_validate(wait_for(lambda: status(f"b{round_}").get("plan"), timeout=60, message="B's plan"))
            projected: list[float] = []

            def at_quarter(now: dict) -> None:
                progress, start = now.get("progress") or {}, now.get("startTime")
                if not projected and start and (progress.get("ratio") or 0) >= PROJECT_AT:
                    at, began = datetime.now(timezone.utc), parse_time(start)
                    accrued = (at - began).total_seconds() * PRICE / 3600
                    projected.append(project(progress, accrued, 1, PRICE, began, at).cost_usd)

            final = finish(f"b{round_}", at_quarter)
            measured = (parse_time(final["completionTime"]) - parse_time(final["startTime"])).total_seconds()
            formula = plan_job(parse_job(second).spec, CATALOG)
            rows.append(row(round_, formula.estimatedSeconds, plan, measured,
                            error(projected[0], final["cost"]["usd"]) if projected else float("nan")))
            wait_for(lambda: recorded() == 2 * round_ + 2, timeout=60, message="B's record in the ConfigMap")
        return rows
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (this CPU only)")
    parser.add_argument("--real-pods", action="store_true", help="TrainingJobs on the real node, under the chart")
    args = parser.parse_args()
    rows = pod_rounds(args.rounds) if args.real_pods else cpu_rounds(args.rounds, args.threads)

    def median(key: str) -> float:
        return statistics.median(r[key] for r in rows)

    second_jobs = POD_SECOND_JOBS[:args.rounds] if args.real_pods else [SECOND_JOB]
    print(f"\n{args.rounds} rounds{' on real pods' if args.real_pods else ''}, medians. Calibration job A: "
          f"{describe(CALIBRATION_JOB)}; job B: {'; '.join(describe(b) for b in second_jobs)}")
    checks = [("estimated time, calibrated", median("calibrated_error"), TIME_TARGET),
              ("estimated time, FLOPs formula only (for comparison)", median("formula_error"), None),
              (f"projected cost at {PROJECT_AT:.0%} progress", median("projection_error"), PROJECTION_TARGET)]
    failed = False
    for name, error_, target in checks:
        verdict = "" if target is None else f" (target <= {target:.0%}: {'PASS' if error_ <= target else 'FAIL'})"
        failed |= target is not None and error_ > target
        print(f"{name}: {error_:.1%} off the measured{verdict}")
    return 1 if failed else 0


def describe(document: dict) -> str:
    spec = document["spec"]
    shape = {k: spec["model"]["architecture"][k] for k in ("layers", "hidden")}
    return f"{shape}, {spec['dataset']['samples']} samples x {spec['training']['epochs']} epochs"


if __name__ == "__main__":
    sys.exit(main())
