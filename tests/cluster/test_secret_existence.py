"""The operator learns whether a job's Secret exists, never its data: a dry-run create (409 when
it exists) that stores nothing (kube.py EXISTENCE_BY_DRY_RUN), allowed by 'create secrets' alone."""

from __future__ import annotations

import asyncio

from trainwright.controller.kube import Kube, load_configuration


async def _get(kubeconfig, namespace: str, name: str):
    async with Kube(load_configuration(str(kubeconfig))) as kube:
        return await kube.get("v1", "Secret", namespace, name)


def _create_only_identity(control_plane, namespace: str):
    """A ServiceAccount that may create secrets and nothing else, as the chart's operator."""
    control_plane.api("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                      {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "checker"}}, ok=(201,))
    control_plane.api("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "checker"},
        "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]}]}, ok=(201,))
    control_plane.api("POST", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "checker"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "checker"},
        "subjects": [{"kind": "ServiceAccount", "name": "checker", "namespace": namespace}]}, ok=(201,))
    return control_plane.service_account_kubeconfig("checker", namespace, create=False)


def test_a_secret_is_found_as_its_name_alone_and_a_missing_one_is_not_created(control_plane, namespace):
    control_plane.api("POST", f"/api/v1/namespaces/{namespace}/secrets", {
        "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s3-creds"},
        "stringData": {"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "very-secret"}}, ok=(201,))
    kubeconfig = _create_only_identity(control_plane, namespace)
    assert control_plane.kubectl_run("auth", "can-i", "get", "secrets", "-n", namespace,
                                     kubeconfig=kubeconfig).stdout.strip() == "no"
    found = asyncio.run(_get(kubeconfig, namespace, "s3-creds"))
    assert found == {"metadata": {"name": "s3-creds", "namespace": namespace}}
    assert asyncio.run(_get(kubeconfig, namespace, "nobody")) is None
    listed = control_plane.api("GET", f"/api/v1/namespaces/{namespace}/secrets")
    assert "nobody" not in [s["metadata"]["name"] for s in listed["items"]]  # the dry run stored nothing
