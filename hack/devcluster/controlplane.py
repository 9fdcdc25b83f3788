"""A real Kubernetes control plane on this machine, as local processes, for tests and dev.

``ControlPlane`` starts etcd, kube-apiserver (TLS, RBAC, ServiceAccount tokens),
kube-controller-manager, kube-scheduler and kwok (fake nodes) from the binaries that
``hack/build-control-plane.sh`` builds into
``${TRAINWRIGHT_CACHE:-~/.cache/trainwright}/bin/<version-key>/`` (or ``$TRAINWRIGHT_BIN_DIR``).
Everything listens on 127.0.0.1 on free ports and lives in a temporary work directory
(certificates, kubeconfigs, etcd data, one log file per component under ``logs/``).

    with ControlPlane() as cp:
        cp.kubectl("get", "nodes")
        subprocess.run([...], env=cp.env)      # KUBECONFIG points at the admin kubeconfig

From a shell: ``python -m devcluster up`` (``make dev-cluster``) prints the
kubeconfig path and keeps the cluster up until Ctrl-C; ``--real-node`` (``make real-cluster``)
adds one real node instead of the fake ones (``devcluster.node``).

Fake nodes (kwok, annotation ``kwok.x-k8s.io/node: fake``, no taints):

* ``gpu-node-0``, ``gpu-node-1``: ``nvidia.com/gpu: 8``, 96 cpu, 1Ti memory, labels
  ``nvidia.com/gpu.product=NVIDIA-H100-80GB-HBM3``, ``nvidia.com/gpu.count=8``,
  ``trainwright.dev/pool=gpu``.
* ``cpu-node-0``: 32 cpu, 128Gi memory, label ``trainwright.dev/pool=cpu``.

Pod lifecycle on fake nodes (kwok Stages, loaded from kwok's config file; derived from
kwok's ``kustomize/stage/pod/general`` stages). Once scheduled a pod goes Pending ->
Running (Ready) within about ``start_delay`` seconds. Then:

* a pod owned by a Job goes ``Succeeded`` (exit code 0) ``run_seconds`` later
  (default 2 s, ``ControlPlane(run_seconds=...)``);
* any other pod (Deployment, RayCluster, bare pod) stays Running, unless it has the
  annotation ``trainwright.dev/kwok-complete: "true"``, which makes it Succeed the same way;
* ``trainwright.dev/kwok-complete: "false"`` keeps a Job's pod Running forever;
* ``trainwright.dev/kwok-fail: "true"`` makes a Running pod go ``Failed`` after the same
  delay, its containers terminated with reason ``Error`` and exit code
  ``trainwright.dev/kwok-exit-code`` (default ``1``);
* ``trainwright.dev/kwok-duration: "30s"`` (a Go duration) overrides the run delay of
  that pod, for completing and failing alike;
* a deleted pod (with no finalizers) is removed at once, without a grace period.

These annotation names are constants of this module (``ANN_FAIL``, ``ANN_COMPLETE``,
``ANN_EXIT_CODE``, ``ANN_DURATION``) and the operator's tests rely on them.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devcluster.node import NodeNetwork

ANN_FAIL = "trainwright.dev/kwok-fail"
ANN_COMPLETE = "trainwright.dev/kwok-complete"
ANN_EXIT_CODE = "trainwright.dev/kwok-exit-code"
ANN_DURATION = "trainwright.dev/kwok-duration"

KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
GPU_PRODUCT = "NVIDIA-H100-80GB-HBM3"
# Pod Security admission's strictest level, as the chart's users run it.
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}
GPU_RESOURCE = "nvidia.com/gpu"
SERVICE_CIDR = "10.96.0.0/16"
SERVICE_ACCOUNT_ISSUER = "https://kubernetes.default.svc.cluster.local"

# Keep in step with hack/build-control-plane.sh.
KUBE_VERSION = "v1.35.4"
ETCD_VERSION = "v3.6.16"
KWOK_VERSION = "v0.8.0"
HELM_VERSION = "v3.22.0"
KUBERAY_VERSION = "v1.5.0"
VERSION_KEY = (
    f"k8s-{KUBE_VERSION}_etcd-{ETCD_VERSION}_kwok-{KWOK_VERSION}"
    f"_helm-{HELM_VERSION}_kuberay-{KUBERAY_VERSION}"
)

REQUIRED_BINARIES = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubectl",
    "kwok",
    "helm",
)

BUILD_HINT = (
    "Build them with `hack/build-control-plane.sh` (cold build takes a while; the result is "
    "cached under ${TRAINWRIGHT_CACHE:-~/.cache/trainwright}/bin/), or point "
    "TRAINWRIGHT_BIN_DIR at a directory holding them."
)


class BinariesMissing(RuntimeError):
    """The control-plane binaries are not built."""


class ControlPlaneError(RuntimeError):
    """The control plane failed to start or a command against it failed."""


class ComponentExited(ControlPlaneError):
    """A control-plane process exited."""


def default_bin_dir() -> Path:
    if os.environ.get("TRAINWRIGHT_BIN_DIR"):
        return Path(os.environ["TRAINWRIGHT_BIN_DIR"]).expanduser()
    cache = Path(os.environ.get("TRAINWRIGHT_CACHE", "~/.cache/trainwright")).expanduser()
    return cache / "bin" / VERSION_KEY


def find_binaries(bin_dir: Path | None = None) -> Path:
    """Return the bin dir, or raise BinariesMissing naming what is missing."""
    bin_dir = Path(bin_dir) if bin_dir else default_bin_dir()
    missing = [b for b in REQUIRED_BINARIES if not os.access(bin_dir / b, os.X_OK)]
    if missing:
        raise BinariesMissing(
            f"control-plane binaries missing from {bin_dir}: {', '.join(missing)}. {BUILD_HINT}"
        )
    return bin_dir


def wait_for(
    predicate: Callable[[], Any],
    timeout: float = 30.0,
    interval: float = 0.1,
    message: str | Callable[[], str] = "condition",
) -> Any:
    """Poll ``predicate`` until it returns a truthy value (returned) or raise TimeoutError.

    Exceptions raised by the predicate count as "not yet" (the last one is chained),
    except ``ComponentExited``, which propagates at once.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except ComponentExited:
            raise
        except Exception as exc:  # noqa: BLE001 - polling
            last_exc = exc
        if time.monotonic() >= deadline:
            msg = message() if callable(message) else message
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {msg}") from last_exc
        time.sleep(interval)
        interval = min(interval * 1.5, 1.0)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child before exec: get SIGKILL when the parent dies (Linux), so a killed test
    run leaves no orphan control plane behind."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort, not Linux
        pass


