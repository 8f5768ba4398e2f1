#!/usr/bin/env bash
# barge copy --tune against the same copy without it: same data, same run, interleaved per
# round (plain then tuned, then tuned then plain, ...), a sync before each, fresh destinations. Four cases:
#   large       one 2 GiB file, the defaults          (does tuning cost anything?)
#   small       103k files of ~10 KiB, the defaults
#   large-qd2   the large file with --queue-depth 2   (a setting that is wrong: can --tune
#   small-t1    the small files with --threads 1       correct it from there?)
# The tuned time includes its probe. Prints every run, the medians and plain/tuned.
# Usage: perf/bench_tune.sh [--rounds N] [--cases "large small large-qd2 small-t1"]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
source "$here/perf/lib.sh"
rounds=3 cases="large small large-qd2 small-t1"
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --cases) cases=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--cases LIST]" >&2; exit 2 ;;
  esac
done
barge=$here/build/barge
data=$here/data/tune
mkdir -p "$data"
[ -d "$data/large" ] || "$barge" gen "$data/large" --profile large --size 2G -q
[ -d "$data/small" ] || "$barge" gen "$data/small" --profile small --size 1G -q
out=$data/out
settle() { rm -rf "$out"; sync; sleep 65; }  # freed inodes and discards (perf/RESULTS.md)
echo "machine: $(nproc) cores, $(uname -r); barge $(git -C "$here" rev-parse --short HEAD)"
for c in $cases; do
  case "$c" in
    large) src=large extra=() ;;
    small) src=small extra=() ;;
    large-qd2) src=large extra=(--queue-depth 2) ;;
    small-t1) src=small extra=(--threads 1) ;;
    *) echo "unknown case $c" >&2; exit 2 ;;
  esac
  settle
  mkdir -p "$out"
  plain=() tuned=()
  for r in $(seq "$rounds"); do
    # Each run starts with no dirty pages of the one before (sync, untimed), and the order
    # alternates, so neither side always pays for the other's write-back.
    run_plain() { sync; plain+=("$(secs "$barge" copy -q "${extra[@]}" "$data/$src" "$out/p$r")"); }
    run_tuned() {
      sync
      tuned+=("$(secs "$barge" copy -q --tune "${extra[@]}" --report "$out/t$r.json" "$data/$src" "$out/t$r")")
    }
    if [ $((r % 2)) = 1 ]; then run_plain; run_tuned; else run_tuned; run_plain; fi
    choice=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tune"]; c=t["chosen"]; print("%s: chunk %d KiB qd %d threads %d %s, probe %.2f s" % (t["method"], c["chunk_bytes"]>>10, c["queue_depth"], c["threads"], "direct" if c["direct"] else "buffered", t["seconds"]))' "$out/t$r.json")
    echo "  $c round $r: plain ${plain[-1]} s  tuned ${tuned[-1]} s  ($choice)"
  done
  pm=$(echo "${plain[@]}" | median) tm=$(echo "${tuned[@]}" | median)
  echo "$c: median plain $pm s, tuned $tm s: plain/tuned = $(awk -v a="$pm" -v b="$tm" 'BEGIN {printf "%.2f", a / b}')"
done
rm -rf "$out"
