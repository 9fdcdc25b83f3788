"""Shared by every tier that needs a real control plane (cluster, chart, operator).

Binaries come from hack/build-control-plane.sh. Missing binaries skip those tests on a
developer's machine and fail them under CI (env CI set). When such a test fails, the tail of
every component's log is attached to its report.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

import devcluster
from devcluster import BinariesMissing, ControlPlane

_RUNNING: list[ControlPlane] = []
PLANE_FIXTURES = {"control_plane", "cluster"}


def pytest_configure(config):
    """`trainwright run` records every finished run for later plans: the tests' runs go to a file
    of their own, never into the calibration of the person running them."""
    os.environ["TRAINWRIGHT_CALIBRATION"] = str(Path(tempfile.mkdtemp(prefix="trainwright-calibration-")) / "runs.json")


@pytest.fixture(scope="session")
def start_control_plane():
    """A function that starts a ControlPlane (options as ControlPlane's) and stops it at the end."""
    started: list[ControlPlane] = []

    def start(**options) -> ControlPlane:
        try:
            devcluster.find_binaries()
        except BinariesMissing as exc:
            message = f"needs the control-plane binaries: {exc}"
            if os.environ.get("CI"):
                pytest.fail(message, pytrace=False)
            pytest.skip(message)
        plane = ControlPlane(**options)
        plane.start()
        started.append(plane)
        _RUNNING.append(plane)
        return plane

    yield start
    for plane in started:
        _RUNNING.remove(plane)
        plane.stop()


@pytest.fixture(scope="session")
def control_plane(start_control_plane):
    """The default control plane, shared by the cluster and chart tiers."""
    return start_control_plane()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible server (tests/s3kit.py) for the session: skipped without its jar or
    Java on a developer's machine, failed under CI (env CI set)."""
    import s3kit

    try:
        server = s3kit.server().start()
    except s3kit.ServerMissing as exc:
        s3kit.skip_or_fail(exc)
    yield server
    server.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and PLANE_FIXTURES & set(getattr(item, "fixturenames", ())):
        for plane in _RUNNING:
            report.sections.append((f"control plane logs ({plane.work_dir})", plane.dump_logs(tail=80)))
