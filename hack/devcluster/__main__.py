"""`python -m devcluster`: the local cluster for a person (with kubectl from the host), and the images.

    python -m devcluster up               # control plane + fake kwok nodes (make dev-cluster)
    python -m devcluster up --real-node   # control plane + one real node, images loaded (make real-cluster)
    python -m devcluster images [NAME...] # build the real node's images (make images)
    python -m devcluster bin-dir          # where the control-plane binaries are cached
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from devcluster import images
from devcluster.controlplane import BinariesMissing, ControlPlane, ControlPlaneError, default_bin_dir


def _up(args: argparse.Namespace) -> int:
    try:
        if args.real_node:
            from devcluster.node import RealNodeCluster

            cluster: ControlPlane = RealNodeCluster(work_dir=args.work_dir, keep_work_dir=bool(args.work_dir))
        else:
            cluster = ControlPlane(work_dir=args.work_dir, run_seconds=args.run_seconds, keep_work_dir=bool(args.work_dir))
    except BinariesMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = False

    def _on_signal(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    with cluster:
        if args.kuberay_crds:
            cluster.install_kuberay_crds()
        print(f"cluster up in {cluster.startup_seconds:.1f}s: {cluster.server}")
        if args.real_node:
            node = cluster.image_set
            print(f"images: operator {node['operator'].ref}, trainer {node['trainer'].ref}")
            print(f"storage: default StorageClass `local`, volumes under {cluster.volume_dir}")
        print(f"logs: {cluster.log_dir}")
        print(f"export KUBECONFIG={cluster.kubeconfig}")
        print(f"export PATH={cluster.bin_dir}:$PATH")
        print("Ctrl-C to stop.", flush=True)
        try:
            while not stop:
                time.sleep(0.5)
                cluster._check_alive()
        except ControlPlaneError as exc:
            print(f"error: {exc}\n{cluster.dump_logs()}", file=sys.stderr)
            return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devcluster", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="start a cluster and keep it up until Ctrl-C")
    up.add_argument("--work-dir", help="directory for certs, data and logs (default: a new temp dir)")
    up.add_argument("--real-node", action="store_true", help="one real node (containerd, kubelet) instead of fake nodes")
    up.add_argument("--run-seconds", type=float, default=2.0, help="how long a Job's pod runs on a fake node")
    up.add_argument("--kuberay-crds", action="store_true", help="also install KubeRay's CRDs")
    build = sub.add_parser("images", help="build the real node's images (what is missing)")
    build.add_argument("names", nargs="*", help=f"some of {', '.join(images.NAMES)} (default: all)")
    sub.add_parser("bin-dir", help="print the control-plane binaries directory")
    args = parser.parse_args(argv)
    if args.cmd == "bin-dir":
        print(default_bin_dir())
        return 0
    if args.cmd == "images":
        return images.main(args.names)
    return _up(args)


if __name__ == "__main__":
    sys.exit(main())
