"""Pictures of finished runs: validation accuracy against cost per strategy, and the loss curves.

The measured answer to "fine-tune, scratch or hybrid?", for `trainwright compare` and for any
run directory (`trainwright report`). Each run is read from what it leaves behind (job.json,
result.json, metrics.jsonl), so a report can be made long after the run. Two files: report.png,
and report.html, self-contained (the picture inline, a table, and the series as JSON). Both
carry the series they draw: the PNG in a text chunk, the HTML in a script element.
"""

from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SERIES_KEY = "trainwright-series"  # the PNG text chunk and the HTML element that hold the data


@dataclass
class RunSeries:
    name: str
    strategy: str
    wall_seconds: float
    cost_usd: float
    trainable_parameters: int
    accuracy: float | None  # final validation accuracy, when the task has one
    val_loss: float | None
    loss: list[tuple[int, float]] = field(default_factory=list)  # (step, training loss)
    evaluations: list[dict] = field(default_factory=list)  # one per evaluation: step and val_* metrics


def read_run(directory: str | Path, catalog=None, name: str | None = None) -> RunSeries:
    """A run as `trainwright run` left it; cost at the catalog's price for the devices it planned."""
    from trainwright.api import parse_job
    from trainwright.planner import default_catalog, plan_job
    from trainwright.planner.catalog import CPU
    from trainwright.trainer.errors import TrainerError

    directory = Path(directory)
    try:
        result = json.loads((directory / "result.json").read_text())
        job = parse_job(json.loads((directory / "job.json").read_text()), str(directory / "job.json"))
    except FileNotFoundError as error:
        raise TrainerError(str(directory), f"not a finished run: {Path(error.filename).name} is missing") from None
    catalog = catalog or default_catalog()
    plan = plan_job(job.spec, catalog)
    device = catalog.get(CPU if plan.gpus == 0 else job.spec.resources.gpuType)
    devices = max(plan.gpus, result["workers"])
    loss, evaluations, last_step = [], [], 0
    events = directory / "metrics.jsonl"
    for line in (events.read_text().splitlines() if events.exists() else []):
        event = json.loads(line)
        if event.get("event") == "step":
            last_step = event["step"]
            if event.get("loss") is not None and (not loss or loss[-1][0] != last_step):
                loss.append((last_step, event["loss"]))
        elif event.get("event") == "eval":
            evaluations.append({"step": last_step, **{k: v for k, v in event.items() if k.startswith("val_")}})
    metrics = result["result"]["metrics"]
    return RunSeries(name=name or directory.name, strategy=result["strategy"], wall_seconds=result["wall_seconds"],
                     cost_usd=result["wall_seconds"] / 3600 * devices * device.price_per_hour,
                     trainable_parameters=result["trainable_parameters"], accuracy=metrics.get("val_accuracy"),
                     val_loss=metrics.get("val_loss"), loss=loss, evaluations=evaluations)


def runs_in(directory: str | Path) -> list[Path]:
    """The run itself, or every run directly under ``directory`` (as `compare` leaves them)."""
    directory = Path(directory)
    if (directory / "result.json").exists():
        return [directory]
    return sorted(p for p in directory.iterdir() if (p / "result.json").exists()) if directory.is_dir() else []


def build_figure(runs: list[RunSeries], title: str):
    """Left: final validation accuracy (or loss) against cost, one labelled point per run.
    Right: each run's training loss by step."""
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    from matplotlib.figure import Figure

    figure = Figure(figsize=(12, 4.8), layout="constrained")
    quality, curves = figure.subplots(1, 2)
    by_accuracy = all(run.accuracy is not None for run in runs)
    for run in runs:
        value = run.accuracy if by_accuracy else run.val_loss
        if value is not None:
            quality.plot([run.cost_usd], [value], "o", markersize=9, label=run.name)
            label = run.name if run.name == run.strategy else f"{run.name} ({run.strategy})"
            quality.annotate(label, (run.cost_usd, value), textcoords="offset points",
                             xytext=(6, 6), fontsize=9)
        if run.loss:
            steps, losses = zip(*run.loss)
            curves.plot(steps, losses, label=run.name)
    quality.set(xlabel="cost (USD, at the catalog's price)", ylabel="validation accuracy" if by_accuracy else "validation loss",
                title="quality against cost")
    quality.grid(alpha=0.3)
    curves.set(xlabel="step", ylabel="training loss", title="loss curves")
    curves.grid(alpha=0.3)
    if any(run.loss for run in runs):
        curves.legend()
    figure.suptitle(title)
    return figure


def write_report(runs: list[RunSeries], directory: str | Path, title: str) -> tuple[Path, Path]:
    """report.png and report.html in ``directory``; their paths."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    series = json.dumps([asdict(run) for run in runs])
    buffer = io.BytesIO()
    build_figure(runs, title).savefig(buffer, format="png", dpi=110, metadata={SERIES_KEY: series})
    png = directory / "report.png"
    png.write_bytes(buffer.getvalue())
    page = directory / "report.html"
    page.write_text(_html(runs, title, base64.b64encode(buffer.getvalue()).decode(), series), encoding="utf-8")
    return png, page


def _html(runs: list[RunSeries], title: str, png_base64: str, series: str) -> str:
    inline_series = series.replace("</", "<\\/")  # JSON's own escape: the script element cannot end early
    rows = "".join(
        f"<tr><td>{html.escape(r.name)}</td><td>{html.escape(r.strategy)}</td><td>{r.trainable_parameters:,}</td>"
        f"<td>{r.wall_seconds:.1f} s</td><td>${r.cost_usd:.6f}</td>"
        f"<td>{'-' if r.accuracy is None else f'{r.accuracy:.3f}'}</td>"
        f"<td>{'-' if r.val_loss is None else f'{r.val_loss:.4f}'}</td></tr>" for r in runs)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}td,th{{padding:4px 10px;border-bottom:1px solid #ddd;text-align:right}}td:first-child,th:first-child{{text-align:left}}img{{max-width:100%}}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<img alt="validation quality against cost, and training loss curves" src="data:image/png;base64,{png_base64}">
<table><tr><th>run</th><th>strategy</th><th>trainable</th><th>wall</th><th>cost</th><th>val accuracy</th><th>val loss</th></tr>
{rows}</table>
<script type="application/json" id="{SERIES_KEY}">{inline_series}</script>
</body></html>
"""
