"""Kueue on a local control plane: its CRDs and its controller as a host process (tests and dev).

``hack/build-kueue.sh`` builds ``sigs.k8s.io/kueue/cmd/kueue`` (the newest v0.17.x on the Go
module proxy) into ``${TRAINWRIGHT_CACHE:-~/.cache/trainwright}/bin/kueue-<version>/`` with
Kueue's CRDs beside it (or ``$TRAINWRIGHT_KUEUE_BIN_DIR``).

    with ControlPlane() as cp, Kueue(cp) as kueue:     # CRDs applied, controller ready
        kueue.cluster_queue("gpus", {"nvidia.com/gpu": 16, "cpu": 256, "memory": "2Ti"})
        kueue.local_queue("team-a", "gpus", namespace="default")
        # a suspended batch Job or RayJob labelled kueue.x-k8s.io/queue-name=team-a is admitted
        # (un-suspended) while the ClusterQueue has quota for it

How it runs, and why:

* Its Configuration: ``manageJobsWithoutQueueName: false`` (only labelled jobs are Kueue's),
  the ``batch/job`` and ``ray.io/rayjob`` integrations, no leader election, internal cert
  management off, the webhook server, metrics and health probes on free ports of 127.0.0.1.
  The feature gate ``VisibilityOnDemand`` is off: its API server would need an APIService and
  a port of its own, and nothing here asks it.
* No webhook configurations are registered with the API server, so Kueue's webhooks (which
  suspend a labelled Job on create, default and validate its objects) never run: a job must be
  created suspended, as the operator creates its launchers, and Kueue's controllers do the
  rest (Workload, admission, un-suspending, finishing). The webhook server still runs (Kueue
  is not ready without it) on a certificate of the cluster's CA.
* With internal cert management off, Kueue reads its metrics server's certificate from the
  fixed path ``/etc/kueue/metrics/certs`` and exits when it is not there. Rather than write into
  this machine's ``/etc``, the process runs in a mount namespace of its own (``unshare``: as
  root, or in a user namespace otherwise) whose ``/etc`` is an overlay of the real one with
  that directory added on a tmpfs; nothing outside the process sees it.
* It runs on the host (with a real node too: it reaches the API server as kubectl does, through
  the admin kubeconfig). Its log is ``logs/kueue.log`` in the control plane's work directory, so
  the control plane's ``dump_logs`` (attached to a failed test's report) includes it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from devcluster.controlplane import (
    BinariesMissing, ControlPlane, ControlPlaneError, _die_with_parent, free_port, wait_for,
)

KUEUE_SERIES = "v0.17"
GROUP = "kueue.x-k8s.io"
API_VERSION = f"{GROUP}/v1beta2"  # the storage version of Kueue 0.17's CRDs
QUEUE_LABEL = f"{GROUP}/queue-name"
FRAMEWORKS = ("batch/job", "ray.io/rayjob")
METRICS_CERT_DIR = "/etc/kueue/metrics/certs"  # fixed in Kueue's main when internal certs are off

BUILD_HINT = (
    "Build it with `hack/build-kueue.sh` (or `make kueue-binaries`; cached under "
    "${TRAINWRIGHT_CACHE:-~/.cache/trainwright}/bin/kueue-<version>/), or point "
    "TRAINWRIGHT_KUEUE_BIN_DIR at a directory holding `kueue` and `kueue-crds/`."
)


class KueueMissing(BinariesMissing):
    """Kueue's binary or CRDs are not built."""


def _complete(directory: Path) -> bool:
    return os.access(directory / "kueue", os.X_OK) and (directory / "kueue-crds" / f"{GROUP}_workloads.yaml").is_file()


def default_kueue_bin_dir() -> Path:
    """$TRAINWRIGHT_KUEUE_BIN_DIR, else the newest complete kueue-v0.17.* build in the cache."""
    if os.environ.get("TRAINWRIGHT_KUEUE_BIN_DIR"):
        return Path(os.environ["TRAINWRIGHT_KUEUE_BIN_DIR"]).expanduser()
    cache = Path(os.environ.get("TRAINWRIGHT_CACHE", "~/.cache/trainwright")).expanduser() / "bin"

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(p) if p.isdigit() else -1 for p in path.name.removeprefix("kueue-v").split("."))

    built = sorted((d for d in cache.glob(f"kueue-{KUEUE_SERIES}.*") if _complete(d)), key=version)
    return built[-1] if built else cache / f"kueue-{KUEUE_SERIES}.x"


