#!/usr/bin/env bash
# Issue 3 benchmarks, barge and the peers on the same data in the same run (warm cache,
# fresh destinations, medians of N):
#  1. fresh copy of the small-file and mixed datasets: `mpirun -np 2 barge copy` vs cp -a,
#     rsync -a, fpsync -n 2;
#  2. sync of an unchanged tree (no-op) and after changing 1% of the files: barge alone and
#     under mpirun -np 2 vs rsync -a and fpsync -n 2;
#  3. balance: one large file plus many small ones at np=4 (report's busy-time ratio);
#  4. memory per entry: peak RSS of a copy walking the small tree, minus that of a tiny
#     tree, per entry (alone, and summed over the ranks of np=2);
#  5. (--only million, never by default) a tree of 1M entries: memory per entry as in 4,
#     and the no-op sync of the unchanged tree: barge alone and under mpirun -np 2 vs rsync -a.
# Each section prints its own table row with the ratios.
# Usage: perf/bench_mpi.sh [--runs N] [--small SIZE] [--mixed SIZE] [--skew-large SIZE]
#                         [--only copy|sync|memory|balance|million]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
runs=3 small=1G mixed=2G skew_large=4G only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;; --small) small=$2; shift 2 ;; --mixed) mixed=$2; shift 2 ;;
    --skew-large) skew_large=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "bench_mpi: unknown argument $1" >&2; exit 2 ;;
  esac
done
barge=$here/build/barge
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpi2=(mpirun -np 2 --bind-to none)
work=$here/data/bench-mpi
rm -rf "$work"; mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
settle() { sync; fstrim "$work" >/dev/null 2>&1 || true; }
. "$here/perf/lib.sh"
timeit() { /usr/bin/time -f "%e" -o "$work/t" "$@" > /dev/null 2>&1 || true; cat "$work/t"; }
declare -A T

fresh_copy() {  # name src
  # Rounds interleave the tools (barge, cp, rsync, fpsync, then again), so the file system's
  # drift as it fills (ext4's inode allocator) weighs on every tool alike.
  local name=$1 src=$2 tool r dst
  local -A times=()
  for ((r = 1; r <= runs; r++)); do
    for tool in barge-np2 barge cp rsync fpsync; do
      dst=$work/dst-$name-$tool-$r
      settle; warm "$src"
      case $tool in
        barge-np2) t=$(timeit "${mpi2[@]}" "$barge" copy -q "$src" "$dst") ;;
        barge) t=$(timeit "$barge" copy -q "$src" "$dst") ;;
        cp) t=$(timeit cp -a "$src" "$dst") ;;
        rsync) t=$(timeit rsync -a "$src/" "$dst/") ;;
        fpsync) t=$(timeit fpsync -n 2 -t "$work/fpsync-tmp" "$src/" "$dst/") ;;
      esac
      times[$tool]+="$t"$'\n'
    done
  done
  for tool in barge-np2 barge cp rsync fpsync; do
    T[$name,$tool]=$(printf '%s' "${times[$tool]}" | median)
    printf '%-6s %-10s median %6.2f s (runs: %s)\n' "$name" "$tool" "${T[$name,$tool]}" "$(printf '%s' "${times[$tool]}" | tr '\n' ' ')"
  done
  awk -v b="${T[$name,barge-np2]}" -v a="${T[$name,barge]}" -v c="${T[$name,cp]}" -v r="${T[$name,rsync]}" -v f="${T[$name,fpsync]}" -v n="$name" 'BEGIN {
    printf "| fresh copy, %s | np=2 %.2f s, alone %.2f s | cp -a %.2f s, rsync -a %.2f s, fpsync -n 2 %.2f s | np=2: %.2fx cp, %.2fx rsync, %.2fx fpsync; alone %.2fx rsync |\n", n, b, a, c, r, f, c/b, r/b, f/b, r/a }'
  rm -rf "$work"/dst-"$name"-*; settle
}

