#!/usr/bin/env bash
# Build the binaries of the cluster test tier from the Go module proxy and cache them
# outside the repository:
#
#   ${TRAINWRIGHT_CACHE:-$HOME/.cache/trainwright}/bin/<version-key>/
#
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (k8s.io/kubernetes),
# etcd, kwok, helm (v3), ray-operator (KubeRay) and KubeRay's + kwok's CRDs.
#
# Idempotent: a group whose binaries are already in the cache is skipped. Prints what
# it built and how long each group took. Usage:
#
#   hack/build-control-plane.sh            # build everything missing
#   hack/build-control-plane.sh k8s helm   # only some groups (k8s etcd kwok helm kuberay)
#   hack/build-control-plane.sh --print-bin-dir
#
# Needs Go >= 1.26 (etcd 3.6.16, kwok 0.8.0 and helm 3.22.0 declare go 1.26.0; GO env var or `go` on PATH or /usr/local/go/bin/go) and network
# access to the Go module proxy. GOMODCACHE/GOCACHE keep their defaults so rebuilds
# reuse downloaded modules and compiled packages.
set -euo pipefail

KUBE_VERSION=v1.35.4
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0
HELM_VERSION=v3.22.0
KUBERAY_VERSION=v1.5.0

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${TRAINWRIGHT_CACHE:-$HOME/.cache/trainwright}"
KEY="k8s-${KUBE_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}_kuberay-${KUBERAY_VERSION}"
BIN="$CACHE/bin/$KEY"

if [[ "${1:-}" == "--print-bin-dir" ]]; then
  echo "$BIN"
  exit 0
fi

# shellcheck source=hack/build-lib.sh
source "$HERE/build-lib.sh"

BUILD_DATE="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
moddir() { "$GO" mod download -json "$1" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }

build_k8s() {
  local dir="$WORK/k8s" minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  local json gomod
  json="$("$GO" mod download -json "k8s.io/kubernetes@$KUBE_VERSION")"
  gomod="$(echo "$json" | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')"
  "$PYTHON" "$HERE/gen-k8s-wrapper.py" "$KUBE_VERSION" "$gomod" "$dir"
  (cd "$dir" && "$GO" mod tidy)
  local pkg=k8s.io/component-base/version cpkg=k8s.io/client-go/pkg/version
  local ld="-s -w"
  local p
  for p in $pkg $cpkg; do
    ld+=" -X $p.gitVersion=$KUBE_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    ld+=" -X $p.gitTreeState=clean -X $p.buildDate=$BUILD_DATE"
  done
  # One invocation: the four commands share most of their packages.
  (cd "$dir" && "$GO" build -ldflags="$ld" -o "$BIN/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl)
}

build_etcd() {
  local dir="$WORK/etcd"
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<EOF
module trainwright.dev/hack/controlplane/etcd

go 1.25.0

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
EOF
  cat >"$dir/main.go" <<'EOF'
// Command etcd: the etcd server main, built from the published server module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
  # Pin the sibling modules of the release to the same tag.
  (cd "$dir" && "$GO" mod edit \
     -require="go.etcd.io/etcd/api/v3@$ETCD_VERSION" \
     -require="go.etcd.io/etcd/client/pkg/v3@$ETCD_VERSION" \
     -require="go.etcd.io/etcd/client/v3@$ETCD_VERSION" \
     -require="go.etcd.io/etcd/pkg/v3@$ETCD_VERSION" \
   && "$GO" mod tidy \
   && "$GO" build -ldflags="-s -w" -o "$BIN/etcd" .)
}

build_kwok() {
  local mod
  GOBIN="$BIN" "$GO" install -ldflags="-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  mod="$(moddir "sigs.k8s.io/kwok@$KWOK_VERSION")"
  mkdir -p "$BIN/kwok-crds"
  cp "$mod"/kustomize/crd/bases/*.yaml "$BIN/kwok-crds/"
  # Stages the fixture (hack/devcluster/controlplane.py) starts from.
  mkdir -p "$BIN/kwok-stages/node" "$BIN/kwok-stages/pod"
  cp "$mod"/kustomize/stage/node/fast/node-initialize.yaml \
     "$mod"/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml "$BIN/kwok-stages/node/"
  cp "$mod"/kustomize/stage/pod/general/pod-*.yaml "$BIN/kwok-stages/pod/"
  chmod -R u+w "$BIN/kwok-crds" "$BIN/kwok-stages"
}

build_helm() {
  local minor="${KUBE_VERSION#v1.}"; minor="${minor%%.*}"
  GOBIN="$BIN" "$GO" install -ldflags="-s -w \
    -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION \
    -X helm.sh/helm/v3/internal/version.gitTreeState=clean \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
    -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
    -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor" \
    "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

build_kuberay() {
  local mod
  GOBIN="$WORK/kuberay-bin" "$GO" install -ldflags="-s -w" \
    "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION"
  mv "$WORK/kuberay-bin/ray-operator" "$BIN/ray-operator"
  mod="$(moddir "github.com/ray-project/kuberay/ray-operator@$KUBERAY_VERSION")"
  mkdir -p "$BIN/kuberay-crds"
  cp "$mod"/config/crd/bases/*.yaml "$BIN/kuberay-crds/"
  chmod -R u+w "$BIN/kuberay-crds"
}

GROUPS_WANTED=("$@")
[[ ${#GROUPS_WANTED[@]} -gt 0 ]] || GROUPS_WANTED=(k8s etcd kwok helm kuberay)

T0=$SECONDS
echo "go: $("$GO" version); cache: $BIN"
for g in "${GROUPS_WANTED[@]}"; do
  case "$g" in
    k8s)
      if have kube-apiserver kube-controller-manager kube-scheduler kubectl; then SUMMARY+=("k8s: cached")
      else timed "k8s $KUBE_VERSION (kube-apiserver kube-controller-manager kube-scheduler kubectl)" build_k8s; fi ;;
    etcd)
      if have etcd; then SUMMARY+=("etcd: cached"); else timed "etcd $ETCD_VERSION" build_etcd; fi ;;
    kwok)
      if have kwok kwok-crds/kwok.x-k8s.io_stages.yaml kwok-stages/pod/pod-complete.yaml; then SUMMARY+=("kwok: cached")
      else timed "kwok $KWOK_VERSION" build_kwok; fi ;;
    helm)
      if have helm; then SUMMARY+=("helm: cached"); else timed "helm $HELM_VERSION" build_helm; fi ;;
    kuberay)
      if have ray-operator kuberay-crds/ray.io_rayclusters.yaml; then SUMMARY+=("kuberay: cached")
      else timed "kuberay ray-operator $KUBERAY_VERSION" build_kuberay; fi ;;
    *) echo "unknown group $g (want k8s etcd kwok helm kuberay)" >&2; exit 2 ;;
  esac
done

echo
echo "summary (total $((SECONDS - T0))s), binaries in $BIN:"
for s in "${SUMMARY[@]}"; do echo "  $s"; done
ls -la "$BIN"