def find_kueue(bin_dir: Path | str | None = None) -> Path:
    """The directory holding ``kueue`` and ``kueue-crds/``, or raise KueueMissing."""
    directory = Path(bin_dir) if bin_dir else default_kueue_bin_dir()
    if not _complete(directory):
        raise KueueMissing(f"Kueue's binary or CRDs missing from {directory}. {BUILD_HINT}")
    return directory


def _namespace_wrapper() -> list[str]:
    """unshare: a private mount namespace, as root, or inside a user namespace otherwise."""
    unshare = shutil.which("unshare")
    if not unshare:
        raise ControlPlaneError("the `unshare` command (util-linux) is needed to run Kueue with a private /etc")
    user = [] if os.geteuid() == 0 else ["--user", "--map-root-user"]
    return [unshare, *user, "--mount", "--propagation", "private", "--"]


# Run inside the new mount namespace: a tmpfs holds the overlay's upper layer (with the
# metrics certificate in it), the overlay goes over /etc, then the shell becomes Kueue.
_ETC_OVERLAY = """\
set -eu
scratch="$1"; certs="$2"; under_etc="$3"; shift 3
mount -t tmpfs -o mode=0755,size=4m trainwright-kueue "$scratch"
mkdir -p "$scratch/upper/$under_etc" "$scratch/work"
cp "$certs/tls.crt" "$certs/tls.key" "$scratch/upper/$under_etc/"
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$scratch/upper,workdir=$scratch/work" /etc
exec "$@"
"""


