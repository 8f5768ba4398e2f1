#!/usr/bin/env bash
# A fake cluster of hosts on this machine, made of network namespaces (needs root).
#
#   scripts/netns-cluster.sh up N        hosts t-h1..t-hN (10.50.0.1..N/24) on a bridge in t-sw;
#                                        leftovers of an earlier cluster are removed first
#   scripts/netns-cluster.sh down        remove every t-* namespace this script creates
#   scripts/netns-cluster.sh status      list the cluster's namespaces and addresses
#   scripts/netns-cluster.sh agent [-opts] HOST CMD...
#                                        Open MPI launch agent (instead of ssh): run CMD, a shell
#                                        command line like ssh's, in the namespace of HOST
#                                        (10.50.0.K or hK) with its own UTS hostname hK.
#                                        scripts/nsagent is the same as an executable of its own.
#
# The namespace prefix is "t-" unless BARGE_NETNS_PREFIX says otherwise (a second prefix gives a
# second, separate cluster; the addresses are private to each bridge, so they may repeat).
# Traffic only ever goes over these namespaces' own 10.50.0.0/24 addresses and loopback: the
# namespaces have no other interface and no route out.
set -euo pipefail

prefix=${BARGE_NETNS_PREFIX:-t-}
sw="${prefix}sw"
max_hosts=250

die() { echo "netns-cluster: $*" >&2; exit 1; }

# Hosts of this prefix that exist now, e.g. "t-h1 t-h3".
existing_hosts() {
  ip netns list 2>/dev/null | awk '{print $1}' | grep -E "^${prefix//./\\.}h[0-9]+$" || true
}

down() {
  local ns
  for ns in $(existing_hosts); do ip netns del "$ns" 2>/dev/null || true; done
  if ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$sw"; then
    ip netns del "$sw" 2>/dev/null || true
  fi
  rm -f "${TMPDIR:-/tmp}/barge-netns-${prefix}hosts-"*   # left by mpirun-netns.sh
}

up() {
  local n=$1 i
  [[ "$n" =~ ^[0-9]+$ ]] && (( n >= 1 && n <= max_hosts )) || die "up: N must be 1..$max_hosts (got '$n')"
  [ "$(id -u)" = 0 ] || die "up: needs root (ip netns add)"
  down
  ip netns add "$sw"
  ip -n "$sw" link set lo up
  ip -n "$sw" link add br0 type bridge
  ip -n "$sw" link set br0 up
  for i in $(seq 1 "$n"); do
    local h="${prefix}h$i"
    ip netns add "$h"
    # Created inside the switch namespace, so no name ever appears in the root namespace.
    ip -n "$sw" link add "veth-h$i" type veth peer name eth0 netns "$h"
    ip -n "$sw" link set "veth-h$i" master br0
    ip -n "$sw" link set "veth-h$i" up
    ip -n "$h" addr add "10.50.0.$i/24" dev eth0
    ip -n "$h" link set eth0 up
    ip -n "$h" link set lo up
  done
}

status() {
  local ns
  for ns in $(existing_hosts); do
    printf '%s %s\n' "$ns" "$(ip -n "$ns" -4 -o addr show dev eth0 2>/dev/null | awk '{print $4}')"
  done
}

# ssh-like: options first (ignored), then the host, then the command words, joined with spaces
# and run by a shell, as ssh would on the remote side. The environment and the working
# directory are inherited (the namespaces share the file system and the process tree).
agent() {
  while [ $# -gt 0 ]; do
    case "$1" in
      --) shift; break ;;
      -[bcDeFiJlmOopQRSWw]) shift 2 ;;   # ssh options that take a value
      -*) shift ;;
      *) break ;;
    esac
  done
  [ $# -ge 1 ] || die "agent: usage: agent [opts] HOST CMD..."
  local host=${1##*@} k
  shift
  case "$host" in
    10.50.0.*) k=${host#10.50.0.} ;;
    h*) k=${host#h} ;;
    *) die "agent: refusing host '$host' (only 10.50.0.K or hK)" ;;
  esac
  [[ "$k" =~ ^[0-9]+$ ]] && k=$((10#$k)) && (( k >= 1 && k <= max_hosts )) || die "agent: bad host '$host'"
  local ns="${prefix}h$k"
  ip netns list 2>/dev/null | awk '{print $1}' | grep -qx -- "$ns" \
    || die "agent: namespace $ns does not exist (run: $0 up N)"
  local cmd="$*"
  [ -n "$cmd" ] || die "agent: no command (an interactive login is not supported)"
  exec ip netns exec "$ns" unshare --uts -- sh -c 'hostname "$1" || exit 1; eval "$2"' \
    nsagent "h$k" "$cmd"
}

case "${1:-}" in
  up) shift; [ $# -eq 1 ] || die "usage: $0 up N"; up "$1" ;;
  down) down ;;
  status) status ;;
  agent) shift; agent "$@" ;;
  *) echo "usage: $0 up N | down | status | agent [opts] HOST CMD..." >&2; exit 2 ;;
esac
