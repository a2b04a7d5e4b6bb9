#!/usr/bin/env bash
# run.sh -- Tether against nginx + nchan and Socket.IO on this machine
# (bench/compare/README.md). Installs what is missing (Debian packages, the
# npm packages of package-lock.json), builds Tether and the load generator,
# then runs compare.py under the machine's benchmark lock.
#
#   bench/compare/run.sh                         every workload, full size (about 25 minutes)
#   bench/compare/run.sh --quick                 small sizes, a smoke run (a minute or two)
#   bench/compare/run.sh --only fanout,storm --systems tether,nchan
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=bench/compare

need=()
command -v nginx >/dev/null 2>&1 || need+=(nginx)
[ -f /usr/lib/nginx/modules/ngx_nchan_module.so ] || need+=(libnginx-mod-nchan)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
command -v taskset >/dev/null 2>&1 || need+=(util-linux)
command -v flock >/dev/null 2>&1 || need+=(util-linux)
/usr/bin/python3 -c 'import websockets' 2>/dev/null || need+=(python3-websockets)  # the harness imports it
if ((${#need[@]})); then
  SUDO=
  [ "$(id -u)" = 0 ] || SUDO=sudo
  echo "run.sh: installing ${need[*]}" >&2
  # Installing nginx starts it on port 80 unless policy-rc.d says no: the
  # benchmark runs its own nginx on loopback, so keep the system one stopped.
  made_policy=
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
  [ -z "$made_policy" ] || $SUDO rm -f /usr/sbin/policy-rc.d
fi
if [ ! -d "$HERE/node_modules/socket.io" ] || [ ! -d "$HERE/node_modules/@socket.io/redis-streams-adapter" ] ||
   [ ! -d "$HERE/node_modules/redis" ]; then
  (cd "$HERE" && npm ci --no-audit --no-fund --loglevel=error)
fi

if ! make -j2 >/dev/null 2>&1; then
  echo "run.sh: 'make -j2' failed; using the Tether binaries already in build/bin" >&2
fi
make -s -C "$HERE" >/dev/null

LOCK=${TETHER_BENCH_LOCK:-/work/team/bench.lock}
[ -d "$(dirname "$LOCK")" ] || LOCK=/tmp/tether-bench.lock
echo "run.sh: waiting for the benchmark lock $LOCK" >&2
exec flock "$LOCK" /usr/bin/python3 "$HERE/compare.py" "$@"
