"""GPU types the planner knows: peak speed and price. Admins override them from a file."""

from dataclasses import dataclass
from pathlib import Path

import yaml

CPU = "cpu"


@dataclass(frozen=True)
class GpuType:
    name: str
    peak_flops: float  # dense bf16 (fp16 for T4; fp32 for cpu) per device, FLOP/s
    price_per_hour: float  # USD per device-hour
    memory_gib: float


@dataclass(frozen=True)
class Catalog:
    gpu_types: dict[str, GpuType]
    utilization: float  # assumed model FLOPs utilisation for estimates

    def get(self, name: str) -> GpuType:
        try:
            return self.gpu_types[name]
        except KeyError:
            known = ", ".join(sorted(self.gpu_types))
            raise UnknownGpuType(f"unknown GPU type {name!r}; the catalog has {known}") from None


class UnknownGpuType(ValueError):
    pass


class CatalogError(ValueError):
    pass


# On-demand list prices of late 2026, rounded; good enough for a plan, and overridable.
DEFAULT_GPU_TYPES = {
    "nvidia-h100": GpuType("nvidia-h100", 989.5e12, 3.00, 80),
    "nvidia-h200": GpuType("nvidia-h200", 989.5e12, 3.80, 141),
    "nvidia-a100-80gb": GpuType("nvidia-a100-80gb", 312e12, 1.80, 80),
    "nvidia-l4": GpuType("nvidia-l4", 121e12, 0.80, 24),
    "nvidia-t4": GpuType("nvidia-t4", 65e12, 0.35, 16),
    CPU: GpuType(CPU, 0.5e12, 0.20, 16),  # one 4-core worker
}
DEFAULT_UTILIZATION = 0.4


def default_catalog() -> Catalog:
    return Catalog(dict(DEFAULT_GPU_TYPES), DEFAULT_UTILIZATION)


def parse_catalog(data: dict, base: Catalog | None = None) -> Catalog:
    """Merge an admin's override over ``base``.

    Format (YAML or JSON)::

        utilization: 0.35
        gpuTypes:
          nvidia-h100: {peakTFLOPS: 989.5, pricePerHourUSD: 2.2, memoryGiB: 80}
    """
    base = base or default_catalog()
    if not isinstance(data, dict):
        raise CatalogError("catalog: expected a mapping with gpuTypes and utilization")
    unknown = set(data) - {"gpuTypes", "utilization"}
    if unknown:
        raise CatalogError(f"catalog: unknown keys {sorted(unknown)}")
    types = dict(base.gpu_types)
    for name, entry in (data.get("gpuTypes") or {}).items():
        if not isinstance(entry, dict):
            raise CatalogError(f"catalog.gpuTypes.{name}: expected a mapping")
        old = types.get(name)
        try:
            peak = float(entry.get("peakTFLOPS", old.peak_flops / 1e12 if old else None)) * 1e12
            price = float(entry.get("pricePerHourUSD", old.price_per_hour if old else None))
            memory = float(entry.get("memoryGiB", old.memory_gib if old else 0))
        except (TypeError, ValueError):
            raise CatalogError(f"catalog.gpuTypes.{name}: needs numeric peakTFLOPS and pricePerHourUSD") from None
        if peak <= 0 or price < 0:
            raise CatalogError(f"catalog.gpuTypes.{name}: peakTFLOPS must be > 0 and pricePerHourUSD >= 0")
        types[name] = GpuType(name, peak, price, memory)
    utilization = float(data.get("utilization", base.utilization))
    if not 0 < utilization <= 1:
        raise CatalogError("catalog.utilization: must be in (0, 1]")
    return Catalog(types, utilization)


def load_catalog(path: str | Path | None = None) -> Catalog:
    """The default catalog, overridden by the YAML file at ``path`` when given."""
    if path is None:
        return default_catalog()
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as error:
        raise CatalogError(f"catalog {path}: cannot read: {error}") from None
    return parse_catalog(data or {})
