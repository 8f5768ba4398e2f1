#!/usr/bin/env bash
# Side-by-side benchmark of `barge copy` against cp -a, rsync -a and "cp -a + xxhsum of both
# trees" (the fair peer of a verified copy), on the same freshly generated data in the same
# run, warm and cold cache. Prints medians, MB/s, files/s, ratios and peak RSS.
#
# Usage: perf/bench_copy.sh [--runs N] [--large SIZE] [--small SIZE] [--only large|small]
#                           [--memory SIZE]
# Data lives under data/bench (git-ignored) and is removed at the end.
# Needs root for drop_caches (cold runs); without it cold runs are skipped.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
runs=3
large=8G
small=1G
only=""
memory=256M
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --large) large=$2; shift 2 ;;
    --small) small=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --memory) memory=$2; shift 2 ;;
    *) echo "bench_copy: unknown argument $1" >&2; exit 2 ;;
  esac
done
barge=$here/build/barge
[ -x "$barge" ] || { echo "bench_copy: build first (scripts/setup)" >&2; exit 2; }
for t in rsync xxhsum /usr/bin/time; do command -v "$t" >/dev/null || { echo "bench_copy: missing $t" >&2; exit 2; }; done
work=$here/data/bench
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
can_drop=0
[ -w /proc/sys/vm/drop_caches ] && can_drop=1

settle() {  # flush dirty data and pending discards so one run's writeback doesn't tax the next
  sync
  command -v fstrim >/dev/null && fstrim "$work" >/dev/null 2>&1 || true
}
prepare_cache() {  # $1 = warm|cold, $2 = source tree
  settle
  if [ "$1" = cold ]; then
    echo 3 > /proc/sys/vm/drop_caches
  else
    find "$2" -type f -print0 | xargs -0 -r cat > /dev/null
  fi
}
xxh_tree() { (cd "$1" && find . -type f -print0 | xargs -0 -r -P 2 -n 2000 xxhsum -H2 > /dev/null 2>&1); }

# Runs one tool once: prints "seconds peak_rss_kib".
run_tool() {  # $1 tool, $2 src, $3 dst
  local tool=$1 src=$2 dst=$3 out
  out=$(mktemp)
  case "$tool" in
    barge) /usr/bin/time -f "%e %M" -o "$out" "$barge" copy -q --memory "$memory" "$src" "$dst" ;;
    barge-verify) /usr/bin/time -f "%e %M" -o "$out" "$barge" copy -q --verify --memory "$memory" "$src" "$dst" ;;
    cp) /usr/bin/time -f "%e %M" -o "$out" cp -a "$src" "$dst" ;;
    rsync) /usr/bin/time -f "%e %M" -o "$out" rsync -a "$src/" "$dst/" ;;
    cp+xxhsum)
      /usr/bin/time -f "%e %M" -o "$out" bash -c "cp -a '$src' '$dst' && cd '$here' && $(declare -f xxh_tree); xxh_tree '$src'; xxh_tree '$dst'" ;;
  esac
  cat "$out"
  rm -f "$out"
}

. "$here/perf/lib.sh"

tools=(barge cp rsync barge-verify cp+xxhsum)
declare -A secs rss

bench_dataset() {  # $1 name, $2 src tree, $3 keep-destinations(1)|delete-each(0)
  local name=$1 src=$2 keep=$3 bytes files
  bytes=$(du -sb "$src" | cut -f1)
  files=$(find "$src" -type f | wc -l)
  echo "== $name: $files files, $((bytes / 1048576)) MiB =="
  for mode in warm cold; do
    [ "$mode" = cold ] && [ $can_drop = 0 ] && { echo "(cold runs skipped: not root)"; continue; }
    for tool in "${tools[@]}"; do
      local times="" peak=0
      for ((r = 1; r <= runs; r++)); do
        local dst="$work/dst-$name-$mode-$tool-$r"
        prepare_cache "$mode" "$src"
        read -r t m < <(run_tool "$tool" "$src" "$dst")
        times+="$t"$'\n'
        ((m > peak)) && peak=$m
        if [ "$keep" = 0 ]; then rm -rf "$dst"; fi
      done
      secs[$name,$mode,$tool]=$(printf '%s' "$times" | median)
      rss[$name,$mode,$tool]=$peak
      printf '%-6s %-13s median %7.2f s  (runs: %s)  peak RSS %d MiB\n' "$mode" "$tool" \
        "${secs[$name,$mode,$tool]}" "$(printf '%s' "$times" | tr '\n' ' ')" $((peak / 1024))
    done
    local b=${secs[$name,$mode,barge]} c=${secs[$name,$mode,cp]} r=${secs[$name,$mode,rsync]}
    local v=${secs[$name,$mode,barge-verify]} x=${secs[$name,$mode,cp+xxhsum]}
    awk -v n="$name" -v m="$mode" -v B="$bytes" -v F="$files" -v b="$b" -v c="$c" -v r="$r" -v v="$v" -v x="$x" 'BEGIN {
      printf "| %s | %s | %.0f MB/s, %.0f files/s | %.0f MB/s | %.0f MB/s | %.2fx | %.2fx | %.2fx |\n",
        n, m, B/b/1e6, F/b, B/c/1e6, B/r/1e6, c/b, r/b, x/v }' | tee -a "$work/summary.md"
  done
  if [ "$keep" = 1 ]; then rm -rf "$work"/dst-"$name"-*; settle; fi
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r), $(findmnt -no FSTYPE,OPTIONS -T "$work")"
echo "barge: $($barge --version), --memory $memory"
if [ "$only" != small ]; then
  "$barge" gen "$work/large" --profile large --size "$large" --seed 7 -q
  bench_dataset large "$work/large" 0
  rm -rf "$work/large"
fi
if [ "$only" != large ]; then
  "$barge" gen "$work/small" --profile small --size "$small" --seed 7 -q
  settle
  bench_dataset small "$work/small" 1
fi
echo
echo "| dataset | cache | barge copy | cp -a | rsync -a | barge vs cp -a | barge vs rsync | barge --verify vs cp -a + xxhsum |"
echo "|---|---|---|---|---|---|---|---|"
cat "$work/summary.md"
