"""One real Kubernetes node on this machine: containerd, runc, kubelet, kube-proxy, CNI and
CoreDNS, running real pods from images built from this tree.

Everything of the node, and the control plane with it, runs in a network namespace that the
cluster creates (``trainwright-node``): a veth pair with both ends inside gives the node its
address (``NODE_IP``), pods get addresses on a CNI bridge, and nothing routes out. The host
reaches the API server through a forwarder on 127.0.0.1, so kubectl, helm and the tests work
from the host as against any cluster. Storage: a default StorageClass ``local`` of local
PersistentVolumes in the work directory (a pool for people, and ``make_claim`` for tests).

    with RealNodeCluster() as cluster:
        cluster.kubectl("get", "nodes")          # one Ready node, trainwright-node

Binaries come from hack/build-node.sh and hack/build-control-plane.sh; Debian's runc, CNI
plugins, iptables, socat, mmdebstrap and buildah from hack/install-node-packages.sh; images
from ``devcluster.images``. One node per machine at a time: kubelet owns machine-wide state
(sysctls, cgroups, /var/log/containers), which ``stop`` restores and removes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devcluster.controlplane import ControlPlane, ControlPlaneError, wait_for, write_kubeconfig
from devcluster.images import ImageSet, import_into_containerd, prune_containerd

NETNS = "trainwright-node"
NODE_NAME = "trainwright-node"
NODE_IP = "10.77.0.2"
PEER_IP = "10.77.0.3"
POD_CIDR = "10.244.0.0/24"
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/16"
CNI_BIN_DIR = Path("/usr/lib/cni")
STORAGE_CLASS = "local"
POOL_VOLUMES = 8
VOLUME_SIZE = "20Gi"
# kubelet changes these machine-wide; stop() puts them back.
KUBELET_SYSCTLS = ("vm/overcommit_memory", "kernel/panic", "kernel/panic_on_oops")
# Held from start to stop: a second node (another checkout's tests) waits instead of clashing.
NODE_LOCK = Path("/run/lock/trainwright-node.lock")
HOST_TOOLS = ("runc", "iptables", "socat", "nsenter", "ip", "mmdebstrap", "buildah")


def cache_root() -> Path:
    return Path(os.environ.get("TRAINWRIGHT_CACHE", "~/.cache/trainwright")).expanduser()


def node_bin_dir() -> Path:
    """Where hack/build-node.sh puts the node's binaries (it prints the same path)."""
    if os.environ.get("TRAINWRIGHT_NODE_BIN_DIR"):
        return Path(os.environ["TRAINWRIGHT_NODE_BIN_DIR"]).expanduser()
    script = Path(__file__).resolve().parents[1] / "build-node.sh"
    return Path(subprocess.run(["bash", str(script), "--print-bin-dir"], capture_output=True, text=True, check=True).stdout.strip())


