#!/usr/bin/env bash
# Run an MPI program across N fake hosts (network namespaces, see netns-cluster.sh), over TCP.
#   scripts/mpirun-netns.sh N NP [MPIRUN-OPTIONS...] -- CMD...
# Brings the hosts t-h1..t-hN up if they are not all there (it leaves them up afterwards:
# `scripts/netns-cluster.sh down` removes them), writes a hostfile of 10.50.0.1..N with 2 slots
# each and starts mpirun inside t-h1 (hostname h1). Ranks are placed round-robin by node, so
# NP=2 on 2 hosts puts rank 0 on h1 and rank 1 on h2. Ranks talk TCP only (btl self,tcp) over
# 10.50.0.0/24; PATH, LD_LIBRARY_PATH and the working directory reach every rank (the namespaces
# share the file system, so paths are the same everywhere). Exit status is mpirun's.
# Extra options between NP and -- go to mpirun (e.g. -x VAR, --tag-output).
# BARGE_NETNS_FIRST=K uses hosts t-hK..t-h(K+N-1) instead (mpirun in t-hK): two jobs on one
# fake cluster, e.g. a sender on h1-h2 and a receiver on h3-h4.
set -euo pipefail

here=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
prefix=${BARGE_NETNS_PREFIX:-t-}
usage() { echo "usage: $0 N NP [MPIRUN-OPTIONS...] -- CMD..." >&2; exit 2; }

[ $# -ge 4 ] || usage
n=$1 np=$2
first=${BARGE_NETNS_FIRST:-1}
shift 2
[[ "$n" =~ ^[0-9]+$ ]] && (( n >= 1 )) || usage
[[ "$np" =~ ^[0-9]+$ ]] && (( np >= 1 )) || usage
[[ "$first" =~ ^[0-9]+$ ]] && (( first >= 1 )) || usage
last=$((first + n - 1))
extra=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do extra+=("$1"); shift; done
[ "${1:-}" = "--" ] || usage
shift
[ $# -ge 1 ] || usage

have_all=1
present=$(ip netns list 2>/dev/null | awk '{print $1}')
for ns in "${prefix}sw" $(seq -f "${prefix}h%g" 1 "$last"); do
  grep -qx -- "$ns" <<<"$present" || { have_all=0; break; }
done
[ "$have_all" = 1 ] || "$here/netns-cluster.sh" up "$last"

# The same N always gives the same hostfile: write it atomically and leave it (netns-cluster.sh
# down removes it). No trap is needed, so mpirun can replace this shell: a signal to this process
# (timeout, ctest) reaches mpirun itself, which then stops the ranks on every host.
hostfile="${TMPDIR:-/tmp}/barge-netns-${prefix}hosts-$n"
[ "$first" = 1 ] || hostfile="$hostfile-from-$first"
tmp=$(mktemp "$hostfile.XXXXXX")
for i in $(seq "$first" "$last"); do echo "10.50.0.$i slots=2"; done >"$tmp"
mv -f "$tmp" "$hostfile"

fwd=(-x PATH)
[ -n "${LD_LIBRARY_PATH:-}" ] && fwd+=(-x LD_LIBRARY_PATH)

# mpirun runs in t-h1 under hostname h1; it launches h1's ranks itself and reaches the other
# hosts through nsagent (not ssh).
exec ip netns exec "${prefix}h$first" unshare --uts -- sh -c 'hostname "$0" || exit 1; exec "$@"' "h$first" \
  mpirun --allow-run-as-root --oversubscribe --hostfile "$hostfile" \
    --mca plm_rsh_agent "$here/nsagent" --mca plm_rsh_no_tree_spawn 1 \
    --mca oob_tcp_if_include 10.50.0.0/24 --mca btl_tcp_if_include 10.50.0.0/24 \
    --mca btl self,tcp --bind-to none --map-by node \
    --wdir "$PWD" "${fwd[@]}" "${extra[@]}" \
    -np "$np" "$@"
