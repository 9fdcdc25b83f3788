"""The one Kubernetes client: create idempotently, get, delete, discover APIs and stream watches.

Asynchronous, on aiohttp, with plain JSON in and out so builders can stay dicts. Credentials
come from the official client's Configuration (kubeconfig or in-cluster; a refreshed token
is read on each request). Not the official threaded client: each of its requests costs the
operator more than twice the CPU and a thread hand-off (bench/results/operator-cpu.md).
"""

import ssl
from collections.abc import AsyncIterator

import aiohttp
import orjson
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.client.rest import is_socks_proxy_url, should_bypass_proxies

PLURALS = {
    "ConfigMap": "configmaps", "ServiceAccount": "serviceaccounts", "Role": "roles",
    "RoleBinding": "rolebindings", "Job": "jobs", "RayJob": "rayjobs", "Pod": "pods",
    "PersistentVolumeClaim": "persistentvolumeclaims", "TrainingJob": "trainingjobs", "Event": "events",
}
CONNECTIONS = 128


def load_configuration(kubeconfig: str | None = None) -> client.Configuration:
    """The given kubeconfig; else in-cluster config in a pod, the default kubeconfig elsewhere."""
    configuration = client.Configuration()
    if kubeconfig:
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
        return configuration
    try:
        config.load_incluster_config(client_configuration=configuration)
    except config.ConfigException:
        config.load_kube_config(client_configuration=configuration)
    return configuration


def resource_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    path = f"{base}/namespaces/{namespace}/{PLURALS[kind]}" if namespace else f"{base}/{PLURALS[kind]}"
    return f"{path}/{name}" if name else path


def _ssl_context(configuration: client.Configuration) -> ssl.SSLContext | bool:
    if not configuration.verify_ssl:
        return False
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def connection_options(configuration: client.Configuration) -> dict:
    """What a kubeconfig may ask of each connection, as aiohttp takes it: the TLS server name
    to verify, and an HTTP(S) proxy unless no_proxy covers the server (the official client's
    rules). A SOCKS proxy is refused here, before anything connects."""
    options = {}
    if configuration.tls_server_name:
        options["server_hostname"] = configuration.tls_server_name
    if configuration.proxy and not should_bypass_proxies(configuration.host, configuration.no_proxy or ""):
        if is_socks_proxy_url(configuration.proxy):
            raise ValueError(f"proxy-url {configuration.proxy}: SOCKS proxies are not supported by the operator; "
                             "use an HTTP or HTTPS proxy")
        options["proxy"] = configuration.proxy
        if configuration.proxy_headers:
            options["proxy_headers"] = dict(configuration.proxy_headers)
    return options


class Kube:
    """Open it inside the event loop that uses it (``async with Kube(configuration) as kube``)."""

    def __init__(self, configuration: client.Configuration, connections: int = CONNECTIONS):
        self.configuration = configuration
        self.options = connection_options(configuration)
        self.connections = connections
        self.session: aiohttp.ClientSession | None = None

    async def open(self) -> "Kube":
        connector = aiohttp.TCPConnector(ssl=_ssl_context(self.configuration), limit=self.connections)
        self.session = aiohttp.ClientSession(self.configuration.host, connector=connector)
        return self

    async def close(self) -> None:
        await self.session.close()

    async def __aenter__(self) -> "Kube":
        return await self.open()

    async def __aexit__(self, *_) -> None:
        await self.close()

    def _headers(self, content_type: str) -> dict:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        token = self.configuration.get_api_key_with_prefix("BearerToken", alias="authorization")
        if token:
            headers["Authorization"] = token
        return headers

    async def request(self, method: str, path: str, body: dict | None = None, query: list | None = None,
                      content_type: str = "application/json", timeout: float = 30) -> dict:
        """One call; a write skips the server's unknown-field check: we build every object
        ourselves (tests hold them to the schemas), nobody reads the warnings it would send, and
        the check is a measurable share of the API server's work per write."""
        data = orjson.dumps(body) if body is not None else None
        if method in WRITES:
            query = [*(query or []), ("fieldValidation", "Ignore")]
        async with self.session.request(method, path, data=data, params=_params(query),
                                        headers=self._headers(content_type),
                                        timeout=aiohttp.ClientTimeout(total=timeout), **self.options) as response:
            payload = await response.read()
            if not 200 <= response.status < 300:
                raise ApiException(status=response.status, reason=response.reason, body=payload.decode(errors="replace"))
            return orjson.loads(payload) if payload else {}

    async def stream(self, path: str, query: list, read_timeout: float) -> AsyncIterator[list[bytes]]:
        """A watch's lines as they arrive, a list per network read (so callers can batch)."""
        timeout = aiohttp.ClientTimeout(total=None, connect=10, sock_read=read_timeout)
        async with self.session.get(path, params=_params(query), headers=self._headers("application/json"),
                                    timeout=timeout, **self.options) as response:
            if not 200 <= response.status < 300:
                raise ApiException(status=response.status, reason=response.reason)
            partial = b""
            async for chunk in response.content.iter_any():
                *lines, partial = (partial + chunk).split(b"\n")
                if lines:
                    yield [line for line in lines if line]

    async def create(self, manifest: dict) -> dict | None:
        """Create and return the object as stored; None when it already exists (409), so
        retries and restarts are harmless."""
        meta = manifest["metadata"]
        try:
            return await self.request("POST", resource_path(manifest["apiVersion"], manifest["kind"],
                                                            meta.get("namespace")), manifest)
        except ApiException as error:
            if error.status == 409:
                return None
            raise

    async def get(self, api_version: str, kind: str, namespace: str, name: str) -> dict | None:
        try:
            return await self.request("GET", resource_path(api_version, kind, namespace, name))
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    async def delete(self, api_version: str, kind: str, namespace: str, name: str) -> bool:
        """Delete with background propagation (its pods follow); False when it was not there."""
        try:
            await self.request("DELETE", resource_path(api_version, kind, namespace, name),
                               {"propagationPolicy": "Background"})
            return True
        except ApiException as error:
            if error.status == 404:
                return False
            raise

    async def has_resource(self, group: str, version: str, plural: str) -> bool:
        """Whether the API server serves group/version/plural (e.g. KubeRay's rayjobs)."""
        try:
            listing = await self.request("GET", f"/apis/{group}/{version}")
        except ApiException as error:
            if error.status == 404:
                return False
            raise
        return any(r.get("name") == plural for r in listing.get("resources", []))


WRITES = ("POST", "PUT", "PATCH")


def _params(query: list | None) -> list[tuple[str, str]]:
    return [(key, str(value)) for key, value in query or []]