def missing_node_parts() -> list[str]:
    """What the real node lacks here: binaries, Debian tools, root."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces, mounts, cgroups)")
    bin_dir = node_bin_dir()
    for binary in ("kubelet", "kube-proxy", "containerd", "containerd-shim-runc-v2", "ctr", "coredns", "pause"):
        if not os.access(bin_dir / binary, os.X_OK):
            missing.append(f"{bin_dir / binary} (hack/build-node.sh)")
    for tool in HOST_TOOLS:
        if not shutil.which(tool):
            missing.append(f"{tool} (hack/install-node-packages.sh)")
    if not (CNI_BIN_DIR / "bridge").exists():
        missing.append(f"{CNI_BIN_DIR}/bridge (hack/install-node-packages.sh)")
    return missing


@dataclass(frozen=True)
class NodeNetwork:
    """The node's network namespace and its address."""

    name: str = NETNS
    node_ip: str = NODE_IP

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    @property
    def command(self) -> tuple[str, ...]:
        """The prefix that runs a command inside (nsenter: `ip netns exec` would remount /sys,
        and kubelet then finds no cgroup mounts)."""
        return ("nsenter", f"--net={self.path}", "--")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([*self.command, *args], capture_output=True, text=True)
        if check and proc.returncode != 0:
            raise ControlPlaneError(f"in {self.name}: {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc

    def create(self) -> None:
        if Path(self.path).exists():
            raise ControlPlaneError(f"network namespace {self.name} exists: another node is up on this machine "
                                    f"(stop it, or `ip netns delete {self.name}` if it was left behind)")
        _sh("ip", "netns", "add", self.name)
        for cmd in (
            ("ip", "link", "set", "lo", "up"),
            # Both ends inside: the node's address, and no way out (no default route).
            ("ip", "link", "add", "node0", "type", "veth", "peer", "name", "node1"),
            ("ip", "addr", "add", f"{self.node_ip}/24", "dev", "node0"),
            ("ip", "addr", "add", f"{PEER_IP}/24", "dev", "node1"),
            ("ip", "link", "set", "node0", "up"),
            ("ip", "link", "set", "node1", "up"),
            # Service addresses must be routable for the node's own processes; kube-proxy's
            # rules then rewrite them to pod or node addresses, all inside this namespace.
            ("ip", "route", "add", SERVICE_CIDR, "dev", "node0", "src", self.node_ip),
            ("sysctl", "-qw", "net.ipv4.ip_forward=1"),
        ):
            self.run(*cmd)
        # Bridged pod-to-Service replies must pass iptables to be un-NATed (absent module: skipped).
        self.run("sysctl", "-qw", "net.bridge.bridge-nf-call-iptables=1", check=False)

    def delete(self) -> None:
        if Path(self.path).exists():
            subprocess.run(["ip", "netns", "delete", self.name], capture_output=True)


def _sh(*args: str) -> str:
    proc = subprocess.run(list(args), capture_output=True, text=True)
    if proc.returncode != 0:
        raise ControlPlaneError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr}")
    return proc.stdout


