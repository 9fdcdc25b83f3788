"""`trainwright`: validate, plan, generate CRDs, and (with the trainer extra) run jobs locally.

Every user error is one line on stderr naming the field and the reason, and exit code 1.
"""

import argparse
import json
import os
import re
import sys
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

from trainwright.api import ManifestError, load_documents
from trainwright.api.chart import CHART_CRD_PATH, render_chart_crd
from trainwright.api.crd import CRD_FILENAME, render_crd
from trainwright.api.durations import format_duration
from trainwright.controller.constants import DEFAULT_TRAINER_IMAGE
from trainwright.planner import (
    CalibrationError, CatalogError, PlanningError, compare_strategies, load_calibration, load_catalog, plan_job,
)

USER_ERRORS = (ManifestError, PlanningError, CatalogError, CalibrationError)
stdout = Console(highlight=False)
stderr = Console(stderr=True, highlight=False)


def _fmt_seconds(seconds: float | None) -> str:
    return "unknown" if seconds is None else format_duration(seconds)


def _fmt_cost(usd: float | None) -> str:
    return "unknown" if usd is None else f"${usd:,.2f}"


def cmd_validate(args) -> int:
    catalog = load_catalog(args.catalog)
    failed = False
    for path in args.files:
        try:
            documents = load_documents(path)
            for document in documents:
                try:
                    plan_job(document.job.spec, catalog)
                except PlanningError as error:
                    raise ManifestError(document.source, [str(error)]) from None
                stdout.print(f"[green]valid[/green] {document.source}: {document.job.metadata.name}")
        except ManifestError as error:
            failed = True
            for line in str(error).splitlines():
                stderr.print(f"[red]invalid[/red] {line}", markup=True, soft_wrap=True)
    return 1 if failed else 0