# --------------------------------------------------------------------------- certificates


class _PKI:
    """A CA and the certificates the control plane needs, made with the openssl CLI (EC P-256)."""

    def __init__(self, directory: Path):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.openssl = shutil.which("openssl")
        if not self.openssl:
            raise ControlPlaneError("the `openssl` command is needed to make the cluster's certificates")
        self.ca_crt = self.dir / "ca.crt"
        self.ca_key = self.dir / "ca.key"

    def _run(self, *args: str) -> None:
        proc = subprocess.run([self.openssl, *args], capture_output=True, text=True)
        if proc.returncode != 0:
            raise ControlPlaneError(f"openssl {' '.join(args)} failed: {proc.stderr}")

    def _key(self, path: Path) -> None:
        self._run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))

    def _new_cert(self, key: Path, crt: Path, subject: str, exts: list[str], sign: bool) -> None:
        # One openssl process per certificate: new key + certificate (OpenSSL >= 3.0 for -CA).
        args = ["req", "-x509", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                "-keyout", str(key), "-out", str(crt), "-days", "30", "-subj", subject]
        if sign:
            args += ["-CA", str(self.ca_crt), "-CAkey", str(self.ca_key)]
        for e in exts:
            args += ["-addext", e]
        self._run(*args)

    def make_ca(self) -> None:
        self._new_cert(self.ca_key, self.ca_crt, "/CN=trainwright-devcluster-ca",
                       ["basicConstraints=critical,CA:TRUE", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature"],
                       sign=False)

    def issue(self, name: str, subject: str, *, server_sans: Iterable[str] = (), client: bool = True) -> tuple[Path, Path]:
        key, crt = self.dir / f"{name}.key", self.dir / f"{name}.crt"
        sans = list(server_sans)
        usages = (["serverAuth"] if sans else []) + (["clientAuth"] if client else [])
        exts = [
            "basicConstraints=critical,CA:FALSE",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            f"extendedKeyUsage={','.join(usages)}",
        ]
        if sans:
            exts.append("subjectAltName=" + ",".join(sans))
        self._new_cert(key, crt, subject, exts, sign=True)
        return crt, key

    def service_account_keys(self) -> tuple[Path, Path]:
        key, pub = self.dir / "sa.key", self.dir / "sa.pub"
        self._key(key)
        self._run("pkey", "-in", str(key), "-pubout", "-out", str(pub))
        return key, pub


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(
    path: Path,
    server: str,
    ca: Path,
    *,
    user: str,
    cert: Path | None = None,
    key: Path | None = None,
    token: str | None = None,
    namespace: str | None = None,
) -> Path:
    """Write a kubeconfig (JSON, which is valid YAML) with one cluster/user/context."""
    user_entry: dict[str, str] = {}
    if cert and key:
        user_entry = {"client-certificate-data": _b64(cert), "client-key-data": _b64(key)}
    if token:
        user_entry["token"] = token
    context: dict[str, str] = {"cluster": "trainwright-dev", "user": user}
    if namespace:
        context["namespace"] = namespace
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "trainwright-dev", "cluster": {"server": server, "certificate-authority-data": _b64(ca)}}],
        "users": [{"name": user, "user": user_entry}],
        "contexts": [{"name": "trainwright-dev", "context": context}],
        "current-context": "trainwright-dev",
    }
    path.write_text(json.dumps(cfg, indent=2))
    path.chmod(0o600)
    return path


