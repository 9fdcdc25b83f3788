"""The checked-in CRD is exactly what the models generate, and it is a structural schema."""

from pathlib import Path

import yaml

from trainwright.api.crd import CRD_FILENAME, build_crd, render_crd
from trainwright.api.spec import TrainingJobSpec
from trainwright.api.status import TrainingJobStatus

ROOT = Path(__file__).resolve().parents[2]


def test_checked_in_crd_matches_the_models():
    checked_in = (ROOT / "crds" / CRD_FILENAME).read_text()
    assert checked_in == render_crd(), "crds/ drifted from trainwright.api: run `trainwright crds`"


def _walk(node, path="$"):
    yield path, node
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _walk(value, f"{path}.{key}")


def test_schema_is_structural():
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node and "anyOf" not in node and "title" not in node, path
        if "properties" in path.rsplit(".", 1)[-1]:
            continue
        if path.endswith(".properties"):
            for name, prop in node.items():
                assert "type" in prop, f"{path}.{name} has no type"


def test_every_field_is_described():
    schema = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for section in ("spec", "status"):
        for path, node in _walk(schema["properties"][section], section):
            if path.endswith(".properties"):
                for name, prop in node.items():
                    assert prop.get("description"), f"{path}.{name} has no description"


def test_every_model_field_is_declared_in_the_crd():
    version = build_crd()["spec"]["versions"][0]
    props = version["schema"]["openAPIV3Schema"]["properties"]
    assert set(props["spec"]["properties"]) == {f.alias or n for n, f in TrainingJobSpec.model_fields.items()}
    assert set(props["status"]["properties"]) == {f.alias or n for n, f in TrainingJobStatus.model_fields.items()}
    assert version["subresources"] == {"status": {}}


def test_crd_carries_cel_rules_enums_defaults_and_columns():
    crd = build_crd()
    version = crd["spec"]["versions"][0]
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    rules = [r["rule"] for r in spec["x-kubernetes-validations"]]
    assert "self.strategy != 'scratch' || has(self.model.architecture)" in rules
    assert spec["properties"]["strategy"]["enum"] == ["fine-tune", "scratch", "hybrid", "auto"]
    assert spec["properties"]["strategy"]["default"] == "auto"
    assert spec["properties"]["training"]["default"] == {}
    assert spec["properties"]["training"]["properties"]["epochs"]["minimum"] == 1
    assert [c["name"] for c in version["additionalPrinterColumns"]] == ["Strategy", "GPUs", "Phase", "Progress", "Cost", "ETA", "Age"]
    assert crd["spec"]["names"]["shortNames"] == ["tj"]


def test_rendered_crd_is_valid_yaml():
    assert yaml.safe_load(render_crd()) == build_crd()
