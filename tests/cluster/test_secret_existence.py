"""The operator learns whether a job's Secret exists, never its data: a dry-run create (409 when
it exists) that stores nothing (kube.py EXISTENCE_BY_DRY_RUN)."""

from __future__ import annotations

import asyncio

from trainwright.controller.kube import Kube, load_configuration


async def _get(control_plane, namespace: str, name: str):
    async with Kube(load_configuration(str(control_plane.kubeconfig))) as kube:
        return await kube.get("v1", "Secret", namespace, name)


def test_a_secret_is_found_as_its_name_alone_and_a_missing_one_is_not_created(control_plane, namespace):
    control_plane.api("POST", f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds"},
        "stringData": {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "very-secret"}}, ok=(201,))
    found = asyncio.run(_get(control_plane, namespace, "s3-creds"))
    assert found == {"metadata": {"name": "s3-creds", "namespace": namespace}}
    assert asyncio.run(_get(control_plane, namespace, "nobody")) is None
    listed = control_plane.api("GET", f"/api/v1/namespaces/{namespace}/secrets")
    assert "nobody" not in [s["metadata"]["name"] for s in listed["items"]]  # the dry run stored nothing