# --------------------------------------------------------------------------- kwok stages


def _load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    import yaml  # pyyaml: a dependency of the project and of the kubernetes client

    return [d for d in yaml.safe_load_all(path.read_text()) if d]


_FAIL_TEMPLATE = """\
{{ $now := Now }}
{{ $root := . }}
{{ $code := "1" }}
{{ with .metadata.annotations }}{{ with index . "%(exit)s" }}{{ $code = . }}{{ end }}{{ end }}
containerStatuses:
{{ range $index, $item := .spec.containers }}
- image: {{ $item.image | Quote }}
  name: {{ $item.name | Quote }}
  ready: false
  restartCount: 0
  started: false
  state:
    terminated:
      exitCode: {{ $code }}
      finishedAt: {{ $now | Quote }}
      reason: Error
      startedAt: {{ $now | Quote }}
{{ end }}
phase: Failed
""" % {"exit": ANN_EXIT_CODE}


def kwok_stages(stage_dir: Path, *, start_delay: float, run_seconds: float) -> list[dict[str, Any]]:
    """The node and pod Stages described in the module docstring."""
    ms = lambda s: max(0, int(s * 1000))  # noqa: E731
    stages: list[dict[str, Any]] = []
    for f in ("node-initialize.yaml", "node-heartbeat-with-lease.yaml"):
        stages += _load_yaml_docs(stage_dir / "node" / f)

    pod = {d["metadata"]["name"]: d for f in sorted((stage_dir / "pod").glob("*.yaml")) for d in _load_yaml_docs(f)}
    missing = {"pod-create", "pod-ready", "pod-complete", "pod-delete"} - set(pod)
    if missing:
        raise ControlPlaneError(f"kwok pod stages {sorted(missing)} missing from {stage_dir}/pod")
    not_failing = {"key": f'.metadata.annotations["{ANN_FAIL}"]', "operator": "NotIn", "values": ["true"]}
    run_delay = {
        "durationMilliseconds": ms(run_seconds),
        "durationFrom": {"expressionFrom": f'.metadata.annotations["{ANN_DURATION}"]'},
    }
    for name, d in pod.items():
        delay = d["spec"].get("delay")
        if delay is not None:
            delay.pop("jitterDurationMilliseconds", None)
            delay.pop("jitterDurationFrom", None)
            delay["durationMilliseconds"] = 0 if name == "pod-delete" else ms(start_delay / 2)
        stages.append(d)

    complete = pod["pod-complete"]
    exprs = complete["spec"]["selector"]["matchExpressions"]
    exprs += [not_failing, {"key": f'.metadata.annotations["{ANN_COMPLETE}"]', "operator": "NotIn", "values": ["false"]}]
    complete["spec"]["delay"] = copy.deepcopy(run_delay)

    # Any pod (not only a Job's) with kwok-complete=true succeeds too.
    annotated = copy.deepcopy(complete)
    annotated["metadata"]["name"] = "trainwright-pod-complete-annotated"
    annotated["spec"]["selector"]["matchExpressions"] = [
        e for e in exprs if e["key"] != ".metadata.ownerReferences.[].kind" and ANN_COMPLETE not in e["key"]
    ] + [{"key": f'.metadata.annotations["{ANN_COMPLETE}"]', "operator": "In", "values": ["true"]}]
    stages.append(annotated)

    fail = copy.deepcopy(complete)
    fail["metadata"]["name"] = "trainwright-pod-fail"
    fail["spec"]["selector"]["matchExpressions"] = [
        {"key": ".metadata.deletionTimestamp", "operator": "DoesNotExist"},
        {"key": ".status.phase", "operator": "In", "values": ["Running"]},
        {"key": f'.metadata.annotations["{ANN_FAIL}"]', "operator": "In", "values": ["true"]},
    ]
    fail["spec"].pop("weightFrom", None)
    fail["spec"]["next"] = {
        "delete": False,
        "event": {"type": "Warning", "reason": "KwokFailed", "message": f"failed by annotation {ANN_FAIL}"},
        "statusTemplate": _FAIL_TEMPLATE,
    }
    stages.append(fail)
    return stages


