#!/usr/bin/env bash
# bootstrap.sh -- install the Debian packages Tether needs, only those missing.
# Idempotent and quick when everything is present: one dpkg-query call.
set -euo pipefail

PKGS=(
  build-essential pkg-config clang libclang-rt-14-dev
  libzmq3-dev libwebsockets-dev libhiredis-dev libprotobuf-c-dev protobuf-c-compiler
  libjwt-dev libssl-dev libjansson-dev libglib2.0-dev libnice-dev libsrtp2-dev libopus-dev
  libcmocka-dev redis-server redis-tools
  python3 python3-websockets python3-pytest python3-zmq
  yamllint python3-yaml nodejs iproute2
  chromium
  libmicrohttpd-dev libhttp-parser-dev zlib1g-dev lua-check shellcheck
)
# Browser tests: Node with npm (a NodeSource nodejs already bundles npm;
# Debian's nodejs needs its npm package).
command -v npm >/dev/null 2>&1 || PKGS+=(nodejs npm)
[ -n "${TETHER_EXTRA_PKGS:-}" ] && read -r -a extra <<<"$TETHER_EXTRA_PKGS" && PKGS+=("${extra[@]}")

missing=()
for p in "${PKGS[@]}"; do
  st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$st" = "installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "bootstrap: installing ${missing[*]}" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
