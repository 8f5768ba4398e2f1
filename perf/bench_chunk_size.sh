#!/usr/bin/env bash
# Picks the default --chunk-size: times `barge copy` (warm cache, fresh destination, median of
# N runs) on a large-file and a small-file dataset for several chunk sizes.
# Usage: perf/bench_chunk_size.sh [--runs N] [--large SIZE] [--small SIZE]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
runs=3 large=4G small=256M
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;; --large) large=$2; shift 2 ;; --small) small=$2; shift 2 ;;
    *) echo "bench_chunk_size: unknown argument $1" >&2; exit 2 ;;
  esac
done
barge=$here/build/barge
work=$here/data/bench-chunk
rm -rf "$work"; mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
"$barge" gen "$work/large" --profile large --size "$large" --seed 3 -q
"$barge" gen "$work/small" --profile small --size "$small" --seed 3 -q
. "$here/perf/lib.sh"
echo "| chunk size | large ($large) s | small ($small) s |"
echo "|---|---|---|"
for chunk in 1M 2M 4M 8M 16M; do
  row="| $chunk |"
  for set in large small; do
    times=""
    for ((r = 1; r <= runs; r++)); do
      sync; find "$work/$set" -type f -print0 | xargs -0 cat > /dev/null
      t=$( { /usr/bin/time -f "%e" "$barge" copy -q --chunk-size "$chunk" "$work/$set" "$work/dst-$set-$chunk-$r"; } 2>&1 )
      times+="$t"$'\n'
      [ "$set" = large ] && rm -rf "$work/dst-$set-$chunk-$r"
    done
    row+=" $(printf '%s' "$times" | median) |"
  done
  echo "$row"
done
