"""What the operator tier's tests share: applying documents, claims without a provisioner, and
the small job most tests start from."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = {p.stem: yaml.safe_load(p.read_text()) for p in sorted((ROOT / "examples").glob("*.yaml"))}


def apply(cluster, document: dict, namespace: str) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(document))


def claims(cluster, namespace: str, *names: str) -> None:
    """Bound PersistentVolumeClaims, pre-bound to hostPath volumes (no provisioner here)."""
    for name in names:
        volume = f"{namespace}-{name}"
        apply(cluster, {"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": volume},
                        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteMany"],
                                 "storageClassName": "manual", "hostPath": {"path": f"/tmp/{volume}"},
                                 "claimRef": {"namespace": namespace, "name": name}}}, namespace)
        apply(cluster, {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
                        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "manual", "volumeName": volume,
                                 "resources": {"requests": {"storage": "1Gi"}}}}, namespace)


def small_job(name: str, **spec_changes) -> dict:
    """The fine-tune example on built-in data (no claim needed), with ``spec_changes``."""
    job = copy.deepcopy(EXAMPLES["fine-tune"])
    job["metadata"] = {"name": name}
    job["spec"].pop("checkpoint")
    job["spec"]["dataset"]["source"] = "builtin:reviews"
    job["spec"].update(spec_changes)
    return job
