#!/usr/bin/env bash
# barge bench meta against mdtest (built from IOR's source tree, data/ior/bin/mdtest) on the
# same directory in the same run: ops/s per phase, medians of interleaved rounds, and the
# barge/mdtest ratio. mdtest reports rates only; barge adds the latency percentiles.
#
#   perf/bench_meta.sh [--rounds 3] [--files 10000] [--bytes 4K] [--ranks "1 2"] [--dir D]
#                      [--mdtest PATH] [--settle 65]
#
# Every run waits --settle seconds first: ext4 here allocates inodes freed in the last ~60 s
# slowly, so a run right after the other tool's removals would be penalised.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3 FILES=10000 BYTES=4096 RANKS="1 2" DIR=data/benchmeta MDTEST=data/ior/bin/mdtest SETTLE=65
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --files) FILES=$2; shift 2 ;;
    --bytes) BYTES=$2; shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --mdtest) MDTEST=$2; shift 2 ;;
    --settle) SETTLE=$2; shift 2 ;;
    *) echo "bench_meta: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -x "$MDTEST" ] || { echo "bench_meta: no mdtest at $MDTEST (build IOR: see perf/RESULTS.md)" >&2; exit 2; }
BARGE=$(realpath build/barge)
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p "$DIR"
DIR=$(realpath "$DIR")
OUT=$(mktemp -d /tmp/barge-bench-meta.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
echo "== machine: $(nproc) cores, kernel $(uname -r); $FILES files and directories per rank, $BYTES bytes each"
for np in $RANKS; do
  for r in $(seq 1 "$ROUNDS"); do
    sync; sleep "$SETTLE"
    mpirun -np "$np" "$BARGE" bench meta "$DIR" --files "$FILES" --dirs "$FILES" --bytes "$BYTES" \
      -q --json "$OUT/barge.$np.$r.json"
    sync; sleep "$SETTLE"
    mpirun -np "$np" "$MDTEST" -n "$FILES" -u -w "$BYTES" -e "$BYTES" -d "$DIR/mdtest" > "$OUT/mdtest.$np.$r.txt" 2>&1
    rm -rf "$DIR/mdtest"
  done
  python3 - "$OUT" "$np" "$ROUNDS" <<'PY'
import json, re, statistics, sys
out, np, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = {"dir_create": "Directory creation", "dir_stat": "Directory stat",
         "dir_remove": "Directory removal", "file_create": "File creation",
         "file_stat": "File stat", "file_read": "File read", "file_remove": "File removal",
         "tree_create": "Tree creation", "tree_remove": "Tree removal"}
def mdtest(path):
    rates = {}
    for line in open(path):
        m = re.match(r"\s+([A-Za-z ]+?)\s*:?\s{2,}([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$", line)
        if m: rates[m.group(1)] = float(m.group(4))  # the mean column
    return rates
print(f"== np {np}")
print(f"  {'phase':12} {'barge ops/s':>12} {'mdtest ops/s':>13} {'barge/mdtest':>12}  barge p50/p99 us   runs barge | mdtest")
for key, md in names.items():
    b, p50, p99, m = [], [], [], []
    for r in range(1, rounds + 1):
        ph = {p["name"]: p for p in json.load(open(f"{out}/barge.{np}.{r}.json"))["phases"]}
        b.append(ph[key]["ops_per_second"]); p50.append(ph[key]["latency_ns"]["p50"] / 1e3)
        p99.append(ph[key]["latency_ns"]["p99"] / 1e3)
        m.append(mdtest(f"{out}/mdtest.{np}.{r}.txt").get(md, float("nan")))
    bm, mm = statistics.median(b), statistics.median(m)
    print(f"  {key:12} {bm:12.0f} {mm:13.0f} {bm / mm:12.2f}  {statistics.median(p50):6.1f} / {statistics.median(p99):7.1f}"
          f"   {' '.join(f'{x:.0f}' for x in b)} | {' '.join(f'{x:.0f}' for x in m)}")
PY
done
