"""Fixtures of the chart tier: helm, promtool, Prometheus, and the cluster tier's control plane.

A tool that is missing skips its tests on a developer's machine and fails them under CI (env
CI set), like the cluster tier. The control plane comes from tests/conftest.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from chartkit import ROOT, Helm, find_tool, require


def tool(name: str, where: str) -> Path:
    """The tool's path; missing, it skips (or fails under CI) saying where it comes from."""
    path = find_tool(name)
    if path is None:
        require(f"{name} ({where})")
    return path


@pytest.fixture(scope="session")
def helm() -> Path:
    return tool("helm", "built by hack/build-control-plane.sh into the control-plane bin dir")


@pytest.fixture(scope="session")
def promtool() -> Path:
    return tool("promtool", "hack/install-prometheus.sh installs Debian's prometheus")


@pytest.fixture(scope="session")
def helm_cli(helm, tmp_path_factory) -> Helm:
    return Helm(helm, tmp_path_factory.mktemp("helm-home"))


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    return tool("prometheus", "hack/install-prometheus.sh installs Debian's package")
