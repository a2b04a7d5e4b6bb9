#!/usr/bin/env bash
# run.sh -- build, then run the load workloads against a fresh local suite each
# and record the results under bench/results/ (see bench/README.md).
#
#   bench/run.sh                      all workloads, full size
#   bench/run.sh --quick              small sizes (a smoke run, about a minute)
#   bench/run.sh --only fanout,idle   some workloads
#   TETHER_BUILD=/path/build bench/run.sh   daemons from another build tree
set -euo pipefail
cd "$(dirname "$0")/.."
if ! { make -j2 && make -C bench/compare; } >/dev/null 2>&1; then
  echo "run.sh: 'make -j2' or 'make -C bench/compare' failed; using the binaries already in ${TETHER_BUILD:-build}/bin" >&2
fi
exec /usr/bin/python3 bench/bench.py "$@"
