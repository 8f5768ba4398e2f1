#!/usr/bin/env bash
# Kernel work per byte: barge copy against cp -a on the same data in the same run, wall time
# and kernel CPU (GNU time's system seconds, all threads) per GiB copied, on this VM's ext4
# (data/) and on an XFS file system with reflink (a loop device on data/: cp -a clones there
# by default, barge's --reflink auto too). Rounds interleave barge and cp; fresh
# destinations; warm cache; medians of --runs. Variants: --direct-write on ext4 large files,
# --reflink never on XFS small files, --checksum-manifest.
# Usage: perf/bench_kernel.sh [--runs N] [--large SIZE] [--small SIZE] [--only ext4|xfs]
# Needs root for the loop device (scripts/setup installs xfsprogs). Data: data/kernel.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
. "$here/perf/lib.sh"
runs=3 large=4G small=1G only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --large) large=$2; shift 2 ;;
    --small) small=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    *) echo "bench_kernel: unknown argument $1" >&2; exit 2 ;;
  esac
done
barge=$here/build/barge
work=$here/data/kernel
mnt=$work/xfs
cleanup() { umount "$mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cleanup
mkdir -p "$work"

# timed NAME CMD...: appends wall and system seconds of CMD to w[NAME] and k[NAME].
declare -A w k
timed() {
  local name=$1; shift
  /usr/bin/time -f "%e %S" -o "$work/time" "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
  read -r e s < "$work/time"
  w[$name]+="$e "
  k[$name]+="$s "
}

# bench FS SET SRC DSTDIR TOOL...: each round runs every TOOL once (the order rotates from
# round to round), then prints each tool's medians and its ratios against cp -a.
#   barge: barge copy; barge-direct: with --direct-write; barge-noclone: with --reflink never;
#   barge-manifest: with --checksum-manifest (reads and hashes the source)
bench() {
  local fs=$1 set=$2 src=$3 dir=$4 r i gib
  shift 4
  local tools=("$@")
  gib=$(du -sb --apparent-size "$src" | awk '{printf "%.3f", $1 / 2^30}')
  for ((r = 1; r <= runs; r++)); do
    for ((i = 0; i < ${#tools[@]}; i++)); do
      local tool=${tools[$(((i + r - 1) % ${#tools[@]}))]}
      warm "$src"; sync
      case $tool in
        barge) timed "$fs,$set,$tool" "$barge" copy -q "$src" "$dir/$tool-$r" ;;
        barge-direct) timed "$fs,$set,$tool" "$barge" copy -q --direct-write "$src" "$dir/$tool-$r" ;;
        barge-noclone) timed "$fs,$set,$tool" "$barge" copy -q --reflink never "$src" "$dir/$tool-$r" ;;
        barge-manifest) timed "$fs,$set,$tool" "$barge" copy -q --checksum-manifest "$dir/$tool-$r.m" "$src" "$dir/$tool-$r" ;;
        cp) timed "$fs,$set,$tool" cp -a "$src" "$dir/$tool-$r" ;;
      esac
      sync
    done
  done
  local cw ck tw tk
  cw=$(echo "${w[$fs,$set,cp]}" | median); ck=$(echo "${k[$fs,$set,cp]}" | median)
  for tool in "${tools[@]}"; do
    tw=$(echo "${w[$fs,$set,$tool]}" | median); tk=$(echo "${k[$fs,$set,$tool]}" | median)
    printf '%-4s %-5s %s GiB  %-13s %6.2f s (%s) sys %5.2f s (%s)\n' "$fs" "$set" "$gib" "$tool" \
      "$tw" "${w[$fs,$set,$tool]% }" "$tk" "${k[$fs,$set,$tool]% }"
    [ "$tool" = cp ] && continue
    awk -v tw="$tw" -v cw="$cw" -v tk="$tk" -v ck="$ck" -v g="$gib" 'BEGIN {
      printf "     speed vs cp -a %.2fx   kernel CPU per GiB %.2f s, cp %.2f s (%.2fx cp)\n",
        (tw > 0 ? cw / tw : 0), tk / g, ck / g, (ck > 0 ? tk / ck : 0) }'
  done
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); cp: $(cp --version | head -1)"
if [ "$only" != xfs ]; then
  "$barge" gen "$work/large" --profile large --size "$large" --seed 7 -q
  "$barge" gen "$work/small" --profile small --size "$small" --seed 7 -q
  mkdir -p "$work/out"
  bench ext4 large "$work/large" "$work/out" barge cp barge-direct barge-manifest
  bench ext4 small "$work/small" "$work/out" barge cp barge-manifest
fi
if [ "$only" != ext4 ]; then
  [ "$(id -u)" = 0 ] || { echo "bench_kernel: the XFS part needs root (loop device)" >&2; exit 2; }
  truncate -s 24G "$work/img"
  mkfs.xfs -q -m reflink=1 "$work/img"
  mkdir -p "$mnt"
  mount -o loop "$work/img" "$mnt"
  "$barge" gen "$mnt/large" --profile large --size "$large" --seed 7 -q
  "$barge" gen "$mnt/small" --profile small --size "$small" --seed 7 -q
  bench xfs large "$mnt/large" "$mnt" barge cp barge-manifest
  bench xfs small "$mnt/small" "$mnt" barge cp barge-noclone
fi
