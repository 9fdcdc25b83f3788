"""The operator tier: a control plane of its own (pods run long enough to act on them, no
KubeRay until a test installs it) and the operator as a real process."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from devcluster import OperatorProcess, wait_for

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "trainingjobs.trainwright.dev.yaml"
POD_RUN_SECONDS = 8.0  # long enough to fail, suspend or over-spend a running pod


def pytest_collection_modifyitems(items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster(start_control_plane):
    plane = start_control_plane(run_seconds=POD_RUN_SECONDS)
    plane.kubectl("apply", "-f", str(CRD))
    plane.kubectl("wait", "--for=condition=Established", "crd/trainingjobs.trainwright.dev")
    return plane


@pytest.fixture(scope="session")
def operator(cluster, tmp_path_factory):
    process = OperatorProcess(cluster, tmp_path_factory.mktemp("operator") / "operator.log",
                              args=["--trainer-image", "trainer:test", "--calibration-namespace", "default"]).start()
    yield process
    process.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    process = getattr(item, "funcargs", {}).get("operator")
    if report.failed and process is not None:
        report.sections.append(("operator log", process.logs()))


@pytest.fixture
def namespace(cluster, request):
    slug = request.node.originalname.lower().replace("_", "-").removeprefix("test-")[:40].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    wait_for(lambda: cluster.kubectl_run("get", "serviceaccount", "default", "-n", name).returncode == 0,
             timeout=30, message=f"default ServiceAccount in {name}")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)
