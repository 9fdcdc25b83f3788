"""The e2e tier: the control plane plus one real node (devcluster.node), the images built from
this tree, the chart installed with helm, KubeRay's operator from an image built here, and a
restricted namespace with real claims holding a tiny pre-trained model and data sets made here.

Missing parts (not root, binaries or Debian tools absent) skip these tests on a developer's
machine and fail them under CI (env CI set), like the cluster tier.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devcluster import wait_for
from devcluster.controlplane import RESTRICTED
from devcluster.node import RealNodeCluster, missing_node_parts
from e2ekit import CLAIMS, JOBS_NS, RAY_NS, RELEASE, SYSTEM_NS, apply, kget

# The chart tier's Prometheus runner and its tool lookup, shared rather than copied.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "chart"))
from chartkit import CHART, find_tool, require  # noqa: E402


def pytest_collection_modifyitems(items):
    here = os.path.dirname(__file__)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def real_cluster():
    missing = missing_node_parts()
    if missing:
        message = "the real node needs: " + "; ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    cluster = RealNodeCluster()
    cluster.start()
    print("real node timings:", json.dumps({k: round(v, 1) for k, v in cluster.timings.items()}))
    yield cluster
    cluster.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    cluster = getattr(item, "funcargs", {}).get("real_cluster")
    if report.failed and cluster is not None:
        report.sections.append(("real node logs", cluster.dump_logs(tail=40)))
        pods = cluster.kubectl_run("get", "pods", "-A", "-o", "wide").stdout
        events = cluster.kubectl_run("get", "events", "-A", "--sort-by=.lastTimestamp").stdout[-6000:]
        report.sections.append(("pods and events", f"{pods}\n{events}"))
        logs = cluster.kubectl_run("logs", "-n", SYSTEM_NS, f"deployment/{RELEASE}", "--tail=80").stdout
        report.sections.append(("operator pod log", logs))


@pytest.fixture(scope="session")
def release(real_cluster):
    """The chart, installed with the images built from this tree; the Deployment Ready by its probes."""
    seconds = real_cluster.install_chart(CHART, RELEASE, SYSTEM_NS)
    print(f"helm install to a Ready operator: {seconds:.1f}s")
    return kget(real_cluster, "deployment", RELEASE, "-n", SYSTEM_NS)


@pytest.fixture(scope="session")
def kuberay(real_cluster):
    """KubeRay's CRDs and its operator, running in a pod from the image built here."""
    cluster = real_cluster
    cluster.install_kuberay_crds()
    image = cluster.image_set["ray-operator"]
    labels = {"app.kubernetes.io/name": "kuberay-operator"}
    apply(cluster,
          {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RAY_NS, "labels": RESTRICTED}},
          {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "kuberay-operator", "namespace": RAY_NS}},
          # Test infrastructure, not ours to scope: KubeRay's own chart grants it about as much.
          {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
           "metadata": {"name": "kuberay-operator"},
           "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
           "subjects": [{"kind": "ServiceAccount", "name": "kuberay-operator", "namespace": RAY_NS}]},
          {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "kuberay-operator", "namespace": RAY_NS},
           "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
               "metadata": {"labels": labels},
               "spec": {"serviceAccountName": "kuberay-operator",
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "kuberay-operator", "image": image.ref, "imagePullPolicy": "Never",
                            "args": ["--enable-leader-election=false", "--metrics-addr=:8080", "--health-probe-bind-address=:8082"],
                            "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
                            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                                "capabilities": {"drop": ["ALL"]}},
                        }]}}}})
    cluster.kubectl("rollout", "status", "deployment/kuberay-operator", "-n", RAY_NS, "--timeout=120s", timeout=130)
    return image


@pytest.fixture(scope="session")
def base_model(tmp_path_factory) -> Path:
    """A tiny classifier pre-trained (on the host, briefly) on the demo's task A: what a user
    would bring as a pre-trained model. Saved with save_pretrained, as any user's model is."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from trainwright.api import parse_job
    from trainwright.api.status import Plan
    from trainwright.trainer.runner import RunSettings, run_job

    out = tmp_path_factory.mktemp("base-model")
    job = parse_job({"apiVersion": "trainwright.dev/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "base"},
                     "spec": {"strategy": "scratch",
                              "model": {"task": "sequence-classification",
                                        "architecture": {"family": "classifier", "layers": 1, "hidden": 32, "heads": 2,
                                                         "vocabSize": 128, "contextLength": 64}},
                              "dataset": {"source": "builtin:topics", "samples": 800, "validationSplit": 0.2},
                              "resources": {"gpus": 0},
                              "training": {"epochs": 2, "batchSize": 16, "maxSeqLength": 32, "learningRate": 5e-3}}})
    plan = Plan(strategy="scratch", reason="e2e base model", gpus=0, launcher="job", workers=1, pods=1, gpusPerPod=0)
    run_job(RunSettings(job=job, plan=plan, output_dir=str(out), checkpoint_dir=str(out / "checkpoints"),
                        pvc_root=str(out), reporters=["jsonl"], workers=1))
    return out / "model"


@pytest.fixture(scope="session")
def jobs_namespace(real_cluster, release, base_model) -> dict[str, Path]:
    """The restricted namespace the jobs run in, with claims `data`, `models` and `ckpt`; returns
    each claim's directory on this machine."""
    from trainwright.trainer.demo import builtin_records

    cluster = real_cluster
    cluster.restricted_namespace(JOBS_NS)
    dirs = {claim: cluster.make_claim(JOBS_NS, claim) for claim in CLAIMS}
    wait_for(lambda: all(kget(cluster, "pvc", c, "-n", JOBS_NS)["status"].get("phase") == "Bound" for c in CLAIMS),
             timeout=60, message="the e2e claims Bound")
    shutil.copytree(base_model, dirs["models"] / "base", dirs_exist_ok=True)
    for name, samples in (("living", 1600), ("patterns", 1600)):
        with open(dirs["data"] / f"{name}.jsonl", "w") as f:
            for record in builtin_records(name, samples):
                f.write(json.dumps(record) + "\n")
    # As a person sharing data with pods would: readable by any uid (save_pretrained writes 0600).
    for claim in ("data", "models"):
        subprocess.run(["chmod", "-R", "a+rX", str(dirs[claim])], check=True)
    return dirs


@pytest.fixture(scope="session")
def node_s3(real_cluster):
    """A real S3-compatible server (s3proxy) in the node's network namespace: pods reach it on
    the node's address, the host (to make buckets and objects) through a forwarder."""
    import s3kit

    try:
        server = s3kit.server(listen="0.0.0.0", prefix=real_cluster.netns.command)
    except s3kit.ServerMissing as exc:
        s3kit.skip_or_fail(exc)
    real_cluster.forward_port("s3", server.port)
    yield server.start()
    server.stop()


@pytest.fixture(scope="session")
def prometheus_binary() -> Path:
    path = find_tool("prometheus")
    if path is None:
        require("prometheus (hack/install-prometheus.sh installs Debian's package)")
    return path
