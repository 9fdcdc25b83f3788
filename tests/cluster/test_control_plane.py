"""The local control plane itself: API, RBAC, scheduling on fake GPU nodes, GC, helm, KubeRay CRDs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from devcluster import controlplane as devcluster
from devcluster import ANN_FAIL, wait_for

pytestmark = pytest.mark.cluster

TESTDATA = Path(__file__).parent / "testdata"

WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.test.trainwright.dev"},
    "spec": {
        "group": "test.trainwright.dev",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [{
            "name": "v1",
            "served": True,
            "storage": True,
            "schema": {"openAPIV3Schema": {
                "type": "object",
                "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}},
            }},
        }],
    },
}


def get_json(cp, *args):
    return json.loads(cp.kubectl("get", *args, "-o", "json"))


def job_manifest(name, gpus, annotations=None):
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {
                    "restartPolicy": "Never",
                    "containers": [{
                        "name": "train",
                        "image": "trainwright/fake:latest",
                        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                    }],
                },
            },
        },
    }


def test_crd_and_custom_resource(control_plane, namespace, k8s_client):
    cp = control_plane
    cp.kubectl("apply", "-f", "-", input=json.dumps(WIDGET_CRD))
    cp.kubectl("wait", "--for=condition=Established", "--timeout=30s", "crd/widgets.test.trainwright.dev")
    widget = {"apiVersion": "test.trainwright.dev/v1", "kind": "Widget",
              "metadata": {"name": "w1", "namespace": namespace}, "spec": {"size": 3}}
    wait_for(lambda: cp.kubectl_run("apply", "-f", "-", input=json.dumps(widget)).returncode == 0,
             timeout=30, message="Widget accepted")
    assert get_json(cp, "widget", "w1", "-n", namespace)["spec"] == {"size": 3}

    from kubernetes import client

    custom = client.CustomObjectsApi(k8s_client)
    custom.create_namespaced_custom_object("test.trainwright.dev", "v1", namespace, "widgets",
                                           {**widget, "metadata": {"name": "w2"}, "spec": {"size": 5}})
    got = custom.get_namespaced_custom_object("test.trainwright.dev", "v1", namespace, "widgets", "w2")
    assert got["spec"]["size"] == 5
    names = {i["metadata"]["name"] for i in custom.list_namespaced_custom_object(
        "test.trainwright.dev", "v1", namespace, "widgets")["items"]}
    assert names == {"w1", "w2"}


def test_rbac_enforced(control_plane, namespace):
    cp = control_plane
    kc = cp.service_account_kubeconfig("reader", namespace)
    denied = cp.kubectl_run("get", "configmaps", "-n", namespace, kubeconfig=kc)
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower(), denied.stderr

    # The same through the Python client: a 403.
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    api = config.new_client_from_config(config_file=str(kc))
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(api).list_namespaced_config_map(namespace)
    assert exc.value.status == 403

    cp.kubectl("create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps", "-n", namespace)
    cp.kubectl("create", "rolebinding", "cm-reader", "--role=cm-reader",
               f"--serviceaccount={namespace}:reader", "-n", namespace)
    wait_for(lambda: cp.kubectl_run("get", "configmaps", "-n", namespace, kubeconfig=kc).returncode == 0,
             timeout=20, message="the Role to take effect")
    assert client.CoreV1Api(api).list_namespaced_config_map(namespace).items is not None
    # Still no write access, nor access to another namespace.
    assert cp.kubectl_run("create", "configmap", "x", "-n", namespace, kubeconfig=kc).returncode != 0
    assert cp.kubectl_run("get", "configmaps", "-n", "kube-system", kubeconfig=kc).returncode != 0
    api.close()


def _pods(cp, namespace, job):
    return get_json(cp, "pods", "-n", namespace, "-l", f"job-name={job}")["items"]


def test_gpu_job_scheduled_and_completes(control_plane, namespace):
    cp = control_plane
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(job_manifest("fits", 4)))
    pod = wait_for(lambda: next((p for p in _pods(cp, namespace, "fits") if p["spec"].get("nodeName")), None),
                   timeout=30, message="the pod of Job fits to be scheduled")
    node = get_json(cp, "node", pod["spec"]["nodeName"])
    assert node["status"]["capacity"]["nvidia.com/gpu"] == "8"
    assert node["metadata"]["labels"]["nvidia.com/gpu.product"] == devcluster.GPU_PRODUCT
    wait_for(lambda: get_json(cp, "job", "fits", "-n", namespace)["status"].get("succeeded") == 1,
             timeout=60, message="Job fits to succeed")
    assert _pods(cp, namespace, "fits")[0]["status"]["phase"] == "Succeeded"


def test_gpu_job_too_big_is_unschedulable(control_plane, namespace):
    cp = control_plane
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(job_manifest("too-big", 9)))

    def unschedulable():
        for p in _pods(cp, namespace, "too-big"):
            for c in p["status"].get("conditions", []):
                if c["type"] == "PodScheduled" and c["status"] == "False" and c.get("reason") == "Unschedulable":
                    return p
        return None

    pod = wait_for(unschedulable, timeout=30, message="PodScheduled=False/Unschedulable")
    assert pod["status"]["phase"] == "Pending"
    assert "nvidia.com/gpu" in json.dumps(pod["status"]["conditions"])


def test_pod_fail_annotation(control_plane, namespace):
    cp = control_plane
    job = job_manifest("fails", 1, annotations={ANN_FAIL: "true", devcluster.ANN_EXIT_CODE: "3"})
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(job))

    def failed():
        st = get_json(cp, "job", "fails", "-n", namespace)["status"]
        return st.get("failed") == 1 and any(
            c["type"] == "Failed" and c["status"] == "True" for c in st.get("conditions", []))

    wait_for(failed, timeout=60, message="Job fails to fail")
    pod = _pods(cp, namespace, "fails")[0]
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 3


def test_pod_lifecycle_annotations(control_plane, namespace):
    """kwok-complete=false keeps a Job's pod Running; kwok-complete=true completes a bare pod."""
    cp = control_plane
    cp.kubectl("apply", "-n", namespace, "-f", "-",
               input=json.dumps(job_manifest("forever", 1, annotations={devcluster.ANN_COMPLETE: "false"})))
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(job_manifest("normal", 1)))
    bare = {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "bare", "annotations": {devcluster.ANN_COMPLETE: "true",
                                                         devcluster.ANN_DURATION: "1s"}},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(bare))
    wait_for(lambda: get_json(cp, "job", "normal", "-n", namespace)["status"].get("succeeded") == 1,
             timeout=60, message="Job normal to succeed")
    wait_for(lambda: get_json(cp, "pod", "bare", "-n", namespace)["status"]["phase"] == "Succeeded",
             timeout=60, message="bare pod with kwok-complete=true to succeed")
    # Created together with "normal", which has completed by now: "forever" must still run.
    pods = wait_for(lambda: _pods(cp, namespace, "forever"), timeout=30, message="pod of Job forever")
    wait_for(lambda: _pods(cp, namespace, "forever")[0]["status"].get("phase") == "Running",
             timeout=30, message="pod of Job forever Running")
    assert len(pods) == 1
    assert get_json(cp, "job", "forever", "-n", namespace)["status"].get("succeeded") is None


