# Sourced by hack/build-*.sh: the cache checks and timing their groups share.
# Needs BIN (the cache folder) set; fills SUMMARY.
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
