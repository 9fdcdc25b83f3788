"""The planner: pure functions from a TrainingJob spec to a Plan (strategy, size, estimates)."""

from trainwright.planner.calibration import Calibration, CalibrationError, Run, load_calibration, record_run
from trainwright.planner.catalog import (
    Catalog, CatalogError, GpuType, UnknownGpuType, default_catalog, load_catalog, parse_catalog,
)
from trainwright.planner.plan import PlanningError, compare_strategies, measured_run, plan_job

__all__ = [
    "Calibration", "CalibrationError", "Run", "load_calibration", "record_run", "measured_run", "Catalog", "CatalogError", "GpuType", "UnknownGpuType", "PlanningError", "default_catalog",
    "load_catalog", "parse_catalog", "plan_job", "compare_strategies",
]
