"""Fixtures of the cluster tier: one real control plane (trainwright.devcluster) per session.

Binaries come from hack/build-control-plane.sh. If they are missing the tier is skipped,
except under CI (env CI set), where that is a failure. When a test fails, the tail of
every component's log is attached to its report.
"""

from __future__ import annotations

import os
import re

import pytest

from trainwright import devcluster
from trainwright.devcluster import BinariesMissing, ControlPlane

_PLANE: ControlPlane | None = None


def pytest_collection_modifyitems(items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def control_plane():
    global _PLANE
    try:
        devcluster.find_binaries()
    except BinariesMissing as exc:
        msg = f"cluster tier needs the control-plane binaries: {exc}"
        if os.environ.get("CI"):
            pytest.fail(msg, pytrace=False)
        pytest.skip(msg)
    cp = ControlPlane()
    cp.start()
    _PLANE = cp
    try:
        yield cp
    finally:
        _PLANE = None
        cp.stop()


@pytest.fixture
def namespace(control_plane, request):
    """A fresh namespace per test, deleted afterwards (without waiting)."""
    name = ("t-" + re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower())[:50]).strip("-")
    control_plane.api("POST", "/api/v1/namespaces",
                      {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}, ok=(201, 409))
    devcluster.wait_for(
        lambda: control_plane.api("GET", f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        timeout=30, message=f"default ServiceAccount in {name}",
    )
    yield name
    control_plane.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.fixture
def k8s_client(control_plane):
    """A kubernetes.client.ApiClient for the admin kubeconfig."""
    kubernetes = pytest.importorskip("kubernetes")
    api = kubernetes.config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    yield api
    api.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and _PLANE is not None and "control_plane" in getattr(item, "fixturenames", ()):
        rep.sections.append(("control plane logs", _PLANE.dump_logs(tail=80)))
