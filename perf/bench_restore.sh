#!/usr/bin/env bash
# restore and verify REPO: the current build against an older barge (e.g. the previous main,
# built beside it) and against `zstd -dc | tar -x` on the same data in the same run, rounds
# interleaved (odd rounds start with old, even ones with new), warm cache, fresh destinations.
# Both builds restore the same repository (written once by the new build; the format did not
# change). Prints every run, medians, ratios, and the peak RSS of each restore and verify
# (GNU time's maximum resident set) next to --memory.
#
# Usage: perf/bench_restore.sh OLD_BARGE [--runs N] [--large SIZE] [--files N] [--small SIZE]
#        [--memory SIZE] [--only large|small]
# Data lives under data/restore (git-ignored) and is removed at the end. Restored large trees
# are removed after each round, followed by a 65 s pause (the VM's discard makes writes
# right after a big delete slower).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
old=$(readlink -f "${1:?usage: perf/bench_restore.sh OLD_BARGE [options]}")
shift
runs=3 large=8G files=100000 small=2G memory=256M only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --large) large=$2; shift 2 ;;
    --files) files=$2; shift 2 ;;
    --small) small=$2; shift 2 ;;
    --memory) memory=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "bench_restore: unknown argument $1" >&2; exit 2 ;;
  esac
done
new=$here/build/barge
for b in "$old" "$new"; do [ -x "$b" ] || { echo "bench_restore: $b is not an executable" >&2; exit 2; }; done
work=$here/data/restore
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

# run NAME CMD...: appends seconds and peak RSS (MiB) of CMD to t[NAME] and m[NAME].
declare -A t m
run() {
  local name=$1; shift
  local t0 t1 kb
  t0=$(date +%s%N)
  /usr/bin/time -f %M -o "$work/rss" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  t1=$(date +%s%N)
  kb=$(tail -1 "$work/rss")
  t[$name]+="$(awk -v d=$((t1 - t0)) 'BEGIN {printf "%.3f", d / 1e9}') "
  m[$name]+="$((kb / 1024)) "
}
. "$here/perf/lib.sh"
maxof() { tr ' ' '\n' | grep . | sort -n | tail -1; }

bench() {
  local name=$1 src=$2 cleanup=$3 r
  tar -C "$src" -cf - . | zstd -q -3 -T0 -o "$work/$name.tar.zst"
  "$new" backup -q "$src" "$work/$name-repo"
  sync
  for ((r = 1; r <= runs; r++)); do
    local order="old new"
    ((r % 2 == 0)) && order="new old"
    for tool in $order zstd; do
      warm "$work/$name-repo/packs"
      local out=$work/$name-$tool-$r
      case $tool in
        old) run "$name,restore,old" "$old" restore -q "$work/$name-repo" "$out" ;;
        new) run "$name,restore,new" "$new" restore -q --memory "$memory" "$work/$name-repo" "$out" ;;
        zstd) mkdir -p "$out"; warm "$work/$name.tar.zst"
              run "$name,restore,zstd" sh -c 'zstd -dc "$0" | tar -C "$1" -xf -' "$work/$name.tar.zst" "$out" ;;
      esac
      sync
    done
    for tool in $order; do
      local bin=$new extra=(--memory "$memory")
      [ "$tool" = old ] && { bin=$old; extra=(); }
      run "$name,verify,$tool" "$bin" verify -q "${extra[@]}" "$work/$name-repo"
    done
    if [ "$cleanup" = yes ] && ((r < runs)); then
      rm -rf "$work/$name"-{old,new,zstd}-"$r"; sync; sleep 65
    fi
  done
  # The last round's trees are kept: the new build's restore must equal the source.
  [ -z "$(rsync -aHn --delete --itemize-changes --checksum "$src/" "$work/$name-new-$runs/")" ] || { echo "bench_restore: new restore differs from the source" >&2; exit 1; }
  local o n z
  o=$(echo "${t[$name,restore,old]}" | median); n=$(echo "${t[$name,restore,new]}" | median)
  z=$(echo "${t[$name,restore,zstd]}" | median)
  printf '%-6s restore  old %6.2f s (%s) rss %s MiB   new %6.2f s (%s) rss %s MiB   zstd|tar %6.2f s (%s)\n' \
    "$name" "$o" "${t[$name,restore,old]% }" "$(echo "${m[$name,restore,old]}" | maxof)" \
    "$n" "${t[$name,restore,new]% }" "$(echo "${m[$name,restore,new]}" | maxof)" "$z" "${t[$name,restore,zstd]% }"
  awk -v o="$o" -v n="$n" -v z="$z" 'BEGIN {printf "       restore  old/new %.2fx   zstd|tar / new %.2fx\n", o / n, z / n}'
  o=$(echo "${t[$name,verify,old]}" | median); n=$(echo "${t[$name,verify,new]}" | median)
  printf '%-6s verify   old %6.2f s (%s) rss %s MiB   new %6.2f s (%s) rss %s MiB' \
    "$name" "$o" "${t[$name,verify,old]% }" "$(echo "${m[$name,verify,old]}" | maxof)" \
    "$n" "${t[$name,verify,new]% }" "$(echo "${m[$name,verify,new]}" | maxof)"
  awk -v o="$o" -v n="$n" 'BEGIN {printf "   old/new %.2fx\n", o / n}'
  echo "       (--memory $memory for the new build)"
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r), $(findmnt -no FSTYPE,OPTIONS -T "$work")"
echo "old: $old   new: $new   runs: $runs"
if [ "$only" != small ]; then
  "$new" gen "$work/large-src" --profile large --size "$large" --seed 7 -q
  bench large "$work/large-src" yes
fi
if [ "$only" != large ]; then
  "$new" gen "$work/small-src" --profile small --size "$small" --files "$files" --seed 7 -q
  bench small "$work/small-src" no
fi
