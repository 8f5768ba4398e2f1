#!/usr/bin/env bash
# barge bench net against iperf3, the tool network engineers trust: the same path (host 1 →
# host 2, network namespaces b-h1 → b-h2), the same duration, the same stream counts,
# interleaved per round (barge, iperf3, barge, iperf3, ...). barge runs under mpirun across
# the two hosts (rank 0 on h1 sends to rank 1 on h2) with raw TCP streams, the transport
# iperf3 measures; its TLS and MPI figures are printed beside them (iperf3 has neither).
# Prints every run, the medians and barge's figure over iperf3's.
#
# Usage: perf/bench_net_instrument.sh [--rounds N] [--seconds S] [--shape none|wan]
#   none: the bare veth path (the CPU is the limit); wan: 1 Gbit/s, 25 ms each way
#   (scripts/ns-wan.sh: tc tbf and the NFQUEUE delay line).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/perf/lib.sh"
rounds=3 seconds=8 shape=none
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --shape) shape=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--seconds S] [--shape none|wan]" >&2; exit 2 ;;
  esac
done
export BARGE_NETNS_PREFIX=b- OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
barge=$here/build/barge
work=$(mktemp -d "$here/data/bench-net-instr.XXXXXX")
cleanup() {
  [ "$shape" != none ] && "$here/scripts/ns-wan.sh" down b-h1 b-h2 > /dev/null 2>&1
  pkill -f "iperf3 -s -B 10.50.0.2" 2> /dev/null || true
  "$here/scripts/netns-cluster.sh" down > /dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"$here/scripts/netns-cluster.sh" up 2 > /dev/null
case "$shape" in
  none) ;;
  wan) "$here/scripts/ns-wan.sh" up b-h1 b-h2 10.50.0.1 10.50.0.2 1gbit 25 ;;
  *) echo "unknown shape $shape" >&2; exit 2 ;;
esac
ip netns exec b-h2 iperf3 -s -B 10.50.0.2 -D
sleep 0.3

barge_run() {  # STREAMS TRANSPORT OUT.json
  timeout -k 5 $((seconds * 3 + 60)) "$here/scripts/mpirun-netns.sh" 2 2 -- "$barge" bench net \
    --net 10.50.0.0/24 --transport "$2" --streams "$1" --runtime "$seconds" --ping-count 0 -q \
    --json "$3" > /dev/null
  python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["bandwidth_bytes_per_second"] / 1e6))' "$3"
}
iperf_run() {  # STREAMS
  ip netns exec b-h1 iperf3 -c 10.50.0.2 -P "$1" -t "$seconds" -J \
    | python3 -c 'import json,sys; print("%.1f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 8e6))'
}

echo "== barge bench net (tcp) against iperf3, shape $shape, $seconds s per run, $rounds rounds =="
echo "machine: $(nproc) cores, $(uname -r); barge $(git -C "$here" rev-parse --short HEAD)"
for streams in 1 4; do
  b=() i=() t=() m=()
  for r in $(seq "$rounds"); do
    b+=("$(barge_run "$streams" tcp "$work/b.json")")
    i+=("$(iperf_run "$streams")")
    t+=("$(barge_run "$streams" tls "$work/t.json")")
    m+=("$(barge_run "$streams" mpi "$work/m.json")")
    echo "  streams $streams round $r: barge tcp ${b[-1]} MB/s  iperf3 ${i[-1]} MB/s  (barge tls ${t[-1]}, mpi ${m[-1]})"
  done
  bm=$(echo "${b[@]}" | median) im=$(echo "${i[@]}" | median)
  tm=$(echo "${t[@]}" | median) mm=$(echo "${m[@]}" | median)
  ratio=$(awk -v a="$bm" -v b="$im" 'BEGIN {printf "%.3f", a / b}')
  echo "streams $streams: median barge tcp $bm MB/s, iperf3 $im MB/s: barge/iperf3 = $ratio (tls $tm, mpi $mm MB/s)"
done
