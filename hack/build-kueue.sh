#!/usr/bin/env bash
# Build Kueue's controller from the Go module proxy and cache it outside the repository, beside
# the control plane's binaries:
#
#   ${TRAINWRIGHT_CACHE:-$HOME/.cache/trainwright}/bin/kueue-<version>/
#     kueue        the controller manager (sigs.k8s.io/kueue/cmd/kueue)
#     kueue-crds/  its CRDs (the module's config/components/crd/bases/)
#     VERSION      the version built
#
# The version is the newest v0.17.x the proxy lists (`go list -m -versions`), or $KUEUE_VERSION.
# sigs.k8s.io/kueue's go.mod has no replace directives, so `go install pkg@version` builds it as
# published; no wrapper module is needed (hack/gen-k8s-wrapper.py is k8s.io/kubernetes's case).
# devcluster.kueue runs it as a host process against a control plane.
#
# Idempotent: skipped when the binary and CRDs are cached. Usage:
#
#   hack/build-kueue.sh
#   hack/build-kueue.sh --print-bin-dir
#
# Needs Go >= 1.25 and network access to the Go module proxy.
set -euo pipefail

KUEUE_SERIES=v0.17

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CACHE="${TRAINWRIGHT_CACHE:-$HOME/.cache/trainwright}"
GO_FOR_LIST="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"

newest_in_series() {
  # `go list -m -versions` prints "MODULE v1 v2 ..." in semver order; no module needed here.
  (cd / && "$GO_FOR_LIST" list -m -versions sigs.k8s.io/kueue) \
    | tr ' ' '\n' | grep -E "^${KUEUE_SERIES//./\\.}\.[0-9]+$" | tail -1
}

if [[ -z "${KUEUE_VERSION:-}" ]]; then
  # The newest build in the cache: what --print-bin-dir names (no network), and what is used
  # when the proxy cannot be asked.
  cached="$(ls -d "$CACHE"/bin/kueue-"$KUEUE_SERIES".*/ 2>/dev/null | sed 's:/$::' | sort -V | tail -1 || true)"
  if [[ "${1:-}" == "--print-bin-dir" && -n "$cached" ]]; then
    echo "$cached"
    exit 0
  fi
  KUEUE_VERSION="$(newest_in_series || true)"
  if [[ -z "$KUEUE_VERSION" && -n "$cached" ]]; then
    KUEUE_VERSION="${cached##*/kueue-}"
    echo "warning: could not list sigs.k8s.io/kueue versions; using the cached $KUEUE_VERSION" >&2
  fi
  [[ -n "$KUEUE_VERSION" ]] || { echo "error: no $KUEUE_SERIES.x of sigs.k8s.io/kueue on the module proxy" >&2; exit 1; }
fi
KEY="kueue-${KUEUE_VERSION}"
BIN="$CACHE/bin/$KEY"

if [[ "${1:-}" == "--print-bin-dir" ]]; then
  echo "$BIN"
  exit 0
fi

# shellcheck source=hack/build-lib.sh
source "$HERE/build-lib.sh"

build_kueue() {
  local mod
  GOBIN="$WORK/bin" "$GO" install -ldflags="-s -w \
    -X sigs.k8s.io/kueue/pkg/version.GitVersion=$KUEUE_VERSION \
    -X sigs.k8s.io/kueue/pkg/version.BuildDate=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
    "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION"
  mod="$("$GO" mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION" \
         | "$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
  rm -rf "$BIN/kueue-crds"
  mkdir -p "$BIN/kueue-crds"
  cp "$mod"/config/components/crd/bases/*.yaml "$BIN/kueue-crds/"
  chmod -R u+w "$BIN/kueue-crds"
  mv "$WORK/bin/kueue" "$BIN/kueue"
  echo "$KUEUE_VERSION" >"$BIN/VERSION"
}

T0=$SECONDS
echo "go: $("$GO" version); cache: $BIN"
if have kueue kueue-crds/kueue.x-k8s.io_workloads.yaml VERSION; then SUMMARY+=("kueue: cached")
else timed "kueue $KUEUE_VERSION" build_kueue; fi

echo
echo "summary (total $((SECONDS - T0))s), binaries in $BIN:"
for s in "${SUMMARY[@]}"; do echo "  $s"; done
ls -la "$BIN"
