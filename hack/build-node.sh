#!/usr/bin/env bash
# Build the binaries of the real node from the Go module proxy and cache them outside the
# repository, beside the control plane's:
#
#   ${TRAINWRIGHT_CACHE:-$HOME/.cache/trainwright}/bin/<node-version-key>/
#
# kubelet and kube-proxy (k8s.io/kubernetes, the same wrapper module as the control plane),
# containerd with its runc shim and ctr, CoreDNS (its default plugins: no upstream is ever
# configured), and `pause`, the sandbox's process (hack/node/pause). Debian's runc, CNI
# plugins, iptables, socat, mmdebstrap and buildah come from hack/install-node-packages.sh.
#
# Idempotent: a group whose binaries are cached is skipped. Usage:
#
#   hack/build-node.sh                  # everything missing
#   hack/build-node.sh kube containerd  # some groups (kube containerd coredns pause)
#   hack/build-node.sh --print-bin-dir
set -euo pipefail

KUBE_VERSION=v1.35.4
CONTAINERD_VERSION=v2.4.2
COREDNS_VERSION=v1.15.0

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${TRAINWRIGHT_CACHE:-$HOME/.cache/trainwright}"
PAUSE_KEY="$(cat "$HERE/node/pause/main.go" "$HERE/node/pause/go.mod" | sha256sum | cut -c1-12)"
KEY="node-k8s-${KUBE_VERSION}_containerd-${CONTAINERD_VERSION}_coredns-${COREDNS_VERSION}_pause-${PAUSE_KEY}"
BIN="$CACHE/bin/$KEY"

if [[ "${1:-}" == "--print-bin-dir" ]]; then
  echo "$BIN"
  exit 0
fi

# shellcheck source=hack/build-lib.sh
source "$HERE/build-lib.sh"


build_kube() {
  local dir="$WORK/k8s" minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  local gomod
  gomod="$("$GO" mod download -json "k8s.io/kubernetes@$KUBE_VERSION" \
    | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  "$PYTHON" "$HERE/gen-k8s-wrapper.py" "$KUBE_VERSION" "$gomod" "$dir" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy
  (cd "$dir" && "$GO" mod tidy)
  local ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  (cd "$dir" && "$GO" build -ldflags="$ld" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-proxy)
}

build_containerd() {
  local ld="-s -w -X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION"
  GOBIN="$BIN" "$GO" install -ldflags="$ld" \
    "github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" \
    "github.com/containerd/containerd/v2/cmd/ctr@$CONTAINERD_VERSION"
}

build_coredns() {
  GOBIN="$BIN" "$GO" install -ldflags="-s -w" "github.com/coredns/coredns@$COREDNS_VERSION"
}

build_pause() {
  (cd "$HERE/node/pause" && "$GO" build -ldflags="-s -w" -o "$BIN/pause" .)
}

GROUPS_WANTED=("$@")
[[ ${#GROUPS_WANTED[@]} -gt 0 ]] || GROUPS_WANTED=(kube containerd coredns pause)

T0=$SECONDS
echo "go: $("$GO" version); cache: $BIN"
for g in "${GROUPS_WANTED[@]}"; do
  case "$g" in
    kube)
      if have kubelet kube-proxy; then SUMMARY+=("kube: cached")
      else timed "kubelet, kube-proxy $KUBE_VERSION" build_kube; fi ;;
    containerd)
      if have containerd containerd-shim-runc-v2 ctr; then SUMMARY+=("containerd: cached")
      else timed "containerd $CONTAINERD_VERSION" build_containerd; fi ;;
    coredns)
      if have coredns; then SUMMARY+=("coredns: cached"); else timed "coredns $COREDNS_VERSION" build_coredns; fi ;;
    pause)
      if have pause; then SUMMARY+=("pause: cached"); else timed "pause" build_pause; fi ;;
    *) echo "unknown group $g (want kube containerd coredns pause)" >&2; exit 2 ;;
  esac
done

echo
echo "summary (total $((SECONDS - T0))s), binaries in $BIN:"
for s in "${SUMMARY[@]}"; do echo "  $s"; done
ls -la "$BIN"
