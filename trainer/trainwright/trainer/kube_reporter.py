"""The in-cluster reporter: the trainer patches its own TrainingJob's status.

It uses the pod's ServiceAccount token, whose Role allows `get,patch` on this one job's
`status` subresource and nothing else. Standard library only, so the trainer image needs no
Kubernetes client. A failed report is logged and dropped: reporting never stops training.
"""

import json
import logging
import os
import ssl
import urllib.error
import urllib.request

from trainwright.api import GROUP, PLURAL, VERSION
from trainwright.api import pod_contract as pod
from trainwright.api.status import Progress

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
log = logging.getLogger(__name__)


def api_server() -> str:
    """The API server URL: TRAINWRIGHT_KUBE_API, else the in-cluster service address."""
    explicit = os.environ.get(pod.KUBE_API_ENV)
    if explicit:
        return explicit.rstrip("/")
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    if not host:
        raise RuntimeError(f"not in a cluster: KUBERNETES_SERVICE_HOST is unset (set {pod.KUBE_API_ENV})")
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


class KubernetesReporter:
    def __init__(self, job_name: str, namespace: str, timeout: float = 10.0):
        self.url = (f"{api_server()}/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{job_name}/status")
        self.token_file = os.environ.get(pod.KUBE_TOKEN_FILE_ENV, f"{SA_DIR}/token")
        ca_file = os.environ.get(pod.KUBE_CA_FILE_ENV, f"{SA_DIR}/ca.crt")
        self.context = ssl.create_default_context(cafile=ca_file) if os.path.exists(ca_file) else ssl.create_default_context()
        self.timeout = timeout
        self.metrics: dict[str, float] = {}

    def patch(self, status: dict) -> int:
        """Merge-patch ``status``; returns the HTTP status (0 when the server was unreachable)."""
        with open(self.token_file) as handle:  # re-read: projected tokens rotate
            token = handle.read().strip()
        request = urllib.request.Request(
            self.url, method="PATCH", data=json.dumps({"status": status}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/merge-patch+json",
                     "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, context=self.context, timeout=self.timeout) as response:
                return response.status
        except urllib.error.HTTPError as error:
            log.warning("status report refused: HTTP %s %s", error.code, error.reason)
            return error.code
        except (urllib.error.URLError, OSError) as error:
            log.warning("status report failed: %s", error)
            return 0

    def on_step(self, progress: Progress) -> None:
        wire = progress.to_wire()
        if self.metrics:
            wire["metrics"] = dict(self.metrics)
        self.patch({"progress": wire})

    def on_eval(self, metrics: dict[str, float]) -> None:
        self.metrics.update({k: float(v) for k, v in metrics.items() if k.startswith("val_")})

    def on_checkpoint(self, step: int, path: str) -> None:
        self.patch({"checkpoint": {"step": step, "path": path}})

    def close(self) -> None:
        pass