def _plan_table(name: str, plan) -> Table:
    table = Table(title=f"plan for {name}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("strategy", plan.strategy)
    table.add_row("reason", plan.reason)
    table.add_row("GPUs", str(plan.gpus))
    table.add_row("launcher", f"{plan.launcher}: {plan.pods} pod(s) x {plan.gpusPerPod} GPU(s), {plan.workers} worker(s)")
    table.add_row("time", _fmt_seconds(plan.estimatedSeconds))
    table.add_row("cost", _fmt_cost(plan.estimatedCostUSD))
    if plan.estimateBasis:
        table.add_row("estimate", plan.estimateBasis)
    for note in plan.notes:
        table.add_row("note", note)
    return table


def _compare_table(name: str, rows) -> Table:
    table = Table(title=f"{name}: the same job as each strategy", title_justify="left")
    for column in ("strategy", "GPUs", "launcher", "time", "cost", "needs", "notes"):
        table.add_column(column)
    for strategy, plan, needs in rows:
        table.add_row(strategy, str(plan.gpus), f"{plan.launcher} x{plan.pods}", _fmt_seconds(plan.estimatedSeconds),
                      _fmt_cost(plan.estimatedCostUSD), ", ".join(needs) or "-", "; ".join(plan.notes) or "-")
    return table


def cmd_plan(args) -> int:
    catalog = load_catalog(args.catalog)
    calibration = None if args.no_calibration else load_calibration(args.calibration)
    results = []
    for document in load_documents(args.file):
        spec, name = document.job.spec, document.job.metadata.name
        if args.compare:
            rows = compare_strategies(spec, catalog, calibration)
            results.append((name, rows, {"name": name, "strategies": [
                {**plan.to_wire(), "needs": needs} for _, plan, needs in rows]}))
        else:
            plan = plan_job(spec, catalog, calibration=calibration)
            results.append((name, plan, {"name": name, "plan": plan.to_wire()}))
    if args.output == "json":
        print(json.dumps([data for *_, data in results], indent=2))
    elif args.output == "yaml":
        print(yaml.safe_dump([data for *_, data in results], sort_keys=False), end="")
    else:
        for name, result, _ in results:
            stdout.print(_compare_table(name, result) if args.compare else _plan_table(name, result))
    return 0


def cmd_crds(args) -> int:
    """Write (or with --check, compare) the CRD and the chart's copy of it."""
    outputs = {Path(args.output_dir) / CRD_FILENAME: render_crd()}
    if args.chart_crd:
        outputs[Path(args.chart_crd)] = render_chart_crd()
    stale = [path for path, text in outputs.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            stderr.print(f"{path} is out of date: run `trainwright crds`")
        if not stale:
            stdout.print("CRDs are up to date")
        return 1 if stale else 0
    for path, text in outputs.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        stdout.print(f"wrote {path}")
    return 0


def cmd_operator(args) -> int:
    from trainwright.controller.operator import run_operator

    return run_operator(args.namespace, args.metrics_port, args.health_port, args.trainer_image,
                        args.catalog, args.verbose, leader_elect=args.leader_elect,
                        leader_election_namespace=args.leader_election_namespace,
                        leader_election_id=args.leader_election_id,
                        leader_election_timing=(args.leader_election_lease_duration,
                                                args.leader_election_renew_deadline,
                                                args.leader_election_retry_period),
                        calibration_namespace=args.calibration_namespace)


def namespace_name(text: str) -> str:
    """A namespace as Kubernetes names them (a DNS label); patterns are not supported."""
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?", text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a namespace name (lower-case letters, digits and '-', at most 63; no patterns)")
    return text


def lease_name(text: str) -> str:
    """A Lease's name, as Kubernetes names objects (a DNS subdomain)."""
    if len(text) > 253 or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an object name (lower-case letters, digits, '-' and '.')")
    return text


def positive_seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return seconds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="trainwright", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    validate = commands.add_parser("validate", help="check TrainingJob manifests; exit 0 only when all are valid")
    validate.add_argument("files", nargs="+", metavar="FILE")
    validate.add_argument("--catalog", metavar="FILE", help="GPU catalog override (YAML)")
    validate.set_defaults(func=cmd_validate)

    plan = commands.add_parser("plan", help="show the plan: strategy, GPUs, launcher, time and cost")
    plan.add_argument("file", metavar="FILE")
    plan.add_argument("-o", "--output", choices=("table", "json", "yaml"), default="table")
    plan.add_argument("--compare", action="store_true", help="plan the job as fine-tune, scratch and hybrid side by side")
    plan.add_argument("--catalog", metavar="FILE", help="GPU catalog override (YAML)")
    plan.add_argument("--calibration", metavar="FILE",
                      help="runs to calibrate estimates from (default $TRAINWRIGHT_CALIBRATION, else "
                           "~/.local/state/trainwright/calibration.json, where `trainwright run` records them)")
    plan.add_argument("--no-calibration", action="store_true", help="the FLOPs formula only")
    plan.set_defaults(func=cmd_plan)

    crds = commands.add_parser("crds", help="write the CRD generated from the API models")
    crds.add_argument("--output-dir", default="crds", metavar="DIR")
    crds.add_argument("--chart-crd", default=str(CHART_CRD_PATH), metavar="FILE",
                      help="also write the Helm chart's CRD template ('' to skip)")
    crds.add_argument("--check", action="store_true", help="fail when a file differs from the models")
    crds.set_defaults(func=cmd_crds)

    operator = commands.add_parser("operator", help="run the operator (kopf, standalone) against the current cluster")
    operator.add_argument("--namespace", action="append", default=[], metavar="NS", type=namespace_name,
                          help="watch only this namespace (repeatable); default: all namespaces")
    operator.add_argument("--metrics-port", type=int, default=8000)
    operator.add_argument("--health-port", type=int, default=8080)
    operator.add_argument("--trainer-image", default=os.environ.get("TRAINWRIGHT_TRAINER_IMAGE", DEFAULT_TRAINER_IMAGE))
    operator.add_argument("--catalog", metavar="FILE", default=os.environ.get("TRAINWRIGHT_CATALOG"),
                          help="GPU catalog override (YAML); env TRAINWRIGHT_CATALOG")
    operator.add_argument("--leader-elect", action=argparse.BooleanOptionalAction, default=False,
                          help="run informers and reconcilers only while holding a coordination.k8s.io Lease, "
                               "so that replicas stand by (default: off)")
    operator.add_argument("--leader-election-namespace", metavar="NS", type=namespace_name,
                          default=os.environ.get("POD_NAMESPACE") or None,
                          help="the Lease's namespace; env POD_NAMESPACE, else the pod's own namespace")
    operator.add_argument("--leader-election-id", metavar="NAME", default="trainwright-operator", type=lease_name,
                          help="the Lease's name (default: trainwright-operator)")
    operator.add_argument("--leader-election-lease-duration", metavar="SECONDS", type=positive_seconds, default=15.0,
                          help="how long standbys wait after the leader's last renewal before taking over (15)")
    operator.add_argument("--leader-election-renew-deadline", metavar="SECONDS", type=positive_seconds, default=10.0,
                          help="the leader exits when it has not renewed for this long (10)")
    operator.add_argument("--leader-election-retry-period", metavar="SECONDS", type=positive_seconds, default=2.0,
                          help="how often the leader renews and standbys try (2)")
    operator.add_argument("--calibration-namespace", metavar="NS", type=namespace_name,
                          default=os.environ.get("POD_NAMESPACE") or None,
                          help="where the ConfigMap trainwright-calibration keeps finished jobs' measurements, which "
                               "calibrate new plans (default: POD_NAMESPACE, else the pod's own; outside a pod, in memory)")
    operator.add_argument("-v", "--verbose", action="store_true")
    operator.set_defaults(func=cmd_operator)

    _add_optional_commands(commands)
    return parser


def _add_optional_commands(commands) -> None:
    """Commands whose dependencies come with extras: present only when those are installed."""
    try:
        from trainwright.trainer.commands import add_commands
    except ImportError:
        return
    add_commands(commands)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except USER_ERRORS as error:
        for line in str(error).splitlines():
            stderr.print(f"[red]error[/red] {line}", soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