sync_bench() {  # name src: no-op and 1%-changed sync
  # Each round changes SRC once (change phase) and every tool then syncs its own mirror of
  # the same change, in turn, so the tools see the same work and the same file-system state.
  local name=$1 src=$2 tool r
  local -A times=()
  for tool in barge barge-np2 rsync fpsync; do
    rsync -a "$src/" "$work/mirror-$name-$tool/"
  done
  sleep 1.1   # rsync leaves times of entries changed this second unset
  for phase in noop change; do
    for ((r = 1; r <= runs; r++)); do
      if [ "$phase" = change ]; then  # 1% of the files get new content
        find "$src" -type f | sort | awk -v r="$r" 'NR % 100 == r' | while read -r f; do printf 'x%s' "$r" >> "$f"; done
      fi
      for tool in barge barge-np2 rsync fpsync; do
        settle; warm "$src"
        case $tool in
          barge) t=$(timeit "$barge" sync -q "$src" "$work/mirror-$name-$tool") ;;
          barge-np2) t=$(timeit "${mpi2[@]}" "$barge" sync -q "$src" "$work/mirror-$name-$tool") ;;
          rsync) t=$(timeit rsync -a "$src/" "$work/mirror-$name-$tool/") ;;
          fpsync) t=$(timeit fpsync -n 2 -t "$work/fpsync-tmp" "$src/" "$work/mirror-$name-$tool/") ;;
        esac
        times[$phase,$tool]+="$t"$'\n'
      done
    done
    for tool in barge barge-np2 rsync fpsync; do
      T[$name-$phase,$tool]=$(printf '%s' "${times[$phase,$tool]}" | median)
      printf '%-12s %-10s median %6.2f s (runs: %s)\n' "$name-$phase" "$tool" "${T[$name-$phase,$tool]}" "$(printf '%s' "${times[$phase,$tool]}" | tr '\n' ' ')"
    done
    awk -v b="${T[$name-$phase,barge]}" -v b2="${T[$name-$phase,barge-np2]}" -v r="${T[$name-$phase,rsync]}" -v f="${T[$name-$phase,fpsync]}" -v p="$phase" 'BEGIN {
      printf "| sync %s | alone %.2f s, np=2 %.2f s | rsync -a %.2f s, fpsync -n 2 %.2f s | alone %.2fx rsync, np=2 %.2fx rsync, %.2fx fpsync |\n", p, b, b2, r, f, r/b, r/b2, f/b2 }'
  done
  # every mirror must equal SRC (barge's the same as rsync's)
  for tool in barge barge-np2; do
    [ -z "$(rsync -aHAXn --delete --itemize-changes --modify-window=-1 --checksum "$src/" "$work/mirror-$name-$tool/" | head -3)" ] \
      || { echo "bench_mpi: $tool mirror differs from SRC" >&2; exit 1; }
  done
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); barge $("$barge" --version)"
want() { [ -z "$only" ] || [ "$only" = "$1" ]; }
rss() { /usr/bin/time -f %M "$@" 2>&1 >/dev/null | tail -1; }
ranks_rss() { python3 -c "import json,sys; print(sum(k['peak_rss_bytes'] for k in json.load(open(sys.argv[1]))['ranks']) >> 10)" "$1"; }
memory_per_entry() {  # tree label
  local tree=$1 label=$2 files rss_tiny rss_big
  files=$(find "$work/$tree" | wc -l)
  mkdir -p "$work/tiny/d" && echo x > "$work/tiny/d/f"
  rm -rf "$work/tiny-c" "$work/mem-c1" "$work/mem-c2"
  rss_tiny=$(rss "$barge" copy -q --memory 8M --chunk-size 1M "$work/tiny" "$work/tiny-c")
  rss_big=$(rss "$barge" copy -q --memory 8M --chunk-size 1M "$work/$tree" "$work/mem-c1")
  echo "memory ($label): copy of $files entries alone: peak RSS ${rss_big} KiB vs ${rss_tiny} KiB for a tiny tree: $(( (rss_big - rss_tiny) * 1024 / files )) bytes/entry"
  rm -rf "$work/mem-c1"; settle
  # Under mpirun each rank carries Open MPI as well: the baseline is a tiny tree at np=2 too.
  rm -rf "$work/tiny-c"
  "${mpi2[@]}" "$barge" copy -q --memory 8M --chunk-size 1M --report "$work/mem-tiny.json" "$work/tiny" "$work/tiny-c"
  "${mpi2[@]}" "$barge" copy -q --memory 8M --chunk-size 1M --report "$work/mem.json" "$work/$tree" "$work/mem-c2"
  local sum sum_tiny
  sum=$(ranks_rss "$work/mem.json")
  sum_tiny=$(ranks_rss "$work/mem-tiny.json")
  echo "memory ($label): np=2 peak RSS summed over ranks ${sum} KiB vs ${sum_tiny} KiB for a tiny tree at np=2: $(( (sum - sum_tiny) * 1024 / files )) bytes/entry (against twice a lone tiny run: $(( (sum - 2 * rss_tiny) * 1024 / files )))"
  rm -rf "$work/mem-c2" "$work/tiny-c"; settle
}

