#!/usr/bin/env bash
# No-regression check for a change to the engine: the current build and an older barge (e.g.
# the previous main, built beside it) on the same data in the same run, interleaved round by
# round (old, new, cp -a as the peer; odd rounds start with old, even ones with new, so neither
# always runs on the disk state the other left), warm cache, fresh destinations kept until the dataset
# is done (deleting a big tree slows the writes after it on this VM). Covers copy of large
# files, copy of many small files, backup, restore, verify REPO and verify --manifest
# ("manifest"). Prints every run, medians, and the ratio old/new (> 1: the new build is faster).
#
# Usage: perf/bench_regress.sh OLD_BARGE [--runs N] [--large SIZE] [--small SIZE] [--only large|small]
# Build the old one with e.g.: git worktree add --detach ../old <rev> &&
#   cmake -S ../old -B ../old/build -G Ninja -DCMAKE_BUILD_TYPE=Release -DBARGE_TESTS=OFF &&
#   cmake --build ../old/build --target barge
# Data lives under data/regress (git-ignored) and is removed at the end.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
old=${1:?usage: perf/bench_regress.sh OLD_BARGE [--runs N] [--large SIZE] [--small SIZE]}
shift
old=$(readlink -f "$old")
runs=3
large=2G
small=512M
only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --large) large=$2; shift 2 ;;
    --small) small=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "bench_regress: unknown argument $1" >&2; exit 2 ;;
  esac
done
new=$here/build/barge
for b in "$old" "$new"; do [ -x "$b" ] || { echo "bench_regress: $b is not an executable" >&2; exit 2; }; done
work=$here/data/regress
rm -rf "$work"
mkdir -p "$work"
trap 'rm -rf "$work"' EXIT

. "$here/perf/lib.sh"

declare -A t
# bench NAME SRC: copy, backup, restore per round, tools interleaved.
bench() {
  local name=$1 src=$2 r
  # verify --manifest checks this copy against the manifest its copy wrote (once, untimed).
  "$new" copy -q --checksum-manifest "$work/$name.manifest" "$src" "$work/$name-checked"
  sync
  for ((r = 1; r <= runs; r++)); do
    local order="old new cp"
    ((r % 2 == 0)) && order="new old cp"
    for tool in $order; do
      local bin=$new
      [ "$tool" = old ] && bin=$old
      warm "$src"; sync
      if [ "$tool" = cp ]; then
        t[$name,copy,$tool]+="$(secs cp -a "$src" "$work/$name-cp-$r") "
        continue
      fi
      t[$name,copy,$tool]+="$(secs "$bin" copy -q "$src" "$work/$name-$tool-$r") "
      sync
      t[$name,backup,$tool]+="$(secs "$bin" backup -q "$src" "$work/$name-repo-$tool-$r") "
      sync
      t[$name,restore,$tool]+="$(secs "$bin" restore -q "$work/$name-repo-$tool-$r" "$work/$name-restored-$tool-$r") "
      sync
      t[$name,verify,$tool]+="$(secs "$bin" verify -q "$work/$name-repo-$tool-$r") "
      warm "$work/$name-checked"
      t[$name,manifest,$tool]+="$(secs "$bin" verify -q --manifest "$work/$name.manifest" "$work/$name-checked") "
    done
  done
  for op in copy backup restore verify manifest; do
    local o n c
    o=$(echo "${t[$name,$op,old]}" | median)
    n=$(echo "${t[$name,$op,new]}" | median)
    printf '%-6s %-8s old %6.2f s (%s)  new %6.2f s (%s)' "$name" "$op" "$o" "${t[$name,$op,old]% }" "$n" "${t[$name,$op,new]% }"
    if [ "$op" = copy ]; then
      c=$(echo "${t[$name,copy,cp]}" | median)
      printf '  cp -a %6.2f s (%s)' "$c" "${t[$name,copy,cp]% }"
    fi
    awk -v o="$o" -v n="$n" 'BEGIN {printf "  old/new %.2fx\n", o / n}'
  done
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r), $(findmnt -no FSTYPE,OPTIONS -T "$work")"
echo "old: $old   new: $new   runs: $runs"
if [ "$only" != small ]; then
  "$new" gen "$work/large-src" --profile large --size "$large" --seed 7 -q
  bench large "$work/large-src"
fi
if [ "$only" != large ]; then
  "$new" gen "$work/small-src" --profile small --size "$small" --seed 7 -q
  bench small "$work/small-src"
fi
