"""`trainwright run` and `trainwright compare`, added to the CLI by `add_commands`.

Heavy imports (torch, transformers, Ray) happen inside the commands, so `trainwright --help`
stays quick. Bad input is one line on stderr and exit code 1.
"""

import argparse
import functools
import sys

from trainwright.api import pod_contract as pod


def _one_line_errors(func):
    @functools.wraps(func)
    def wrapper(args) -> int:
        from trainwright.trainer.errors import TrainerError

        try:
            return func(args)
        except TrainerError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return wrapper


def _limit_threads(threads: int | None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)


@_one_line_errors
def cmd_run(args) -> int:
    from pathlib import Path

    from rich.console import Console

    from trainwright.api import load_documents
    from trainwright.planner import load_calibration, load_catalog, plan_job, record_run
    from trainwright.trainer.local import calibration_record, run_local

    _limit_threads(args.threads)
    catalog = load_catalog(args.catalog)
    calibration = None if args.no_calibration else load_calibration(args.calibration)
    documents = load_documents(args.file)
    console = Console(highlight=False)
    status = 0
    for document in documents:
        job = document.job
        plan = job.status.plan if job.status and job.status.plan else plan_job(job.spec, catalog, calibration=calibration)
        output = Path(args.output) if args.output and len(documents) == 1 else Path(args.output or "runs") / job.metadata.name
        console.print(f"[bold]{job.metadata.name}[/bold]: {plan.strategy}, {args.workers or plan.workers} worker(s) -> {output}")
        outcome = run_local(job, plan, output, workers=args.workers, reporters=args.reporters.split(","),
                            pvc_root=args.pvc_root, metrics_port=args.metrics_port)
        result = outcome.result
        shown = ", ".join(f"{k} {v:.4f}" for k, v in result.metrics.items() if k != "epoch")
        state = "interrupted (resume by running again)" if result.interrupted else (
            "stopped early" if result.stopped_early else "done")
        console.print(f"{state}: {result.step}/{result.total_steps} steps in {outcome.wall_seconds:.1f}s"
                      f"{'; ' + shown if shown else ''}; model in {outcome.model_dir}")
        record = None if args.no_calibration else calibration_record(job, plan, outcome, catalog)
        if record is not None:
            estimated = f"estimated {plan.estimatedSeconds:.1f}s, " if plan.estimatedSeconds is not None else ""
            console.print(f"{estimated}measured {outcome.wall_seconds:.1f}s; recorded for later plans in "
                          f"{record_run(record, args.calibration)}", soft_wrap=True)
        status = status or (143 if result.interrupted else 0)
    return status


@_one_line_errors
def cmd_compare(args) -> int:
    from pathlib import Path

    from rich.console import Console

    from trainwright.planner import load_catalog
    from trainwright.trainer.compare import compare_table, run_compare

    from trainwright.trainer.report import read_run, write_report

    _limit_threads(args.threads)
    catalog = load_catalog(args.catalog)
    rows = run_compare(args.dir, catalog, reporters=args.reporters.split(","), workers=args.workers)
    console = Console(highlight=False)
    console.print(compare_table(rows))
    runs = [read_run(Path(row.outcome.model_dir).parent, catalog, name=row.name) for row in rows
            if row.name != "base"]
    png, page = write_report(runs, args.dir, "fine-tune, scratch or hybrid? Task B, measured here")
    console.print(f"pictures: {png} and {page}")
    return 0


@_one_line_errors
def cmd_report(args) -> int:
    from trainwright.planner import load_catalog
    from trainwright.trainer.errors import TrainerError
    from trainwright.trainer.report import read_run, runs_in, write_report

    found = runs_in(args.dir)
    if not found:
        raise TrainerError(args.dir, "no finished run here (a run directory holds result.json, or its subfolders do)")
    catalog = load_catalog(args.catalog)
    runs = [read_run(path, catalog) for path in found]
    png, page = write_report(runs, args.output or args.dir, f"runs in {args.dir}")
    print(f"{len(runs)} run(s): {png} and {page}")
    return 0


def add_commands(subparsers) -> None:
    run = subparsers.add_parser("run", help="train a TrainingJob on this machine (resumes from its checkpoints)")
    run.add_argument("file", metavar="FILE", help="a TrainingJob manifest")
    run.add_argument("--output", metavar="DIR", help="output directory (default runs/NAME)")
    run.add_argument("--workers", type=int, metavar="N", help="training processes; N > 1 runs Ray Train locally on CPUs")
    run.add_argument("--reporters", default="console,jsonl", help="comma list of console, jsonl, prometheus")
    run.add_argument("--pvc-root", default=".", metavar="DIR", help="where pvc://CLAIM/PATH is found: DIR/CLAIM/PATH (default .)")
    run.add_argument("--metrics-port", type=int, default=pod.METRICS_PORT, metavar="PORT", help="port of /metrics for the prometheus reporter")
    run.add_argument("--threads", type=int, metavar="N", help="torch CPU threads per process")
    run.add_argument("--catalog", metavar="FILE", help="GPU catalog override (YAML)")
    run.add_argument("--calibration", metavar="FILE",
                     help="where finished runs are recorded and read to calibrate plans (default "
                          "$TRAINWRIGHT_CALIBRATION, else ~/.local/state/trainwright/calibration.json)")
    run.add_argument("--no-calibration", action="store_true", help="neither read nor record calibration runs")
    run.set_defaults(func=cmd_run)

    compare = subparsers.add_parser("compare", help="train the built-in demo as scratch, fine-tune and hybrid; show measured time, cost and accuracy")
    compare.add_argument("dir", metavar="DIR", help="where the runs go (each strategy in DIR/NAME)")
    compare.add_argument("--workers", type=int, metavar="N", help="training processes per run (N > 1: Ray Train)")
    compare.add_argument("--reporters", default="console", help="comma list of console, jsonl")
    compare.add_argument("--threads", type=int, default=1, metavar="N",
                         help="torch CPU threads (default 1: the demo's models are tiny, more threads only contend)")
    compare.add_argument("--catalog", metavar="FILE", help="GPU catalog override (YAML)")
    compare.set_defaults(func=cmd_compare)

    report = subparsers.add_parser("report", help="pictures of finished runs: validation quality against cost, loss curves (PNG and HTML)")
    report.add_argument("dir", metavar="RUN_DIR", help="a run's output directory, or a directory of runs (as compare leaves them)")
    report.add_argument("--output", metavar="DIR", help="where report.png and report.html go (default RUN_DIR)")
    report.add_argument("--catalog", metavar="FILE", help="GPU catalog override (YAML), for the prices")
    report.set_defaults(func=cmd_report)


def _standalone(argv: list[str] | None = None) -> int:  # `python -m trainwright.trainer.commands`, for debugging
    parser = argparse.ArgumentParser(prog="trainwright")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(_standalone())
