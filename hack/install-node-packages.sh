#!/usr/bin/env bash
# Install the Debian packages of the real node when missing: runc, the CNI plugins (bridge,
# host-local, loopback, portmap in /usr/lib/cni), iptables, socat (the API server's
# forwarder), and mmdebstrap + buildah (the images). None of them starts a daemon.
set -euo pipefail

PACKAGES=(runc containernetworking-plugins iptables socat mmdebstrap buildah)
missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
    export DEBIAN_FRONTEND=noninteractive
    t0=$SECONDS
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    echo "installed ${missing[*]} in $((SECONDS - t0))s"
fi
runc --version | head -1
buildah --version
