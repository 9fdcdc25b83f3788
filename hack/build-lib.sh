# Sourced by hack/build-*.sh: the Go settings, cache folders, cache checks and timing their
# groups share. Needs CACHE, KEY and BIN set; sets GO, PYTHON and WORK; fills SUMMARY.
GO="${GO:-$(command -v go || echo /usr/local/go/bin/go)}"
[[ -x "$GO" ]] || { echo "error: go not found (set GO=/path/to/go)" >&2; exit 1; }
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:--trimpath}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"
PYTHON="${PYTHON:-$(command -v python3)}"

mkdir -p "$BIN"
WORK="$CACHE/build/$KEY"
mkdir -p "$WORK"
SUMMARY=()

have() { local f; for f in "$@"; do [[ -s "$BIN/$f" ]] || return 1; done; }

timed() {  # timed NAME CMD...
  local name="$1"; shift
  local t0=$SECONDS
  echo "==> building $name"
  "$@"
  local dt=$((SECONDS - t0))
  echo "==> built $name in ${dt}s"
  SUMMARY+=("$name: built in ${dt}s")
}