def fake_nodes() -> list[dict[str, Any]]:
    def node(name: str, labels: dict[str, str], capacity: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {
                "name": name,
                "annotations": {KWOK_NODE_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
                "labels": {
                    "type": "kwok",
                    "kubernetes.io/hostname": name,
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "amd64",
                    **labels,
                },
            },
            "spec": {},
            "status": {"capacity": capacity, "allocatable": dict(capacity)},
        }

    gpu_labels = {
        "trainwright.dev/pool": "gpu",
        "nvidia.com/gpu.product": GPU_PRODUCT,
        "nvidia.com/gpu.count": "8",
        "node.kubernetes.io/instance-type": "p5.48xlarge",
    }
    gpu_cap = {"cpu": "96", "memory": "1Ti", "pods": "110", "ephemeral-storage": "10Ti", GPU_RESOURCE: "8"}
    cpu_cap = {"cpu": "32", "memory": "128Gi", "pods": "110", "ephemeral-storage": "1Ti"}
    return [
        node("gpu-node-0", gpu_labels, gpu_cap),
        node("gpu-node-1", gpu_labels, gpu_cap),
        node("cpu-node-0", {"trainwright.dev/pool": "cpu", "node.kubernetes.io/instance-type": "m5.8xlarge"}, cpu_cap),
    ]


# --------------------------------------------------------------------------- control plane


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager + kube-scheduler + kwok, as local processes."""

    def __init__(
        self,
        bin_dir: Path | str | None = None,
        work_dir: Path | str | None = None,
        *,
        start_delay: float = 0.5,
        run_seconds: float = 2.0,
        keep_work_dir: bool | None = None,
        nodes: list[dict[str, Any]] | None = None,
        ready_timeout: float = 60.0,
        netns: NodeNetwork | None = None,
    ):
        self._bin_dir = find_binaries(Path(bin_dir) if bin_dir else None)
        self._own_work_dir = work_dir is None
        self.work_dir = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="trainwright-cp-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        if keep_work_dir is None:
            keep_work_dir = bool(os.environ.get("TRAINWRIGHT_KEEP_CLUSTER_DIR"))
        self.keep_work_dir = keep_work_dir
        self.start_delay = start_delay
        self.run_seconds = run_seconds
        self.nodes = nodes if nodes is not None else fake_nodes()
        self.ready_timeout = ready_timeout
        self.netns = netns
        self.log_dir = self.work_dir / "logs"
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._log_files: dict[str, Any] = {}
        self.server = ""
        self.kubeconfig = self.work_dir / "admin.kubeconfig"
        self.started_at: float | None = None
        self.startup_seconds: float | None = None

    # -- public properties -------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        return self._bin_dir

    @property
    def env(self) -> dict[str, str]:
        """os.environ plus KUBECONFIG, PATH with the bin dir first, Helm and kubectl cache dirs in the work dir."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["PATH"] = f"{self._bin_dir}{os.pathsep}{env.get('PATH', '')}"
        for var, sub in (("HELM_CACHE_HOME", "cache"), ("HELM_CONFIG_HOME", "config"), ("HELM_DATA_HOME", "data")):
            env[var] = str(self.work_dir / "helm" / sub)
        env["KUBECACHEDIR"] = str(self.work_dir / "kube-cache")
        return env

    @property
    def ca_file(self) -> Path:
        return self.work_dir / "pki" / "ca.crt"

    # -- lifecycle ---------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> ControlPlane:
        t0 = time.monotonic()
        self.started_at = time.time()
        try:
            self._start()
        except BaseException as exc:
            logs = self.dump_logs()
            self.stop()
            if isinstance(exc, Exception):
                raise ControlPlaneError(f"control plane failed to start: {exc}\n{logs}") from exc
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def _start(self) -> None:
        w = self.work_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        pki = self.pki = _PKI(w / "pki")
        pki.make_ca()
        api_port = free_port()
        self.api_port = api_port
        self.server = f"https://127.0.0.1:{api_port}"
        node_sans = [f"IP:{self.netns.node_ip}"] if self.netns else []
        serving_crt, serving_key = pki.issue(
            "apiserver", "/CN=kube-apiserver",
            server_sans=[
                "IP:127.0.0.1", "IP:10.96.0.1", *node_sans, "DNS:localhost", "DNS:kubernetes",
                "DNS:kubernetes.default", "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.cluster.local",
            ],
            client=False,
        )
        admin_crt, admin_key = pki.issue("admin", "/O=system:masters/CN=trainwright-admin")
        kcm_crt, kcm_key = pki.issue("kcm", "/CN=system:kube-controller-manager")
        sched_crt, sched_key = pki.issue("scheduler", "/CN=system:kube-scheduler")
        kwok_crt, kwok_key = pki.issue("kwok", "/O=system:masters/CN=kwok")
        proxy_crt, proxy_key = pki.issue("front-proxy-client", "/CN=front-proxy-client")
        sa_key, sa_pub = pki.service_account_keys()
        ca = pki.ca_crt
        write_kubeconfig(self.kubeconfig, self.server, ca, user="admin", cert=admin_crt, key=admin_key)
        kcm_kc = write_kubeconfig(w / "kcm.kubeconfig", self.server, ca, user="kcm", cert=kcm_crt, key=kcm_key)
        sched_kc = write_kubeconfig(w / "scheduler.kubeconfig", self.server, ca, user="scheduler", cert=sched_crt, key=sched_key)
        kwok_kc = write_kubeconfig(w / "kwok.kubeconfig", self.server, ca, user="kwok", cert=kwok_crt, key=kwok_key)

        etcd_port, etcd_peer = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        self.spawn("etcd", [
            "--name=default", f"--data-dir={w / 'etcd'}",
            f"--listen-client-urls={etcd_url}", f"--advertise-client-urls={etcd_url}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=default=http://127.0.0.1:{etcd_peer}",
            "--unsafe-no-fsync", "--log-level=warn",
        ])
        # With a real node the control plane runs in the node's network namespace, where pods
        # reach the API server at the node's address (the `kubernetes` Service's endpoint) and
        # the API server reaches the kubelet; the host reaches it through a forwarder.
        advertise = self.netns.node_ip if self.netns else "127.0.0.1"
        kubelet_flags: list[str] = []
        if self.netns:
            kubelet_crt, kubelet_key = pki.issue("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client")
            kubelet_flags = [f"--kubelet-client-certificate={kubelet_crt}", f"--kubelet-client-key={kubelet_key}",
                             "--kubelet-preferred-address-types=InternalIP"]
        self.spawn("kube-apiserver", [
            f"--etcd-servers={etcd_url}",
            f"--bind-address={'0.0.0.0' if self.netns else '127.0.0.1'}", f"--advertise-address={advertise}",
            f"--secure-port={api_port}", *kubelet_flags,
            f"--tls-cert-file={serving_crt}", f"--tls-private-key-file={serving_key}",
            f"--client-ca-file={ca}",
            f"--requestheader-client-ca-file={ca}", "--requestheader-allowed-names=front-proxy-client",
            "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={proxy_crt}", f"--proxy-client-key-file={proxy_key}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction,ServiceAccount",
            f"--service-account-issuer={SERVICE_ACCOUNT_ISSUER}",
            f"--service-account-key-file={sa_pub}", f"--service-account-signing-key-file={sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--cert-dir={w / 'apiserver-certs'}",
            "--allow-privileged=true",
            "--profiling=false",
            "--v=1",
        ])
        stage_dir = self._bin_dir / "kwok-stages"
        kwok_cfg = w / "kwok.yaml"
        docs = [{
            "apiVersion": "config.kwok.x-k8s.io/v1alpha1",
            "kind": "KwokConfiguration",
            # Spelled out: kwok applies no defaults to a configuration read from a file.
            "options": {
                "nodeLeaseDurationSeconds": 40,
                "nodeLeaseParallelism": 4,
                "podPlayStageParallelism": 4,
                "nodePlayStageParallelism": 4,
                "podsOnNodeSyncParallelism": 1,
                "enablePodsOnNodeSyncListPager": True,
                "enablePodsOnNodeSyncStreamWatch": False,
                "enableDebuggingHandlers": False,
                "enableProfilingHandler": False,
                "enableContentionProfiling": False,
            },
        }] + kwok_stages(stage_dir, start_delay=self.start_delay, run_seconds=self.run_seconds)
        kwok_cfg.write_text("\n---\n".join(json.dumps(d) for d in docs) + "\n")

        self.spawn("kube-controller-manager", [
            # No --authentication/authorization-kubeconfig: with them the process exits when it
            # starts before the API server's RBAC bootstrap is done; its port only serves healthz.
            f"--kubeconfig={kcm_kc}",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            f"--root-ca-file={ca}", f"--service-account-private-key-file={sa_key}",
            f"--cluster-signing-cert-file={ca}", f"--cluster-signing-key-file={pki.ca_key}",
            "--use-service-account-credentials=true",
            "--controllers=*,bootstrapsigner,tokencleaner",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--leader-elect=false",
            "--concurrent-gc-syncs=5",
            "--node-monitor-period=1s",
            "--kube-api-qps=500", "--kube-api-burst=1000",
            "--v=1",
        ])
        self.spawn("kube-scheduler", [
            f"--kubeconfig={sched_kc}",
            "--bind-address=127.0.0.1", f"--secure-port={free_port()}",
            "--leader-elect=false", "--kube-api-qps=500", "--kube-api-burst=1000", "--v=1",
        ])
        if self.netns:
            self.forward_port("apiserver", api_port)
        if self.nodes:
            self._spawn_kwok(kwok_kc, kwok_cfg)
        # The other components were started with the API server (they retry until it
        # answers), which overlaps their start-up with its own.
        wait_for(self._readyz, timeout=self.ready_timeout, interval=0.1,
                 message=lambda: f"kube-apiserver /readyz at {self.server}")
        self._check_alive()
        self._register_fake_nodes()

        def default_sa() -> bool:
            self._check_alive()
            self.api("GET", "/api/v1/namespaces/default/serviceaccounts/default")
            return True

        wait_for(default_sa, timeout=self.ready_timeout, message="the default ServiceAccount (controller-manager)")

    def forward_port(self, name: str, port: int) -> None:
        """127.0.0.1:port on the host -> a Unix socket -> 127.0.0.1:port in the node's namespace
        (which nothing on the host can reach otherwise)."""
        sock = self.work_dir / f"{name}.sock"
        self.spawn(f"forward-{name}-in-netns", [f"UNIX-LISTEN:{sock},fork,unlink-early", f"TCP:127.0.0.1:{port}"], binary="socat")
        wait_for(sock.exists, timeout=10, message=f"the forwarder's socket {sock}")
        self.spawn(f"forward-{name}-on-host", [f"TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork", f"UNIX-CONNECT:{sock}"],
                   binary="socat", in_netns=False)

    def _spawn_kwok(self, kwok_kc: Path, kwok_cfg: Path) -> None:
        self.spawn("kwok", [
            f"--kubeconfig={kwok_kc}", f"--config={kwok_cfg}",
            "--manage-all-nodes=false",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            "--cidr=10.244.0.1/16", "--node-ip=10.1.0.1",
            "--node-lease-duration-seconds=40",
            "--v=INFO",
        ])

    def _register_fake_nodes(self) -> None:
        for node in self.nodes:
            self.api("POST", "/api/v1/nodes", node, ok=(201, 409))

        def nodes_ready() -> bool:
            self._check_alive()
            items = self.api("GET", "/api/v1/nodes")["items"]
            ready = {
                n["metadata"]["name"]
                for n in items
                if any(c["type"] == "Ready" and c["status"] == "True" for c in n.get("status", {}).get("conditions", []))
                and not n.get("spec", {}).get("taints")
            }
            return ready >= {n["metadata"]["name"] for n in self.nodes}

        wait_for(nodes_ready, timeout=self.ready_timeout, message="kwok nodes Ready and untainted")

    def spawn(self, name: str, args: list[str], binary: str | Path | None = None, env: Mapping[str, str] | None = None,
              in_netns: bool = True) -> subprocess.Popen[bytes]:
        """Start ``binary`` (a path, a name in the bin dir or on PATH; default: ``name``) with its
        output in ``logs/<name>.log``; inside the node's network namespace if there is one."""
        exe = Path(binary) if isinstance(binary, Path) else self._bin_dir / (binary or name)
        if not exe.exists() and shutil.which(binary or name):
            exe = Path(shutil.which(binary or name))
        argv = [str(exe), *args]
        if self.netns and in_netns:
            argv = [*self.netns.command, *argv]
        log = open(self.log_dir / f"{name}.log", "ab")  # noqa: SIM115 - closed in stop()
        log.write(f"$ {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=self.work_dir, env=dict(env) if env is not None else None, start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self._procs[name] = proc
        self._log_files[name] = log
        return proc

    @contextlib.contextmanager
    def paused(self, component: str):
        """Freeze a component (SIGSTOP) for the block, as if it went away, then resume it (SIGCONT)."""
        process = self._procs[component]
        os.kill(process.pid, signal.SIGSTOP)
        try:
            yield
        finally:
            os.kill(process.pid, signal.SIGCONT)

    def _check_alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise ComponentExited(f"{name} exited with code {proc.returncode}; see {self.log_dir / (name + '.log')}")

    def stop(self, grace: float = 3.0) -> None:
        """Terminate every process by PID (reverse start order); kill what is left after ``grace`` s.

        The state is thrown away, so there is no point waiting for kube-apiserver's
        graceful shutdown (which can take well over 10 s).
        """
        procs = list(self._procs.items())[::-1]
        for _, p in procs:
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    p.terminate()
        deadline = time.monotonic() + grace
        for name, p in procs:
            try:
                p.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    p.kill()
                p.wait(timeout=5)
                if name in self._log_files:
                    self._log_files[name].write(f"--- killed: still running {grace:.0f}s after SIGTERM\n".encode())
        self._procs.clear()
        for f in self._log_files.values():
            f.close()
        self._log_files.clear()
        if self._own_work_dir and not self.keep_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def dump_logs(self, tail: int = 60) -> str:
        """The last ``tail`` lines of every component's log, as one string."""
        out = []
        if not self.log_dir.exists():
            return ""
        for f in sorted(self.log_dir.glob("*.log")):
            lines = f.read_text(errors="replace").splitlines()
            out.append(f"===== {f.name} (last {min(tail, len(lines))} of {len(lines)} lines) =====")
            out += lines[-tail:]
        return "\n".join(out)

    # -- API access ----------------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        pki = self.work_dir / "pki"
        ctx.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        return ctx

    def api(self, method: str, path: str, body: Any = None, ok: Iterable[int] = (200, 201), timeout: float = 10) -> Any:
        """Call the API server as cluster admin; returns the decoded JSON response."""
        if not hasattr(self, "_ctx"):
            self._ctx = self._ssl_context()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.server + path, data=data, method=method)
        req.add_header("Accept", "application/json")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, context=self._ctx, timeout=timeout) as resp:
                status, payload = resp.status, resp.read()
        except urllib.error.HTTPError as err:
            status, payload = err.code, err.read()
        if status not in tuple(ok):
            raise ControlPlaneError(f"{method} {path} -> {status}: {payload[:500].decode(errors='replace')}")
        try:
            return json.loads(payload) if payload else None
        except json.JSONDecodeError:
            return payload.decode(errors="replace")

    def _readyz(self) -> bool:
        self._check_alive()
        try:
            return self.api("GET", "/readyz", timeout=2) == "ok"
        except (OSError, ControlPlaneError, ssl.SSLError):
            return False

    # -- tools ---------------------------------------------------------------------------

    def _tool(self, tool: str, args: tuple[str, ...], check: bool, input: str | None, timeout: float, kubeconfig: Path | str | None) -> subprocess.CompletedProcess[str]:
        env = self.env
        if kubeconfig:
            env["KUBECONFIG"] = str(kubeconfig)
        proc = subprocess.run(
            [str(self._bin_dir / tool), *args], capture_output=True, text=True, env=env,
            input=input, timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"{tool} {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return proc

    def kubectl(self, *args: str, check: bool = True, input: str | None = None, timeout: float = 60,
                kubeconfig: Path | str | None = None) -> str:
        """Run kubectl against the cluster (admin unless ``kubeconfig``); returns stdout."""
        return self._tool("kubectl", args, check, input, timeout, kubeconfig).stdout

    def kubectl_run(self, *args: str, input: str | None = None, timeout: float = 60,
                    kubeconfig: Path | str | None = None) -> subprocess.CompletedProcess[str]:
        """kubectl without raising: the CompletedProcess (returncode, stdout, stderr)."""
        return self._tool("kubectl", args, False, input, timeout, kubeconfig)

    def helm(self, *args: str, check: bool = True, timeout: float = 120) -> str:
        """Run helm against the cluster; returns stdout."""
        return self._tool("helm", args, check, None, timeout, None).stdout

    def restricted_namespace(self, name: str) -> None:
        """A namespace enforcing the restricted Pod Security Standard, once its default
        ServiceAccount exists (pods created before it are refused)."""
        self.kubectl("apply", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": RESTRICTED}}))
        wait_for(lambda: self.kubectl_run("get", "serviceaccount", "default", "-n", name).returncode == 0,
                 timeout=30, message=f"the default ServiceAccount in {name}")

    def service_account_kubeconfig(self, name: str, namespace: str = "default", *, create: bool = True,
                                   expiration_seconds: int = 3600) -> Path:
        """A kubeconfig authenticating as ServiceAccount ``namespace/name`` (a TokenRequest token)."""
        if create:
            self.api("POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, ok=(201, 409))
            self.api("POST", f"/api/v1/namespaces/{namespace}/serviceaccounts",
                     {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}}, ok=(201, 409))
        tr = self.api(
            "POST", f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
             "spec": {"expirationSeconds": expiration_seconds}},
        )
        path = self.work_dir / f"sa-{namespace}-{name}.kubeconfig"
        return write_kubeconfig(path, self.server, self.ca_file, user=f"{namespace}-{name}",
                                token=tr["status"]["token"], namespace=namespace)

    def install_kuberay_crds(self, timeout: float = 60) -> list[str]:
        """Apply KubeRay's CRDs (from the bin dir) and wait until they are Established."""
        crd_dir = self._bin_dir / "kuberay-crds"
        files = sorted(crd_dir.glob("*.yaml"))
        if not files:
            raise BinariesMissing(f"no KubeRay CRDs in {crd_dir}. {BUILD_HINT}")
        out = self.kubectl("apply", "--server-side", "--force-conflicts", "-o", "name", "-f", str(crd_dir))
        names = [line.split("/", 1)[1] for line in out.split() if line.startswith("customresourcedefinition")]
        # Polled here, not with `kubectl wait`: a CRD re-created just after its deletion (another
        # test removed KubeRay) can show `status.conditions: null`, which kubectl wait takes as an
        # error instead of "not yet".
        def established(name: str) -> bool:
            crd = self.api("GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}", ok=(200, 404))
            return any(c.get("type") == "Established" and c.get("status") == "True"
                       for c in ((crd or {}).get("status") or {}).get("conditions") or [])

        wait_for(lambda: all(established(n) for n in names), timeout=timeout,
                 message=lambda: f"KubeRay's CRDs Established: {[n for n in names if not established(n)]}")
        return names


# --------------------------------------------------------------------------- the operator


class OperatorProcess:
    """`trainwright operator` as a local process against a control plane (tests, benchmarks, dev).

    ``args`` are the operator's flags (e.g. a Deployment's args); free metrics and health ports
    are appended, and argparse keeps the last of a repeated flag.
    """

    def __init__(self, cp: ControlPlane, log_path: Path, *, args: Iterable[str] = (),
                 env: Mapping[str, str] | None = None, kubeconfig: Path | str | None = None,
                 command: Iterable[str] = (sys.executable, "-m", "trainwright.cli", "operator")):
        self.cp, self.log_path = cp, Path(log_path)
        self.metrics_port, self.health_port = free_port(), free_port()
        self.kubeconfig = Path(kubeconfig) if kubeconfig else cp.kubeconfig
        self.argv = [*command, *args, "--metrics-port", str(self.metrics_port), "--health-port", str(self.health_port)]
        self.env = {**cp.env, **(env or {}), "KUBECONFIG": str(self.kubeconfig), "PYTHONUNBUFFERED": "1"}
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> OperatorProcess:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)
        wait_for(self.healthy, timeout=timeout, message=lambda: f"operator /healthz\n{self.logs()}")
        return self

    def healthy(self) -> bool:
        if self.process.poll() is not None:
            raise ControlPlaneError(f"operator exited {self.process.returncode}:\n{self.logs()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as response:
            return response.read().decode()

    def logs(self, tail: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-tail:] if self.log_path.exists() else ""

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as when a node dies."""
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
