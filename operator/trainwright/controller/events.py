"""Kubernetes Events for a job's transitions, built as plain manifests (posted by the loop)."""

from datetime import datetime

from trainwright.controller.reconcile import rfc3339

COMPONENT = "trainwright-operator"


def build_event(body: dict, type_: str, reason: str, message: str, now: datetime) -> dict:
    meta = body["metadata"]
    return {
        "apiVersion": "v1", "kind": "Event",
        "metadata": {"generateName": f"{meta['name']}.", "namespace": meta["namespace"]},
        "involvedObject": {"apiVersion": body["apiVersion"], "kind": body["kind"], "name": meta["name"],
                           "namespace": meta["namespace"], "uid": meta["uid"]},
        "type": type_, "reason": reason, "message": message[:1024],
        "source": {"component": COMPONENT}, "reportingComponent": COMPONENT,
        "firstTimestamp": rfc3339(now), "lastTimestamp": rfc3339(now), "count": 1,
    }
