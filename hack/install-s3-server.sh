#!/usr/bin/env bash
# Fetch s3proxy (an S3-compatible server, org.gaul:s3proxy on Maven Central) for the object
# storage tests, and cache it outside the repository beside the other test binaries:
#
#   ${TRAINWRIGHT_CACHE:-$HOME/.cache/trainwright}/bin/s3proxy-<version>/
#     s3proxy.jar  the server and its dependencies in one jar (the jar-with-dependencies artifact)
#     m2/          Maven's local repository for this fetch (the dependency plugin itself)
#
# tests/s3kit.py runs it with Java >= 17 and its filesystem blob store: a real server that signs
# and checks requests (AWS v2/v4), so wrong keys, missing buckets and missing objects answer as
# S3 does. A version is pinned: $S3PROXY_VERSION overrides it.
#
# Idempotent: skipped when the jar is cached. Usage:
#
#   hack/install-s3-server.sh
#   hack/install-s3-server.sh --print-path     # the jar's path (no network, nothing fetched)
#
# Needs network access to Maven Central; installs Maven and Java 17 from Debian when missing.
set -euo pipefail

VERSION="${S3PROXY_VERSION:-4.1.0}"
DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
CACHE="${TRAINWRIGHT_CACHE:-$HOME/.cache/trainwright}"
DIR="$CACHE/bin/s3proxy-$VERSION"
JAR="$DIR/s3proxy.jar"

if [[ "${1:-}" == "--print-path" ]]; then
  echo "$JAR"
  exit 0
fi

if [[ -s "$JAR" ]]; then
  echo "s3proxy $VERSION: cached ($JAR)"
  exit 0
fi

if ! command -v mvn >/dev/null || ! command -v java >/dev/null; then
  # Debian's Maven and Java 17. DPkg::Lock::Timeout waits for another apt-get of `make -j`.
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends maven openjdk-17-jre-headless >/dev/null
fi
t0=$SECONDS
echo "==> fetching s3proxy $VERSION"
mkdir -p "$DIR"
tmp="$(mktemp -d "$DIR/fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$DIR/m2" "$DEPENDENCY_PLUGIN:copy" \
  -Dartifact="org.gaul:s3proxy:$VERSION:jar:jar-with-dependencies" -DoutputDirectory="$tmp"
mv "$tmp/s3proxy-$VERSION-jar-with-dependencies.jar" "$JAR"  # atomic: a half fetch is never cached
echo "==> fetched s3proxy $VERSION in $((SECONDS - t0))s ($JAR)"
