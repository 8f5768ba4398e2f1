#!/usr/bin/env bash
# Issue 4 benchmarks, barge and the peers on the same data in the same run (medians of N,
# fresh repositories and destinations, caches settled before each timed run):
#  1. full backup of a mixed dataset (compressible and incompressible files, many sizes):
#     barge backup (zstd level 3) vs tar -cf - | zstd -T0 -3, restic (compression auto, its
#     zstd default) and borg (--compression zstd,3); stored size of each;
#  2. restore of that backup: barge restore vs zstd -d | tar -x, restic restore, borg extract;
#  3. incremental backup after 1% of the files changed vs the full backup (barge).
# restic and borg are installed from Debian packages if missing (benchmarks only).
# Usage: perf/bench_backup.sh [--runs N] [--size SIZE] [--peers "restic borg"]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
runs=3 size=2G peers="restic borg"
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;; --size) size=$2; shift 2 ;; --peers) peers=$2; shift 2 ;;
    *) echo "bench_backup: unknown argument $1" >&2; exit 2 ;;
  esac
done
for p in $peers; do
  pkg=$p; [ "$p" = borg ] && pkg=borgbackup
  command -v "$p" >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null
done
barge=$here/build/barge
work=$here/data/bench-backup
rm -rf "$work"; mkdir -p "$work"
trap 'rm -rf "$work"' EXIT
export RESTIC_PASSWORD=bench BORG_PASSPHRASE="" BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK=yes
settle() { sync; fstrim "$work" >/dev/null 2>&1 || true; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
. "$here/perf/lib.sh"
timeit() { /usr/bin/time -f "%e" -o "$work/t" "$@" > /dev/null 2>"$work/err" || { cat "$work/err" >&2; echo "FAILED: $*" >&2; exit 1; }; cat "$work/t"; }
declare -A T S

src=$work/src
"$barge" gen "$src" --profile mixed --size "$size" --compressibility 0.5 --seed 9 -q
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB, $(uname -r); $("$barge" --version); $(zstd --version | head -1); $(tar --version | head -1)"
for p in $peers; do echo "peer: $( [ "$p" = restic ] && restic version || $p --version ) "; done
echo "dataset: $(find "$src" -type f | wc -l) files, $(du -sb "$src" | cut -f1) bytes (mixed, compressibility 0.5)"

backup() {  # tool repo
  case $1 in
    barge) timeit "$barge" backup -q --mode full "$src" "$2" ;;
    tar) timeit sh -c "tar -cf - -C '$work' src | zstd -T0 -3 -q -o '$2'" ;;
    restic) restic init -q --repository-version 2 -r "$2" >/dev/null
            timeit restic backup -q --compression auto -r "$2" "$src" ;;
    borg) borg init -e none "$2" >/dev/null
          timeit borg create --compression zstd,3 "$2::a" "$src" ;;
  esac
}
restore() {  # tool repo dst
  mkdir -p "$3"
  case $1 in
    barge) timeit "$barge" restore -q "$2" "$3" ;;
    tar) timeit sh -c "zstd -d -q -c '$2' | tar -xf - -C '$3'" ;;
    restic) timeit restic restore -q latest -r "$2" --target "$3" ;;
    borg) timeit sh -c "cd '$3' && borg extract '$2::a'" ;;
  esac
}
stored() { du -sb "$1" | cut -f1; }

for tool in barge tar $peers; do
  bt="" rt=""
  for ((r = 1; r <= runs; r++)); do
    repo=$work/repo-$tool-$r
    [ "$tool" = tar ] && repo=$work/repo-tar-$r.tar.zst
    settle; bt+="$(backup "$tool" "$repo")"$'\n'
    S[$tool]=$(stored "$repo")
    settle; rt+="$(restore "$tool" "$repo" "$work/out-$tool-$r")"$'\n'
    if [ "$r" = 1 ]; then   # the restored tree equals the source (restic and borg keep the absolute path)
      out=$work/out-$tool-1
      [ "$tool" = barge ] || out=$out/$(case $tool in tar) echo src ;; *) echo "${src#/}" ;; esac)
      [ -z "$(rsync -rlptn --checksum --itemize-changes "$src/" "$out/" | head -3)" ] || { echo "$tool restore differs" >&2; exit 1; }
    fi
    rm -rf "$work/out-$tool-$r" "$repo"
  done
  T[$tool,backup]=$(printf '%s' "$bt" | median)
  T[$tool,restore]=$(printf '%s' "$rt" | median)
  printf '%-7s backup median %6.2f s (runs: %s)  restore median %6.2f s (runs: %s)  stored %d bytes\n' "$tool" \
    "${T[$tool,backup]}" "$(printf '%s' "$bt" | tr '\n' ' ')" "${T[$tool,restore]}" "$(printf '%s' "$rt" | tr '\n' ' ')" "${S[$tool]}"
done

# incremental after 1% of the files changed, vs the full backup of the same tree
ft="" it=""
for ((r = 1; r <= runs; r++)); do
  repo=$work/repo-incr-$r
  settle; ft+="$(timeit "$barge" backup -q --mode full "$src" "$repo")"$'\n'
  find "$src" -type f | sort | awk -v r="$r" 'NR % 100 == r' | while read -r f; do printf 'x%s' "$r" >> "$f"; done
  settle; it+="$(timeit "$barge" backup -q --mode incremental "$src" "$repo")"$'\n'
  rm -rf "$repo"
done
T[full]=$(printf '%s' "$ft" | median); T[incr]=$(printf '%s' "$it" | median)
printf 'incremental after a 1%% change: median %.2f s (runs: %s) vs full %.2f s\n' "${T[incr]}" "$(printf '%s' "$it" | tr '\n' ' ')" "${T[full]}"

echo
echo "| benchmark | barge | peer | ratio (peer time / barge time) |"
echo "|---|---|---|---|"
src_bytes=$(du -sb "$src" | cut -f1)
for tool in tar $peers; do
  name=$tool; [ "$tool" = tar ] && name="tar + zstd -T0 -3"
  awk -v n="$name" -v b="${T[barge,backup]}" -v p="${T[$tool,backup]}" -v bs="${S[barge]}" -v ps="${S[$tool]}" 'BEGIN {
    printf "| full backup vs %s | %.2f s, stored %.1f MiB | %.2f s, stored %.1f MiB | %.2fx (size %+.1f%%) |\n", n, b, bs/1048576, p, ps/1048576, p/b, (bs-ps)*100/ps }'
  awk -v n="$name" -v b="${T[barge,restore]}" -v p="${T[$tool,restore]}" 'BEGIN {
    printf "| restore vs %s | %.2f s | %.2f s | %.2fx |\n", n, b, p, p/b }'
done
awk -v f="${T[full]}" -v i="${T[incr]}" 'BEGIN { printf "| incremental (1%% changed) vs full | %.2f s | full %.2f s | %.1fx |\n", i, f, f/i }'
