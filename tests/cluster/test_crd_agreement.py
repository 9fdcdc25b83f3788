"""The CRD and the Python models agree: the same generated documents go to the real API
server (``dryRun=All``, strict field validation as ``kubectl apply`` asks for) and to
``parse_job``, and both must accept or both refuse each one.

Rules that live on one side only, on purpose (so not generated here):
- metadata (names, labels): the API server's own rules; the models take metadata as given.
- a GPU type missing from the catalog: the catalog is the operator's (an admin overrides it),
  so the planner refuses it (the job goes Failed with PlanningFailed), not the schema.
- what may change after launch (CEL transition rules on the whole object): they compare the
  old object with the new one, which a single document does not have; tested in tests/operator.
"""

from __future__ import annotations

import copy
import json
import urllib.parse
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devcluster import ControlPlaneError
from trainwright.api import ManifestError, parse_job

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "trainingjobs.trainwright.dev.yaml"
EXAMPLES = [yaml.safe_load(p.read_text()) for p in sorted((ROOT / "examples").glob("*.yaml"))]

# Values chosen to sit on the edges the schema and the models draw: wrong types, bounds, enums,
# numbers as strings, booleans as numbers, empty and odd strings.
edge_values = st.one_of(
    st.none(), st.booleans(), st.sampled_from([0, 1, -1, 2, 7, 8, 9, 16, 64, 10**6, 2**31, 2**53]),
    st.sampled_from([0.0, 0.5, 1.0, -0.1, 1.5, 1e-5, 2e-5, 0.999]),
    st.sampled_from(["", "1", "0.5", "true", "6h", "30m", "90s", "1d", "0s", "-1h", "abc",
                     "fine-tune", "scratch", "hybrid", "auto", "lora", "gpt", "linear", "dropout",
                     "causal-lm", "sequence-classification", "bf16", "fp32", "fp16", "val_loss",
                     "hf://gpt2", "builtin:reviews", "pvc://data/x.jsonl", "pvc://", "s3://b/k",
                     "nvidia-h100", "nvidia-a100", "cpu"]),
    st.lists(st.sampled_from([{"type": "linear", "size": 8}, {"type": "dropout", "p": 0.1}, {}, 3]), max_size=2),
    st.dictionaries(st.sampled_from(["type", "size", "p", "rank", "x"]), st.sampled_from([1, 0.1, "lora", None]),
                    max_size=2),
)


def _spec_paths(node, prefix=()):
    if prefix:
        yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _spec_paths(value, prefix + (key,))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _spec_paths(value, prefix + (index,))


# Field names the models know, so that added keys are often real (optional) fields, not only typos.
KNOWN_KEYS = sorted({p[-1] for example in EXAMPLES for p in _spec_paths(example["spec"]) if isinstance(p[-1], str)}
                    | {"suspend", "backoffLimit", "ttlSecondsAfterFinished", "gpusPerNode", "workers", "workersPerPod",
                       "cpusPerWorker", "earlyStopping", "patience", "metric", "seed", "precision", "parameters",
                       "head", "architecture", "adapter", "everySteps", "maxCostUSD", "maxDuration", "bogus"})


@st.composite
def documents(draw):
    """An example with one to three mutations of its spec: replace, delete or add a field."""
    document = copy.deepcopy(draw(st.sampled_from(EXAMPLES)))
    document["metadata"] = {"name": "agree"}
    spec = document["spec"]
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_spec_paths(spec))
        path = draw(st.sampled_from(paths))
        parent = spec
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        if action == "replace":
            parent[path[-1]] = copy.deepcopy(draw(edge_values))
        elif action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[draw(st.sampled_from(KNOWN_KEYS))] = copy.deepcopy(draw(edge_values))
    return document


def server_verdict(plane, namespace: str, document: dict) -> tuple[bool, str]:
    query = urllib.parse.urlencode({"dryRun": "All", "fieldValidation": "Strict"})
    path = f"/apis/trainwright.dev/v1alpha1/namespaces/{namespace}/trainingjobs?{query}"
    try:
        plane.api("POST", path, document, ok=(201,))
        return True, ""
    except ControlPlaneError as error:
        assert " -> 4" in str(error), error  # a refusal (400/422), never a server error
        return False, str(error)


def model_verdict(document: dict) -> tuple[bool, str]:
    try:
        parse_job(copy.deepcopy(document))
        return True, ""
    except ManifestError as error:
        return False, "; ".join(error.problems)


@pytest.fixture(scope="module")
def agreement_namespace(control_plane):
    control_plane.kubectl("apply", "-f", str(CRD))
    control_plane.kubectl("wait", "--for=condition=Established", "crd/trainingjobs.trainwright.dev")
    control_plane.api("POST", "/api/v1/namespaces",
                      {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "crd-agreement"}}, ok=(201, 409))
    return "crd-agreement"


def test_every_example_is_accepted_by_both(control_plane, agreement_namespace):
    for example in EXAMPLES:
        document = {**copy.deepcopy(example), "metadata": {"name": "agree"}}
        assert server_verdict(control_plane, agreement_namespace, document) == (True, "")
        assert model_verdict(document) == (True, "")


@settings(max_examples=400, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(document=documents())
def test_api_server_and_models_accept_and_refuse_the_same_documents(control_plane, agreement_namespace, document):
    server_ok, server_why = server_verdict(control_plane, agreement_namespace, document)
    model_ok, model_why = model_verdict(document)
    assert server_ok == model_ok, (
        f"API server {'accepts' if server_ok else 'refuses'}, models {'accept' if model_ok else 'refuse'}:\n"
        f"{json.dumps(document['spec'], indent=1)}\nserver: {server_why}\nmodels: {model_why}")
