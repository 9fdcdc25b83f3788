"""Fixtures of the chart tier: helm, promtool, Prometheus, and the cluster tier's control plane.

A tool that is missing skips its tests on a developer's machine and fails them under CI (env
CI set), like the cluster tier. The control plane comes from tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chartkit import ROOT, Helm, find_tool, require


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