class RealNodeCluster(ControlPlane):
    """The control plane plus one real node (no fake nodes), in the node's network namespace."""

    def __init__(self, work_dir: Path | str | None = None, *, images: tuple[str, ...] = ("operator", "trainer", "ray-operator"),
                 keep_work_dir: bool | None = None, ready_timeout: float = 120.0):
        super().__init__(work_dir=work_dir, nodes=[], keep_work_dir=keep_work_dir, ready_timeout=ready_timeout,
                         netns=NodeNetwork())
        missing = missing_node_parts()
        if missing:
            from devcluster.controlplane import BinariesMissing

            raise BinariesMissing("the real node needs: " + "; ".join(missing))
        self.node_bin = node_bin_dir()
        self.image_set = ImageSet(self.node_bin, self.bin_dir)
        self.wanted_images = images
        self.containerd_root = cache_root() / "node" / "containerd"  # kept: imported images survive
        self.node_dir = self.work_dir / "node"
        self.volume_dir = self.work_dir / "volumes"
        self._sysctls: dict[str, str] = {}
        self.timings: dict[str, float] = {}
        self._lock_file: Any = None

    def install_chart(self, chart: Path | str, release: str, namespace: str) -> float:
        """``helm install`` of the chart into a restricted namespace, with the operator and trainer
        images built here (never pulled); seconds until its Deployment is Ready by its probes."""
        began = time.monotonic()
        self.restricted_namespace(namespace)
        operator, trainer = self.image_set["operator"], self.image_set["trainer"]
        self.helm("install", release, str(chart), "--namespace", namespace,
                  "--set", f"image.repository={operator.ref.rsplit(':', 1)[0]}", "--set", f"image.tag={operator.key}",
                  "--set", "image.pullPolicy=Never",
                  "--set", f"trainerImage.repository={trainer.ref.rsplit(':', 1)[0]}",
                  "--set", f"trainerImage.tag={trainer.key}", timeout=180)
        self.kubectl("rollout", "status", f"deployment/{release}", "-n", namespace, "--timeout=180s", timeout=200)
        return time.monotonic() - began

    # -- lifecycle ---------------------------------------------------------------------

    def _start(self) -> None:
        self._take_node_lock()
        t0 = time.monotonic()
        # Built first (minutes when cold, nothing when cached), before any process starts.
        self.image_set.build(("pause", *self.wanted_images), log=self._log)
        self.timings["images built"] = time.monotonic() - t0
        self._sysctls = {k: Path("/proc/sys", k).read_text().strip() for k in KUBELET_SYSCTLS}
        self.netns.create()
        t1 = time.monotonic()
        super()._start()
        self.timings["control plane"] = time.monotonic() - t1
        t2 = time.monotonic()
        self.node_dir.mkdir(parents=True, exist_ok=True)
        self._start_containerd()
        wanted = [self.image_set[n] for n in ("pause", *self.wanted_images)]
        import_seconds = import_into_containerd(self.ctr, wanted, log=self._log)
        prune_containerd(self.ctr, wanted)
        self.timings.update({f"import {k}": v for k, v in import_seconds.items()})
        self._start_kubelet()
        self._start_kube_proxy()
        self._start_coredns()
        self._wait_node_ready()
        self._make_storage()
        self.timings["node ready"] = time.monotonic() - t2

    def _log(self, message: str) -> None:
        print(message, flush=True)

    def _take_node_lock(self) -> None:
        """One node per machine: kubelet's sysctls, cgroups and log links, the netns and the
        containerd store (whose stale images start() prunes) are machine-wide."""
        NODE_LOCK.parent.mkdir(parents=True, exist_ok=True)
        lock_file = NODE_LOCK.open("w")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._log(f"another real node holds {NODE_LOCK}; waiting for it to stop")
            t0 = time.monotonic()
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            self.timings["waited for the node lock"] = time.monotonic() - t0
        self._lock_file = lock_file

    def stop(self, grace: float = 3.0) -> None:
        """Pods and node first (their processes live outside our Popen handles), then the rest."""
        if self._lock_file is None:  # never got the machine: the node there is another's
            super().stop(grace)
            return
        for name in ("kubelet", "kube-proxy", "coredns"):
            proc = self._procs.get(name)
            if proc and proc.poll() is None:
                proc.terminate()
        self._kill_containers()
        containerd = self._procs.get("containerd")
        if containerd and containerd.poll() is None:
            containerd.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                containerd.wait(timeout=10)
        self._unmount_under(self.work_dir)
        super().stop(grace)
        self._remove_cgroups()
        self._remove_container_log_links()
        for key, value in self._sysctls.items():
            with contextlib.suppress(OSError):
                Path("/proc/sys", key).write_text(value)
        self.netns.delete()
        if self._lock_file is not None:
            self._lock_file.close()  # closing releases the flock
            self._lock_file = None

    # -- containerd --------------------------------------------------------------------

    @property
    def containerd_socket(self) -> Path:
        return self.node_dir / "containerd.sock"

    @property
    def ctr(self) -> list[str]:
        return [str(self.node_bin / "ctr"), "--address", str(self.containerd_socket), "--namespace", "k8s.io"]

    def _start_containerd(self) -> None:
        cni_conf = self.node_dir / "cni"
        cni_conf.mkdir(parents=True, exist_ok=True)
        (cni_conf / "10-trainwright.conflist").write_text(json.dumps({
            "cniVersion": "1.0.0", "name": "trainwright",
            "plugins": [
                {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
                 "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]], "routes": [{"dst": "0.0.0.0/0"}],
                          "dataDir": str(self.node_dir / "cni-ipam")}},
                {"type": "portmap", "capabilities": {"portMappings": True}},
            ],
        }, indent=2))
        self.containerd_root.mkdir(parents=True, exist_ok=True)
        config = self.node_dir / "containerd.toml"
        config.write_text(f"""\
version = 3
root = "{self.containerd_root}"
state = "{self.node_dir / 'containerd-state'}"

[grpc]
  address = "{self.containerd_socket}"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "{self.image_set['pause'].ref}"

[plugins."io.containerd.cri.v1.runtime"]
  # Root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below its own.
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.cri.v1.runtime".cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "{cni_conf}"
  [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.cri.v1.runtime".containerd.runtimes.runc.options]
      BinaryName = "{shutil.which('runc')}"
      SystemdCgroup = false
""")
        env = {**os.environ, "PATH": f"{self.node_bin}{os.pathsep}{os.environ.get('PATH', '')}"}
        self.spawn("containerd", [f"--config={config}", "--log-level=warn"], binary=self.node_bin / "containerd", env=env)

        def answering() -> bool:
            self._check_alive()
            return subprocess.run([*self.ctr, "version"], capture_output=True).returncode == 0

        wait_for(answering, timeout=30, message="containerd answering on its socket")

    def _kill_containers(self) -> None:
        """Kill every container of this node's containerd (they outlive kubelet and containerd)."""
        if not self.containerd_socket.exists():
            return
        tasks = subprocess.run([*self.ctr, "tasks", "ls", "-q"], capture_output=True, text=True, timeout=30).stdout.split()
        for task in tasks:
            subprocess.run([*self.ctr, "tasks", "kill", "-s", "SIGKILL", task], capture_output=True, timeout=30)
        deadline = time.monotonic() + 10
        while tasks and time.monotonic() < deadline:
            tasks = [t for t in subprocess.run([*self.ctr, "tasks", "ls"], capture_output=True, text=True,
                                               timeout=30).stdout.splitlines()[1:] if "RUNNING" in t]
            time.sleep(0.2)
        for task in subprocess.run([*self.ctr, "tasks", "ls", "-q"], capture_output=True, text=True, timeout=30).stdout.split():
            subprocess.run([*self.ctr, "tasks", "delete", "--force", task], capture_output=True, timeout=30)
        for container in subprocess.run([*self.ctr, "containers", "ls", "-q"], capture_output=True, text=True, timeout=30).stdout.split():
            subprocess.run([*self.ctr, "containers", "delete", container], capture_output=True, timeout=30)
        # The pods' sandboxes too: their records would outlive this node in the kept store.
        listed = subprocess.run([*self.ctr, "sandboxes", "ls"], capture_output=True, text=True, timeout=30).stdout
        for sandbox in [line.split()[0] for line in listed.splitlines()[1:] if line.strip()]:
            subprocess.run([*self.ctr, "sandboxes", "rm", "--force", sandbox], capture_output=True, timeout=30)
        # Shims whose containers are gone exit by themselves; any left are ours to end.
        for pid in _pids_matching(str(self.node_dir / "containerd-state")) + _pids_matching(str(self.containerd_socket)):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    # -- kubelet -------------------------------------------------------------------------

    def _node_kubeconfig(self, name: str, subject: str) -> Path:
        crt, key = self.pki.issue(name, subject)
        server = f"https://{NODE_IP}:{self.api_port}"
        return write_kubeconfig(self.node_dir / f"{name}.kubeconfig", server, self.ca_file, user=name, cert=crt, key=key)

    def _start_kubelet(self) -> None:
        kubeconfig = self._node_kubeconfig("kubelet", f"/O=system:nodes/CN=system:node:{NODE_NAME}")
        resolv = self.node_dir / "resolv.conf"
        resolv.write_text("")  # no upstream resolver: pods see only the cluster's DNS
        config = self.node_dir / "kubelet.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(self.ca_file)}},
            "authorization": {"mode": "Webhook"},
            "failCgroupV1": False, "cgroupDriver": "cgroupfs", "failSwapOn": False,
            "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
            "clusterDNS": [NODE_IP], "clusterDomain": "cluster.local", "resolvConf": str(resolv),
            "podLogsDir": str(self.node_dir / "pod-logs"),
            # The images exist nowhere else: never collect them, never evict for disk.
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
            "serializeImagePulls": False,
            "syncFrequency": "5s", "fileCheckFrequency": "5s",
            "nodeStatusUpdateFrequency": "2s",
            "cpuManagerReconcilePeriod": "5s",
            "shutdownGracePeriod": "0s",
        }, indent=2))
        self.spawn("kubelet", [
            f"--config={config}", f"--kubeconfig={kubeconfig}", f"--root-dir={self.node_dir / 'kubelet'}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}", "--v=1",
        ], binary=self.node_bin / "kubelet")

    def _start_kube_proxy(self) -> None:
        kubeconfig = self._node_kubeconfig("kube-proxy", "/CN=system:kube-proxy")
        config = self.node_dir / "kube-proxy.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "mode": "iptables", "clusterCIDR": CLUSTER_CIDR, "hostnameOverride": NODE_NAME,
            "bindAddress": NODE_IP,
            # Leave the machine's conntrack table size and timeouts alone.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            "iptables": {"syncPeriod": "5s", "minSyncPeriod": "0s"},
            "metricsBindAddress": "127.0.0.1:10249", "healthzBindAddress": "127.0.0.1:10256",
        }, indent=2))
        self.spawn("kube-proxy", [f"--config={config}", "--v=1"], binary=self.node_bin / "kube-proxy")

    def _start_coredns(self) -> None:
        """CoreDNS as a process on the node's address (kubelet's clusterDNS); no upstream."""
        self.api("POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": "trainwright-dev:coredns"},
            "rules": [{"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                      {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]}],
        }, ok=(201, 409))
        self.api("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
            "metadata": {"name": "trainwright-dev:coredns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "trainwright-dev:coredns"},
            "subjects": [{"kind": "User", "name": "coredns", "apiGroup": "rbac.authorization.k8s.io"}],
        }, ok=(201, 409))
        kubeconfig = self._node_kubeconfig("coredns", "/CN=coredns")
        corefile = self.node_dir / "Corefile"
        corefile.write_text(f"""\
.:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:8081
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }}
    cache 5
    loadbalance
}}
""")
        self.spawn("coredns", ["-conf", str(corefile)], binary=self.node_bin / "coredns")

    def _wait_node_ready(self) -> None:
        def ready() -> bool:
            self._check_alive()
            node = self.api("GET", f"/api/v1/nodes/{NODE_NAME}", ok=(200, 404))
            conditions = (node or {}).get("status", {}).get("conditions", [])
            return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

        wait_for(ready, timeout=self.ready_timeout, message=lambda: f"node {NODE_NAME} Ready\n{self.dump_logs(20)}")

    # -- storage -------------------------------------------------------------------------

    def _make_storage(self) -> None:
        self.api("POST", "/apis/storage.k8s.io/v1/storageclasses", {
            "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
            "metadata": {"name": STORAGE_CLASS, "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "kubernetes.io/no-provisioner", "volumeBindingMode": "Immediate",
            "reclaimPolicy": "Retain",
        }, ok=(201, 409))
        for i in range(POOL_VOLUMES):
            self._make_volume(f"pool-{i}")

    def _make_volume(self, name: str, claim: tuple[str, str] | None = None, size: str = VOLUME_SIZE) -> Path:
        path = self.volume_dir / name
        path.mkdir(parents=True, exist_ok=True)
        spec: dict[str, Any] = {
            "capacity": {"storage": size}, "accessModes": ["ReadWriteOnce", "ReadOnlyMany", "ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain", "storageClassName": STORAGE_CLASS,
            "local": {"path": str(path)},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE_NAME]}]}]}},
        }
        if claim:
            spec["claimRef"] = {"namespace": claim[0], "name": claim[1]}
        self.api("POST", "/api/v1/persistentvolumes", {"apiVersion": "v1", "kind": "PersistentVolume",
                                                       "metadata": {"name": name}, "spec": spec}, ok=(201, 409))
        return path

    def make_claim(self, namespace: str, name: str, size: str = "1Gi") -> Path:
        """A PersistentVolumeClaim bound to a new local volume; returns the volume's directory
        on this machine, where a test puts data for the pods (or reads what they wrote)."""
        path = self._make_volume(f"{namespace}-{name}", claim=(namespace, name), size=size)
        self.api("POST", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", {
            "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": STORAGE_CLASS,
                     "volumeName": f"{namespace}-{name}", "resources": {"requests": {"storage": size}}},
        }, ok=(201, 409))
        return path

    # -- teardown helpers --------------------------------------------------------------

    def _unmount_under(self, root: Path) -> None:
        """Unmount what kubelet and containerd mounted (deepest first), then remove netns files."""
        prefixes = (str(root), str(self.containerd_root))
        mounts = []
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point.startswith(prefixes):
                    mounts.append(point)
        for point in sorted(mounts, key=len, reverse=True):
            subprocess.run(["umount", "-l", point], capture_output=True)

    def _remove_cgroups(self) -> None:
        for kubepods in Path("/sys/fs/cgroup").glob("*/kubepods"):
            for directory in sorted((p for p in kubepods.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    directory.rmdir()
            with contextlib.suppress(OSError):
                kubepods.rmdir()

    def _remove_container_log_links(self) -> None:
        logs = Path("/var/log/containers")
        for link in logs.glob("*.log") if logs.exists() else ():
            if link.is_symlink() and os.readlink(link).startswith(str(self.node_dir)):
                link.unlink()


def _pids_matching(text: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            if text.encode() in (proc / "cmdline").read_bytes():
                pids.append(int(proc.name))
    return [p for p in pids if p != os.getpid()]
