"""Fixtures of the chart tier: helm, promtool, Prometheus, and the cluster tier's control plane.

A tool that is missing skips its tests on a developer's machine and fails them under CI (env
CI set), like the cluster tier. The control plane is helper code of tests/cluster/conftest.py,
loaded by path (tests/ is not a package) so both tiers start it the same way.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from chartkit import ROOT, Helm, find_tool, require


def _load_cluster_conftest():
    path = ROOT / "tests" / "cluster" / "conftest.py"
    spec = importlib.util.spec_from_file_location("trainwright_tests_cluster_conftest", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_cluster = _load_cluster_conftest()
control_plane = _cluster.control_plane
pytest_runtest_makereport = _cluster.pytest_runtest_makereport


@pytest.fixture(scope="session")
def helm() -> Path:
    path = find_tool("helm")
    if path is None:
        require("helm (built by hack/build-control-plane.sh into the control-plane bin dir)")
    return path


@pytest.fixture(scope="session")
def promtool() -> Path:
    path = find_tool("promtool")
    if path is None:
        require("promtool (hack/install-prometheus.sh installs Debian's prometheus)")
    return path


@pytest.fixture(scope="session")
def helm_cli(helm, tmp_path_factory) -> Helm:
    return Helm(helm, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    path = find_tool("prometheus")
    if path is None:
        require("prometheus (hack/install-prometheus.sh installs Debian's package)")
    return path
