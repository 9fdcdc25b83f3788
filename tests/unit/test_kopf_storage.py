"""kopf is pinned under trainwright.dev, and our slimmer diff base builds kopf's own essence."""

import kopf
import pytest

from trainwright.controller.handlers import SlimDiffBaseStorage, configure_kopf

KEY = "last-handled-configuration"

POD = {
    "apiVersion": "v1", "kind": "Pod",
    "metadata": {"name": "p", "namespace": "ml", "uid": "u1", "resourceVersion": "7", "generation": 1,
                 "labels": {"app": "x"}, "managedFields": [{"manager": "kcm", "fieldsV1": {"f:spec": {}}}],
                 "annotations": {"note": "kept", "kubectl.kubernetes.io/last-applied-configuration": "{}",
                                 "kopf.zalando.org/last-handled-configuration": "{}"}},
    "spec": {"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
}
BARE = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "ml"}, "data": {"k": "v"}}


@pytest.mark.parametrize("body", [POD, BARE], ids=["pod", "bare"])
def test_slim_diff_base_builds_the_same_essence_as_kopfs_own(body):
    ours = SlimDiffBaseStorage(prefix="trainwright.dev", key=KEY).build(body=kopf.Body(body))
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix="trainwright.dev", key=KEY).build(body=kopf.Body(body))
    assert ours == kopfs


def test_slim_diff_base_defers_to_kopf_when_fields_are_asked_for_by_name():
    extra = ["status.phase"]
    ours = SlimDiffBaseStorage(prefix="trainwright.dev", key=KEY).build(body=kopf.Body(POD), extra_fields=extra)
    assert ours["status"] == {"phase": "Running"}


def test_kopf_keeps_its_storage_under_trainwright_dev():
    settings = kopf.OperatorSettings()
    configure_kopf(settings)
    assert settings.persistence.finalizer.startswith("trainwright.dev/")
    assert settings.persistence.progress_storage.prefix == "trainwright.dev"
    assert isinstance(settings.persistence.diffbase_storage, SlimDiffBaseStorage)
    assert settings.persistence.diffbase_storage.prefix == "trainwright.dev"
