"""The one Kubernetes client wrapper: create idempotently, get, delete, and discover APIs.

Built on the official client's ApiClient (auth, TLS, kubeconfig or in-cluster config) with
plain JSON in and out, so builders can stay dicts.
"""

from collections.abc import Iterator

import orjson
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

PLURALS = {
    "ConfigMap": "configmaps", "ServiceAccount": "serviceaccounts", "Role": "roles",
    "RoleBinding": "rolebindings", "Job": "jobs", "RayJob": "rayjobs", "Pod": "pods",
    "PersistentVolumeClaim": "persistentvolumeclaims", "TrainingJob": "trainingjobs", "Event": "events",
}


def load_config() -> None:
    """In-cluster config in a pod, the kubeconfig elsewhere."""
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()


def resource_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{PLURALS[kind]}" if namespace else f"{base}/{PLURALS[kind]}"
    return f"{path}/{name}" if name else path


class Kube:
    def __init__(self, api_client: client.ApiClient | None = None):
        self.api = api_client or client.ApiClient()

    def request(self, method: str, path: str, body: dict | None = None, query: list | None = None,
                content_type: str = "application/json", timeout: float = 30) -> dict:
        method, url, headers, body, post = self.api.param_serialize(
            method, path, query_params=query or [], body=body,
            header_params={"Accept": "application/json", "Content-Type": content_type},
            auth_settings=["BearerToken"],
        )
        response = self.api.call_api(method, url, headers, body, post, _request_timeout=timeout)
        response.read()
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)
        return orjson.loads(response.data) if response.data else {}

    def stream(self, path: str, query: list, read_timeout: float) -> Iterator[list[bytes]]:
        """A watch's lines as they arrive, a list per network read (so callers can batch)."""
        method, url, headers, body, post = self.api.param_serialize(
            "GET", path, query_params=query, header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"])
        response = self.api.call_api(method, url, headers, body, post, _request_timeout=(10, read_timeout))
        if not 200 <= response.status < 300:
            response.read()
            raise ApiException(http_resp=response)
        raw = response.response  # urllib3's, not yet read
        try:
            partial = b""
            for chunk in raw.stream(64 * 1024):
                *lines, partial = (partial + chunk).split(b"\n")
                if lines:
                    yield [line for line in lines if line]
        finally:
            raw.release_conn()

    def create(self, manifest: dict) -> bool:
        """Create; False when it already exists (409), so retries and restarts are harmless."""
        meta = manifest["metadata"]
        try:
            self.request("POST", resource_path(manifest["apiVersion"], manifest["kind"], meta.get("namespace")), manifest)
            return True
        except ApiException as error:
            if error.status == 409:
                return False
            raise

    def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        try:
            return self.request("GET", resource_path(api_version, kind, namespace, name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete with background propagation (its pods follow); False when it was not there."""
        try:
            self.request("DELETE", resource_path(api_version, kind, namespace, name),
                         {"propagationPolicy": "Background"})
            return True
        except ApiException as error:
            if error.status == 404:
                return False
            raise

    def has_resource(self, group: str, version: str, plural: str) -> bool:
        """Whether the API server serves group/version/plural (e.g. KubeRay's rayjobs)."""
        try:
            listing = self.request("GET", f"/apis/{group}/{version}")
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return any(r.get("name") == plural for r in listing.get("resources", []))
