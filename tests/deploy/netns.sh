#!/usr/bin/env bash
# netns.sh -- run a command in a private network namespace where the
# Kubernetes Service names resolve to 127.0.0.1.
#
#   tests/deploy/netns.sh "redis busd replayd ..." <command...>
#
# The rehearsal (test_rehearsal.py) runs every daemon with the environment
# the manifests give it, unchanged: Service DNS names, bind-all addresses
# (0.0.0.0 / *) and the real port numbers. In a fresh network namespace only
# a loopback interface exists, so binding "all interfaces" stays on loopback,
# the fixed ports cannot collide with anything on the machine (a running
# `make run`), and a private /etc/hosts (bind-mounted in a private mount
# namespace) maps the Service names to 127.0.0.1. Each daemon gets its own
# ports in the manifests, so one loopback can hold the whole topology the way
# a cluster's pod network does.
#
# Exits 77 (the automake "skipped" status) when namespaces are not available.
set -euo pipefail

names=$1
shift
hosts=$(mktemp "${TMPDIR:-/tmp}/tether-hosts.XXXXXX")
trap 'rm -f "$hosts"' EXIT
printf '127.0.0.1 localhost %s\n::1 localhost\n' "$names" >"$hosts"
chmod 644 "$hosts"

if [ "$(id -u)" -eq 0 ]; then
  ns=(unshare --net --mount)
else
  ns=(unshare --net --mount --map-root-user)
fi
if ! "${ns[@]}" true 2>/dev/null || ! command -v ip >/dev/null; then
  echo "netns.sh: cannot create network namespaces here (unshare/ip)" >&2
  exit 77
fi
# Not exec: the trap removes the hosts file afterwards.
# shellcheck disable=SC2016  # the inner script expands its own variables
TETHER_DEPLOY_NETNS=1 "${ns[@]}" bash -c '
  set -e
  ip link set lo up
  mount --bind "$1" /etc/hosts
  shift
  exec "$@"' _ "$hosts" "$@"