if [ "$only" = million ]; then  # only when asked: it needs a 1M-file tree
  "$barge" gen "$work/million" --profile small --size 1G --files 1000000 --seed 7 -q
  memory_per_entry million "1M entries"
  "$barge" copy -q "$work/million" "$work/million-mirror"
  sleep 1.1   # rsync leaves times of entries changed this second unset
  rsync -a "$work/million/" "$work/million-mirror/"
  for tool in barge barge-np2 rsync; do
    times=""
    for ((r = 1; r <= runs; r++)); do
      settle
      case $tool in
        barge) t=$(timeit "$barge" sync -q "$work/million" "$work/million-mirror") ;;
        barge-np2) t=$(timeit "${mpi2[@]}" "$barge" sync -q "$work/million" "$work/million-mirror") ;;
        rsync) t=$(timeit rsync -a "$work/million/" "$work/million-mirror/") ;;
      esac
      times+="$t"$'\n'
    done
    T[million,$tool]=$(printf '%s' "$times" | median)
    printf '%-12s %-10s median %6.2f s (runs: %s)\n' "million-noop" "$tool" "${T[million,$tool]}" "$(printf '%s' "$times" | tr '\n' ' ')"
  done
  awk -v b="${T[million,barge]}" -v b2="${T[million,barge-np2]}" -v r="${T[million,rsync]}" 'BEGIN {
    printf "| sync no-op, 1M entries | alone %.2f s, np=2 %.2f s | rsync -a %.2f s | alone %.2fx rsync, np=2 %.2fx rsync |\n", b, b2, r, r/b, r/b2 }'
  exit 0
fi

"$barge" gen "$work/small" --profile small --size "$small" --seed 7 -q
if want copy; then
  "$barge" gen "$work/mixed" --profile mixed --size "$mixed" --seed 7 -q
  fresh_copy small "$work/small"
  fresh_copy mixed "$work/mixed"
fi
want sync && sync_bench small "$work/small"

# memory per entry: a copy keeps every entry it walked; a small --memory keeps the buffer
# pool out of the figure (alone, and summed over the ranks of mpirun -np 2)
want memory && memory_per_entry small "small tree"
rm -rf "$work"/mirror-* "$work"/mem-c* "$work/mixed"; settle
want balance || exit 0

# balance: one large file + many small ones at np=4
mkdir -p "$work/skew"
"$barge" gen "$work/skew/large" --profile large --size "$skew_large" --seed 8 -q
"$barge" gen "$work/skew/small" --profile small --size 256M --files 20000 --seed 8 -q
settle; warm "$work/skew"
mpirun -np 4 --oversubscribe --bind-to none "$barge" copy -q --report "$work/skew.json" "$work/skew" "$work/skew-copy"
python3 - "$work/skew.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
busy = [round(k["busy_seconds"], 2) for k in r["ranks"]]
print(f"balance (np=4, one large file + 20000 small): busy seconds per rank {busy}, "
      f"min/max {r['balance']:.2f}, bytes per rank {[k['bytes'] >> 20 for k in r['ranks']]} MiB")
PY

