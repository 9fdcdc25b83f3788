"""The CustomResourceDefinition, generated from the pydantic models (never edited by hand)."""

import typing

import yaml
from pydantic import BaseModel

from trainwright.api.manifest import (
    API_VERSION, GROUP, KIND, MAX_NAME_LENGTH, PLURAL, SHORT_NAMES, SINGULAR, VERSION,
)
from trainwright.api.spec import ApiModel, TrainingJobSpec
from trainwright.api.status import TrainingJobStatus

CRD_FILENAME = f"{PLURAL}.{GROUP}.yaml"
_DROP = {"title", "additionalProperties"}

PRINTER_COLUMNS = [
    {"name": "Strategy", "type": "string", "jsonPath": ".status.plan.strategy"},
    {"name": "GPUs", "type": "integer", "jsonPath": ".status.plan.gpus"},
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Progress", "type": "number", "format": "float", "jsonPath": ".status.progress.ratio",
     "description": "Fraction of training steps done."},
    {"name": "Cost", "type": "number", "format": "float", "jsonPath": ".status.cost.usd",
     "description": "Accrued cost in USD."},
    {"name": "ETA", "type": "string", "jsonPath": ".status.cost.eta",
     "description": "Projected time left, from the measured throughput."},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def _models_by_name(root: type[BaseModel]) -> dict[str, type[BaseModel]]:
    """Every model class reachable from ``root``, keyed as pydantic names them in $defs."""
    found: dict[str, type[BaseModel]] = {}

    def visit(tp):
        for arg in typing.get_args(tp):
            visit(arg)
        if isinstance(tp, type) and issubclass(tp, BaseModel) and tp.__name__ not in found:
            found[tp.__name__] = tp
            for field in tp.model_fields.values():
                visit(field.annotation)

    visit(root)
    return found


def _validations(model: type[BaseModel]) -> dict:
    """The model's cross-field rules as CEL, where the API server checks them."""
    rules = model.cel_rules if issubclass(model, ApiModel) else ()
    if not rules:
        return {}
    return {"x-kubernetes-validations": [
        {"rule": r.cel, "message": r.message, **({"fieldPath": f".{r.field}"} if r.field else {})}
        for r in rules
    ]}


def _structural(node, defs: dict, models: dict) -> dict:
    """Inline $refs, fold Optional into the plain type, drop what structural schemas forbid."""
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        merged = {**_structural(defs[name], defs, models), **{k: v for k, v in node.items() if k != "$ref"}}
        return {**merged, **_validations(models[name])}
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express {node} in a structural schema")
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        return {**_structural(options[0], defs, models), **_structural(rest, defs, models)}
    out = {}
    for key, value in node.items():
        if key in _DROP and not (key == "additionalProperties" and isinstance(value, dict)):
            continue
        if key == "default" and value is None:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):  # JSON Schema 2020 -> OpenAPI 3.0
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        elif key == "properties":
            out[key] = {name: _structural(sub, defs, models) for name, sub in value.items()}
        elif key in ("items", "additionalProperties"):
            out[key] = _structural(value, defs, models)
        else:
            out[key] = value
    return out


def _defaulted_objects(model: type[BaseModel], schema: dict) -> None:
    """Objects built by default_factory default to {} so the API server fills their fields in."""
    for name, field in model.model_fields.items():
        key = field.alias or name
        if field.default_factory is not None and schema["properties"][key].get("type") == "object":
            schema["properties"][key]["default"] = {}


def model_schema(model: type[BaseModel]) -> dict:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    top = {k: v for k, v in raw.items() if k != "$defs"}
    return {**_structural(top, raw.get("$defs", {}), _models_by_name(model)), **_validations(model)}


def immutability_rules() -> list[dict]:
    """Transition rules: a launched job's training fields cannot change (status.launchedAt is
    set in the same write that says the trainer was created). Before launch they may, so a job
    waiting for its claim can still be fixed."""
    return [{"rule": f"!has(oldSelf.status) || !has(oldSelf.status.launchedAt) || "
                     f"(has(self.spec.{name}) == has(oldSelf.spec.{name}) && "
                     f"(!has(self.spec.{name}) || self.spec.{name} == oldSelf.spec.{name}))",
             "message": f"spec.{name} cannot change after the job has launched (status.launchedAt); "
                        "delete and re-create the job to change it",
             "fieldPath": f".spec.{name}"}
            for name in TrainingJobSpec.immutable_after_launch]


def build_crd() -> dict:
    spec_schema = model_schema(TrainingJobSpec)
    _defaulted_objects(TrainingJobSpec, spec_schema)
    status_schema = model_schema(TrainingJobStatus)
    conditions = status_schema["properties"]["conditions"]
    conditions.update({"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]})
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{PLURAL}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL,
                      "singular": SINGULAR, "shortNames": SHORT_NAMES, "categories": ["all", "trainwright"]},
            "scope": "Namespaced",
            "versions": [{
                "name": VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": f"A training job: strategy, model, data and GPUs in one resource ({API_VERSION}).",
                    "required": ["spec"],
                    "x-kubernetes-validations": [{
                        "rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
                        "message": f"metadata.name must be at most {MAX_NAME_LENGTH} characters (children add suffixes)",
                    }, *immutability_rules()],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec_schema,
                        "status": status_schema,
                    },
                }},
            }],
        },
    }


def render_crd() -> str:
    header = "# Generated by `trainwright crds` from trainwright.api; do not edit.\n"
    return header + yaml.safe_dump(build_crd(), sort_keys=False, width=120)
