"""`trainwright compare`: the demo's three strategies on task B, measured on this machine.

A scratch model first learns task A (the base, saved with save_pretrained); then scratch,
fine-tune (LoRA on the base) and hybrid (the base's backbone under a new head) each learn
task B. The table shows what a practitioner weighs: wall time, cost, GPU hours, quality.
"""

import shutil
from dataclasses import dataclass
from pathlib import Path

from trainwright.api import parse_job
from trainwright.trainer.demo import demo_jobs
from trainwright.trainer.runner import RunOutcome

STRATEGIES = ("scratch", "fine-tune", "hybrid")


@dataclass
class CompareRow:
    name: str  # base, scratch, fine-tune, hybrid
    task: str
    outcome: RunOutcome
    cost_usd: float
    gpu_hours: float

    @property
    def accuracy(self) -> float | None:
        return self.outcome.result.metrics.get("val_accuracy")


def run_compare(directory: str | Path, catalog=None, reporters=("console",), workers: int | None = None) -> list[CompareRow]:
    """Train the base on task A, then each strategy on task B, each in `directory/NAME` (fresh)."""
    from trainwright.planner import load_catalog, plan_job
    from trainwright.planner.catalog import CPU
    from trainwright.trainer.local import run_local

    catalog = catalog or load_catalog()
    directory = Path(directory)
    jobs = demo_jobs(str((directory / "base" / "model").resolve()))
    rows = []
    for name in ("base", *STRATEGIES):
        job = parse_job(jobs[name], f"demo {name}")
        plan = plan_job(job.spec, catalog)
        output = directory / name
        shutil.rmtree(output, ignore_errors=True)
        outcome = run_local(job, plan, output, reporters=list(reporters), workers=workers if name != "base" else None)
        hours = outcome.wall_seconds / 3600
        device = catalog.get(CPU if plan.gpus == 0 else job.spec.resources.gpuType)
        devices = max(plan.gpus, outcome.workers)
        rows.append(CompareRow(name, "A" if name == "base" else "B", outcome,
                               hours * devices * device.price_per_hour, hours * plan.gpus))
    return rows


def compare_table(rows: list[CompareRow]):
    from rich.table import Table

    table = Table(title="demo, measured here. Task A: topic of a word sequence (4 classes); task B: is the topic "
                        "alive? (2 classes). Cost at the catalog's CPU price.", title_justify="left")
    for column, justify in (("strategy", "left"), ("task", "left"), ("trainable", "right"), ("steps", "right"),
                            ("wall", "right"), ("cost", "right"), ("GPU h", "right"), ("val acc", "right")):
        table.add_column(column, justify=justify)
    for row in rows:
        o = row.outcome
        label = "base (scratch)" if row.name == "base" else row.name
        table.add_row(label, row.task, _short(o.trainable_parameters), str(o.result.step),
                      f"{o.wall_seconds:.1f}s", f"${row.cost_usd:.6f}", f"{row.gpu_hours:.3f}",
                      "-" if row.accuracy is None else f"{row.accuracy:.3f}")
    return table


def _short(count: int) -> str:
    return f"{count / 1e6:.1f}M" if count >= 1e6 else f"{count / 1e3:.1f}k" if count >= 1e3 else str(count)
