"""The operator tier: a real control plane of its own (pods run long enough to act on them)
and the operator as a real process, started with `trainwright operator`."""

from __future__ import annotations

import os
import signal
import subprocess
import uuid
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from trainwright import devcluster
from trainwright.devcluster import BinariesMissing, ControlPlane, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "crds" / "trainingjobs.trainwright.dev.yaml"
POD_RUN_SECONDS = 8.0  # long enough to fail, suspend or over-spend a running pod


def pytest_collection_modifyitems(items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.cluster)


@pytest.fixture(scope="session")
def cluster():
    try:
        devcluster.find_binaries()
    except BinariesMissing as exc:
        if os.environ.get("CI"):
            pytest.fail(f"operator tier needs the control-plane binaries: {exc}", pytrace=False)
        pytest.skip(f"operator tier needs the control-plane binaries: {exc}")
    with ControlPlane(run_seconds=POD_RUN_SECONDS) as cp:
        cp.kubectl("apply", "-f", str(CRD))
        cp.kubectl("wait", "--for=condition=Established", "crd/trainingjobs.trainwright.dev")
        yield cp


class OperatorProcess:
    """`trainwright operator` as a subprocess; killable and restartable."""

    def __init__(self, cluster: ControlPlane, log_path: Path, kubeconfig: Path | None = None):
        self.cluster, self.log_path = cluster, log_path
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.metrics_port, self.health_port = free_port(), free_port()
        self.process: subprocess.Popen | None = None

    def start(self) -> "OperatorProcess":
        env = {**self.cluster.env, "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "trainwright.cli", "operator", "--metrics-port", str(self.metrics_port),
             "--health-port", str(self.health_port), "--trainer-image", "trainer:test"],
            env=env, stdout=self.log_path.open("a"), stderr=subprocess.STDOUT)
        wait_for(self.healthy, timeout=60, message="operator /healthz")
        return self

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise RuntimeError(f"operator exited {self.process.returncode}:\n{self.log_path.read_text()[-3000:]}")
        try:
            return urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2).status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        return urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).read().decode()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="session")
def operator(cluster, tmp_path_factory):
    process = OperatorProcess(cluster, tmp_path_factory.mktemp("operator") / "operator.log").start()
    yield process
    process.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and "operator" in getattr(item, "fixturenames", ()):
        process = item.funcargs.get("operator")
        if process is not None and process.log_path.exists():
            report.sections.append(("operator log", process.log_path.read_text()[-6000:]))


@pytest.fixture
def namespace(cluster, request):
    slug = request.node.originalname.lower().replace("_", "-").removeprefix("test-")[:40].strip("-")
    name = f"{slug}-{uuid.uuid4().hex[:5]}"
    cluster.kubectl("create", "namespace", name)
    wait_for(lambda: cluster.kubectl_run("get", "serviceaccount", "default", "-n", name).returncode == 0,
             timeout=30, message=f"default ServiceAccount in {name}")
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def apply(cluster: ControlPlane, document: dict, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(document))


def claims(cluster: ControlPlane, namespace: str, *names: str) -> None:
    """Bound PersistentVolumeClaims, pre-bound to hostPath volumes (no provisioner here)."""
    for name in names:
        pv = f"{namespace}-{name}"
        apply(cluster, {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
                        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                                 "storageClassName": "manual", "hostPath": {"path": f"/tmp/{pv}"},
                                 "claimRef": {"namespace": namespace, "name": name}}}, namespace)
        apply(cluster, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
                        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "manual", "volumeName": pv,
                                 "resources": {"requests": {"storage": "1Gi"}}}}, namespace)