class Kueue:
    """Kueue's controller against a running ControlPlane: ``start()`` applies the CRDs, writes
    the Configuration, runs the binary and waits until it is ready; ``stop()`` ends it."""

    def __init__(self, cp: ControlPlane, *, bin_dir: Path | str | None = None,
                 frameworks: Iterable[str] = FRAMEWORKS, feature_gates: Mapping[str, bool] | None = None):
        self.cp = cp
        self.bin_dir = find_kueue(bin_dir)
        self.version = (self.bin_dir / "VERSION").read_text().strip() if (self.bin_dir / "VERSION").exists() else ""
        self.frameworks = list(frameworks)
        self.feature_gates = {"VisibilityOnDemand": False, **(feature_gates or {})}
        self.work_dir = cp.work_dir / "kueue"
        self.log_path = cp.log_dir / "kueue.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.webhook_port = self.metrics_port = self.health_port = 0

    def __enter__(self) -> Kueue:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- lifecycle ---------------------------------------------------------------------

    def install_crds(self, timeout: float = 60) -> list[str]:
        """Apply Kueue's CRDs (server-side: the Workload CRD is too large for a client-side
        apply's annotation) and wait until they are Established."""
        crd_dir = self.bin_dir / "kueue-crds"
        out = self.cp.kubectl("apply", "--server-side", "--force-conflicts", "-o", "name", "-f", str(crd_dir),
                              timeout=timeout)
        names = [line.split("/", 1)[1] for line in out.split() if line.startswith("customresourcedefinition")]
        self.cp.kubectl("wait", "--for=condition=Established", f"--timeout={int(timeout)}s",
                        *[f"crd/{n}" for n in names], timeout=timeout + 10)
        return names

    def configuration(self) -> dict[str, Any]:
        return {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2",
            "kind": "Configuration",
            "manageJobsWithoutQueueName": False,
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "webhook": {"host": "127.0.0.1", "port": self.webhook_port, "certDir": str(self.work_dir / "webhook-certs")},
            "metrics": {"bindAddress": f"127.0.0.1:{self.metrics_port}"},
            "health": {"healthProbeBindAddress": f"127.0.0.1:{self.health_port}"},
            "clientConnection": {"qps": 100, "burst": 200},
            "integrations": {"frameworks": self.frameworks},
        }

    def start(self, timeout: float = 90) -> Kueue:
        self.install_crds()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.webhook_port, self.metrics_port, self.health_port = free_port(), free_port(), free_port()
        for purpose in ("webhook", "metrics"):
            crt, key = self.cp.pki.issue(f"kueue-{purpose}", f"/CN=kueue-{purpose}",
                                         server_sans=["IP:127.0.0.1", "DNS:localhost"], client=False)
            certs = self.work_dir / f"{purpose}-certs"
            certs.mkdir(exist_ok=True)
            shutil.copyfile(crt, certs / "tls.crt")
            shutil.copyfile(key, certs / "tls.key")
        config = self.work_dir / "config.yaml"
        config.write_text(json.dumps(self.configuration(), indent=2))  # JSON is YAML
        scratch = self.work_dir / "etc-overlay"
        scratch.mkdir(exist_ok=True)
        gates = ",".join(f"{k}={str(v).lower()}" for k, v in self.feature_gates.items())
        argv = [*_namespace_wrapper(), "/bin/sh", "-c", _ETC_OVERLAY, "kueue-etc-overlay",
                str(scratch), str(self.work_dir / "metrics-certs"), METRICS_CERT_DIR.removeprefix("/etc/"),
                str(self.bin_dir / "kueue"), f"--config={config}", f"--feature-gates={gates}", "--zap-log-level=info"]
        self.cp.log_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"$ {' '.join(argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.work_dir,
                env={**self.cp.env, "KUBECONFIG": str(self.cp.kubeconfig)}, start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        try:
            wait_for(self.ready, timeout=timeout, interval=0.2, message=lambda: f"Kueue /readyz\n{self.logs()}")
        except BaseException:
            self.stop()
            raise
        return self

    def ready(self) -> bool:
        """Kueue's /readyz answers 200 (its webhook server is up); raises if it exited."""
        if self.process is None or self.process.poll() is not None:
            code = None if self.process is None else self.process.returncode
            raise ControlPlaneError(f"kueue exited with code {code}:\n{self.logs()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as response:
                return response.status == 200
        except (OSError, urllib.error.URLError):
            return False

    def stop(self, grace: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            self.process.wait(timeout=5)

    def logs(self, tail: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

    # -- queues --------------------------------------------------------------------------

    def _apply(self, document: dict) -> None:
        self.cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(document))

    def _get(self, path: str) -> dict:
        return self.cp.api("GET", path)

    def resource_flavor(self, name: str = "default-flavor") -> str:
        self._apply({"apiVersion": API_VERSION, "kind": "ResourceFlavor", "metadata": {"name": name}})
        return name

    def cluster_queue(self, name: str, quotas: Mapping[str, int | str], *, flavor: str = "default-flavor",
                      timeout: float = 30) -> dict:
        """A ClusterQueue for every namespace, with ``quotas`` ({resource: nominal quota}) in one
        flavor (created too); returned once Kueue reports it Active."""
        self.resource_flavor(flavor)
        self._apply({
            "apiVersion": API_VERSION, "kind": "ClusterQueue", "metadata": {"name": name},
            "spec": {"namespaceSelector": {}, "resourceGroups": [{
                "coveredResources": list(quotas),
                "flavors": [{"name": flavor, "resources": [{"name": r, "nominalQuota": q} for r, q in quotas.items()]}],
            }]},
        })
        path = f"/apis/{API_VERSION}/clusterqueues/{name}"
        return wait_for(lambda: self._active(self._get(path)), timeout=timeout,
                        message=lambda: f"ClusterQueue {name} Active\n{self.logs()}")

    def local_queue(self, name: str, cluster_queue: str, *, namespace: str, timeout: float = 30) -> dict:
        """A LocalQueue in ``namespace`` pointing at ``cluster_queue``; returned once Active."""
        self._apply({"apiVersion": API_VERSION, "kind": "LocalQueue", "metadata": {"name": name, "namespace": namespace},
                     "spec": {"clusterQueue": cluster_queue}})
        path = f"/apis/{API_VERSION}/namespaces/{namespace}/localqueues/{name}"
        return wait_for(lambda: self._active(self._get(path)), timeout=timeout,
                        message=lambda: f"LocalQueue {namespace}/{name} Active\n{self.logs()}")

    @staticmethod
    def _active(obj: dict) -> dict | None:
        conditions = (obj.get("status") or {}).get("conditions") or []
        return obj if any(c["type"] == "Active" and c["status"] == "True" for c in conditions) else None

    def workloads(self, namespace: str) -> list[dict]:
        return self._get(f"/apis/{API_VERSION}/namespaces/{namespace}/workloads")["items"]

    def workload_of(self, namespace: str, owner_uid: str) -> dict | None:
        """The Workload Kueue made for the object with this UID (its owner), if any."""
        return next((w for w in self.workloads(namespace)
                     if any(o.get("uid") == owner_uid for o in w["metadata"].get("ownerReferences") or [])), None)

