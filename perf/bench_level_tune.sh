#!/usr/bin/env bash
# send --tune and backup --tune against the same command without it: same data, same run,
# interleaved per round with the order alternated, fresh destinations. The data is source
# code (8 copies of /usr/include, in data/leveltune), where zstd's level matters. Cases:
#   send-slow    sender → receiver namespaces over a 100 Mbit/s link (tbf): the link is the
#                bound, and level 1 (the default) sends more bytes than needed
#   send-fast    the same over the bare veth pair: the cores are the bound
#   backup       backup of the same tree into a fresh repository on this disk
# send's receiver writes to /dev/shm, so that what is measured is the link and the sender
# (this VM's disk varies 2x). The tuned time includes its tuning. Prints every run with the
# level chosen, the medians and default/tuned.
# Usage: perf/bench_level_tune.sh [--rounds N] [--cases "send-slow send-fast backup"]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/perf/lib.sh"
rounds=3 cases="send-slow send-fast backup"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --cases) cases=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--cases LIST]" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" = 0 ] || { echo "needs root (network namespaces)" >&2; exit 2; }
barge=$here/build/barge
data=$here/data/leveltune
export BARGE_NETNS_PREFIX=l-
cleanup() {
  "$here/scripts/netns-cluster.sh" down > /dev/null 2>&1 || true
  rm -rf /dev/shm/barge-leveltune "$data/out"
}
trap cleanup EXIT
if [ ! -d "$data/src" ]; then
  mkdir -p "$data/src"
  for i in 1 2 3 4 5 6 7 8; do cp -r /usr/include "$data/src/inc$i"; done  # copies, not links
fi
head -c 32 /dev/urandom > "$data/key"
chmod 600 "$data/key"
"$here/scripts/netns-cluster.sh" up 2 > /dev/null
warm "$data/src"
echo "machine: $(nproc) cores, $(uname -r); barge $(git -C "$here" rev-parse --short HEAD)"
echo "data: $(du -sh "$data/src" | cut -f1) of source code ($(find "$data/src" -type f | wc -l) files)"

level_of() {  # REPORT: the chosen level and the tuning's probes
  python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tune"]; print("level %d; %s" % (t["chosen"]["compression_level"], ", ".join("%s %.0f MB/s" % (p["change"], p["bytes_per_second"] / 1e6) for p in t["probes"])))' "$1"
}
send_run() {  # FLAGS...: one send into a fresh /dev/shm directory; prints seconds
  local dst=/dev/shm/barge-leveltune/$(date +%s%N)
  mkdir -p "$dst"
  ip netns exec l-h2 "$barge" recv --listen 10.50.0.2:7791 --psk-file "$data/key" --once -q "$dst" &
  local rpid=$!
  sleep 0.3
  secs ip netns exec l-h1 "$barge" send --psk-file "$data/key" -q "$@" 10.50.0.2:7791
  wait "$rpid"
  rm -rf "$dst"
}
backup_run() {  # FLAGS...: one backup into a fresh repository; prints seconds
  sync
  secs "$barge" backup -q "$@" "$data/out/r$(date +%s%N)"
}

for c in $cases; do
  case "$c" in
    send-slow) run=send_run ;;
    send-fast) run=send_run ;;
    backup) run=backup_run ;;
    *) echo "unknown case $c" >&2; exit 2 ;;
  esac
  ip netns exec l-h1 tc qdisc del dev eth0 root 2> /dev/null || true
  [ "$c" = send-slow ] && ip netns exec l-h1 tc qdisc add dev eth0 root tbf rate 100mbit burst 256kb latency 100ms
  rm -rf "$data/out"
  mkdir -p "$data/out"
  plain=() tuned=()
  for r in $(seq "$rounds"); do
    src=("$data/src")
    one_plain() { plain+=("$($run "${src[@]}")"); }
    one_tuned() { tuned+=("$($run --tune --report "$data/out/t$r.json" "${src[@]}")"); }
    if [ $((r % 2)) = 1 ]; then one_plain; one_tuned; else one_tuned; one_plain; fi
    echo "  $c round $r: default ${plain[-1]} s  tuned ${tuned[-1]} s  ($(level_of "$data/out/t$r.json"))"
  done
  pm=$(echo "${plain[@]}" | median) tm=$(echo "${tuned[@]}" | median)
  echo "$c: median default $pm s, tuned $tm s: default/tuned = $(awk -v a="$pm" -v b="$tm" 'BEGIN {printf "%.2f", a / b}')"
done
