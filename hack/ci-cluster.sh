#!/usr/bin/env bash
# CI entry point of the cluster tier: build (or reuse the cached) control-plane binaries,
# then run tests/cluster with CI=1, so missing binaries fail instead of skipping.
#
#   hack/ci-cluster.sh            # build + test
#   hack/ci-cluster.sh --build    # build only
#
# Env: PYTHON (default .venv/bin/python, else python3), TRAINWRIGHT_CACHE (binary cache root).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$([[ -x .venv/bin/python ]] && echo .venv/bin/python || command -v python3)}"

t0=$SECONDS
PYTHON="$(command -v python3)" hack/build-control-plane.sh
echo "control-plane binaries ready in $((SECONDS - t0))s"
[[ "${1:-}" == "--build" ]] && exit 0

t1=$SECONDS
CI="${CI:-1}" PYTHONPATH="operator:trainer${PYTHONPATH:+:$PYTHONPATH}" \
  "$PYTHON" -m pytest tests/cluster -m cluster -ra "$@"
echo "cluster tier took $((SECONDS - t1))s"
