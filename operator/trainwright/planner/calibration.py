"""Calibration: what finished jobs measured, so the next plan of a like job uses it.

A finished run leaves a `Run`: on which device type, with which strategy, how large a model,
the work the planner's formula counts for it (6 x parameters x tokens, x 2/3 on a frozen base),
how long its training steps took, and how long everything else took (start-up, evaluation,
checkpoints at the end, saving). Runs of the same device type, strategy and model size class
(parameters by decade) calibrate each other: their utilisation of the device against the
formula, and their median overhead in seconds, replace the catalog's assumed utilisation and
the default overheads. Within a decade a larger model uses the device better (larger matrices,
the same per-step costs spread over more work), so when the runs have different sizes their
utilisation is fitted against size (a line in log-log, Theil-Sen: the median of the pairwise
slopes, so one odd run moves it little) and read at the planned size, never beyond the sizes
measured; runs all of one size give their median. Pure, but for the file functions at the end:
`trainwright run` keeps its records in a file (the operator in a ConfigMap).
"""

from __future__ import annotations

import json
import math
import os
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path

class CalibrationError(ValueError):
    """Calibration records that cannot be read; the message names where they are."""


RUNS_PER_KIND = 20  # the newest runs of each kind are kept: a cluster's hardware and images change


@dataclass(frozen=True)
class Run:
    gpu_type: str  # catalog name; "cpu" for CPU jobs
    strategy: str
    parameters: int
    devices: int  # GPUs, or CPU workers
    formula_flops: float  # the planner's count of the work done
    step_seconds: float  # wall time of the training steps
    overhead_seconds: float  # the rest of the run's wall time
    peak_flops: float  # of one device, as the catalog had it when the run was recorded

    @property
    def utilization(self) -> float:
        return self.formula_flops / (self.step_seconds * self.peak_flops * self.devices)


def size_class(parameters: int) -> str:
    """Parameters by decade: '1e6' holds 1M to 10M, '1e8' holds 100M to 1B."""
    return f"1e{max(0, int(math.log10(max(parameters, 1))))}"


def kind_of(gpu_type: str, strategy: str, parameters: int) -> tuple[str, str, str]:
    return gpu_type, strategy, size_class(parameters)


@dataclass(frozen=True)
class Fit:
    utilization: float
    overhead_seconds: float
    runs: int
    kind: tuple[str, str, str]
    sizes: int = 1  # distinct parameter counts among the runs

    def describe(self) -> str:
        gpu_type, strategy, size = self.kind
        fitted = f" (fitted to size over {self.sizes} sizes)" if self.sizes > 1 else ""
        return (f"calibrated from {self.runs} run{'s' if self.runs != 1 else ''} of {strategy} on {gpu_type} "
                f"at {size}+ parameters: {self.utilization:.1%} utilisation{fitted}, "
                f"{self.overhead_seconds:.0f} s overhead")


def utilization_at(runs: list[Run], parameters: int) -> float:
    """The runs' utilisation read at ``parameters``: their median when they are all of one
    size, else a Theil-Sen line through (log parameters, log utilisation), read within the
    sizes measured."""
    points = [(math.log(run.parameters), math.log(run.utilization)) for run in runs]
    slopes = [(v2 - v1) / (s2 - s1) for i, (s1, v1) in enumerate(points) for s2, v2 in points[i + 1:] if s2 != s1]
    if not slopes:
        return statistics.median(run.utilization for run in runs)
    slope = statistics.median(slopes)
    intercept = statistics.median(v - slope * s for s, v in points)
    size = min(max(math.log(parameters), min(s for s, _ in points)), max(s for s, _ in points))
    return math.exp(intercept + slope * size)


@dataclass
class Calibration:
    runs: list[Run] = field(default_factory=list)

    def fit(self, gpu_type: str, strategy: str, parameters: int) -> Fit | None:
        """Medians of the runs of this kind; None when there is none."""
        kind = kind_of(gpu_type, strategy, parameters)
        same = [run for run in self.runs if kind_of(run.gpu_type, run.strategy, run.parameters) == kind
                and run.step_seconds > 0 and run.formula_flops > 0]
        if not same:
            return None
        return Fit(utilization_at(same, parameters), statistics.median(run.overhead_seconds for run in same),
                   len(same), kind, sizes=len({run.parameters for run in same}))

    def add(self, run: Run) -> Calibration:
        """With ``run``, keeping the newest RUNS_PER_KIND of its kind."""
        kind = kind_of(run.gpu_type, run.strategy, run.parameters)
        same = [r for r in self.runs if kind_of(r.gpu_type, r.strategy, r.parameters) == kind]
        dropped = same[:max(0, len(same) + 1 - RUNS_PER_KIND)]
        return Calibration([r for r in self.runs if r not in dropped] + [run])

    def to_json(self) -> str:
        return json.dumps({"runs": [asdict(run) for run in self.runs]}, indent=1)

    @classmethod
    def from_json(cls, text: str | None) -> Calibration:
        """The records in ``text``; an empty calibration for no text. ValueError when unreadable."""
        if not text:
            return cls()
        try:
            data = json.loads(text)
            return cls([Run(**run) for run in data["runs"]])
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            raise CalibrationError(f"calibration records are unreadable: {error}") from None


def calibration_file() -> Path:
    """Where `trainwright run` records its runs and `trainwright plan` reads them:
    $TRAINWRIGHT_CALIBRATION, else ~/.local/state/trainwright/calibration.json."""
    configured = os.environ.get("TRAINWRIGHT_CALIBRATION")
    return Path(configured) if configured else Path.home() / ".local" / "state" / "trainwright" / "calibration.json"


def load_calibration(path: str | Path | None = None) -> Calibration:
    """The records in the file (none when it does not exist); CalibrationError naming it when unreadable."""
    path = Path(path) if path else calibration_file()
    try:
        return Calibration.from_json(path.read_text())
    except FileNotFoundError:
        return Calibration()
    except CalibrationError as error:
        raise CalibrationError(f"{path}: {error}") from None


def record_run(run: Run, path: str | Path | None = None) -> Path:
    """Add ``run`` to the file's records (written whole, then renamed: never half a file)."""
    path = Path(path) if path else calibration_file()
    updated = load_calibration(path).add(run)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(updated.to_json())
    partial.replace(path)
    return path
