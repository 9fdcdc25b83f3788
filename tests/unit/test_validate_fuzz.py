"""Property: however a valid manifest is mangled, validation fails only with its own error."""

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trainwright.api import ManifestError, parse_job
from trainwright.planner import PlanningError, default_catalog, plan_job

EXAMPLES = [yaml.safe_load(p.read_text()) for p in sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))]
CATALOG = default_catalog()

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["fine-tune", "scratch", "hybrid", "auto", "6h", "hf://gpt2", "builtin:x", "lora", "gpt", "1e400"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=3)),
                      max_leaves=6)


def _paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, prefix + (index,))


@st.composite
def mutated_manifests(draw):
    document = copy.deepcopy(draw(st.sampled_from(EXAMPLES)))
    for _ in range(draw(st.integers(1, 4))):
        paths = [p for p in _paths(document) if p]
        path = draw(st.sampled_from(paths))
        parent = document
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = draw(values)
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(values)
    return document


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_manifests())
def test_validator_raises_only_its_own_errors(document):
    try:
        job = parse_job(document)
        plan_job(job.spec, CATALOG)
    except ManifestError as error:
        assert error.problems and all(": " in line for line in error.problems)
    except PlanningError as error:
        assert str(error).startswith("spec.")