def test_versions_match_build_script():
    """devcluster/controlplane.py's pinned versions (the cache key) agree with hack/build-control-plane.sh."""
    script = (Path(__file__).parents[2] / "hack" / "build-control-plane.sh").read_text()
    for var in ("KUBE_VERSION", "ETCD_VERSION", "KWOK_VERSION", "HELM_VERSION", "KUBERAY_VERSION"):
        assert f"{var}={getattr(devcluster, var)}\n" in script, var


def test_garbage_collection(control_plane, namespace):
    cp = control_plane
    owner = json.loads(cp.kubectl("create", "configmap", "owner", "-n", namespace, "-o", "json"))
    child = {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "child", "ownerReferences": [{
            "apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"],
        }]},
    }
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(child))
    cp.kubectl("get", "configmap", "child", "-n", namespace)
    cp.kubectl("delete", "configmap", "owner", "-n", namespace)
    wait_for(lambda: cp.kubectl_run("get", "configmap", "child", "-n", namespace).returncode != 0,
             timeout=60, message="the garbage collector to delete the child")


def test_versions(control_plane):
    cp = control_plane
    v = json.loads(cp.kubectl("version", "-o", "json"))
    assert v["clientVersion"]["gitVersion"] == devcluster.KUBE_VERSION
    assert v["serverVersion"]["gitVersion"] == devcluster.KUBE_VERSION
    assert v["serverVersion"]["minor"] == re.match(r"v1\.(\d+)", devcluster.KUBE_VERSION).group(1)
    out = cp.helm("version", "--short")
    assert out.strip().startswith(devcluster.HELM_VERSION), out


def test_helm_install(control_plane, namespace):
    cp = control_plane
    cp.helm("install", "hi", str(TESTDATA / "hello-chart"), "-n", namespace, "--set", "greeting=hey", "--wait")
    cm = get_json(cp, "configmap", "hi-greeting", "-n", namespace)
    assert cm["data"]["greeting"] == "hey"
    assert cm["data"]["kubeVersion"] == devcluster.KUBE_VERSION
    assert "hi" in cp.helm("list", "-n", namespace, "-q").split()
    cp.helm("uninstall", "hi", "-n", namespace)


def test_kuberay_crds_and_raycluster(control_plane, namespace):
    cp = control_plane
    names = cp.install_kuberay_crds()
    assert "rayclusters.ray.io" in names
    raycluster = {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "rc"},
        "spec": {
            "rayVersion": "2.9.0",
            "headGroupSpec": {
                "rayStartParams": {},
                "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.9.0"}]}},
            },
            "workerGroupSpecs": [{
                "groupName": "gpu",
                "replicas": 2, "minReplicas": 0, "maxReplicas": 4,
                "rayStartParams": {},
                "template": {"spec": {"containers": [{
                    "name": "ray-worker", "image": "rayproject/ray:2.9.0",
                    "resources": {"limits": {"nvidia.com/gpu": "8"}},
                }]}},
            }],
        },
    }
    cp.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(raycluster))
    got = get_json(cp, "raycluster", "rc", "-n", namespace)
    assert got["spec"]["workerGroupSpecs"][0]["replicas"] == 2
