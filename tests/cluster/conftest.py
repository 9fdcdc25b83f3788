"""Fixtures of the cluster tier; the control plane itself comes from tests/conftest.py."""

from __future__ import annotations

import os
import re

import pytest

import devcluster


def pytest_collection_modifyitems(items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.cluster)


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
