#!/usr/bin/env bash
# barge bench disk against fio 3.33 (io_uring engine) on the same file in the same run, and
# multi-rank barge against IOR (built from source when a tree is given, else the sum of
# per-rank fio jobs). Prints every run, the medians and barge/peer ratios with the issue's
# tolerances (bandwidth +-5%, IOPS +-10%, p50/p99 +-10%, CPU per GB not higher).
#
#   perf/bench_disk.sh [--rounds 3] [--size 4G] [--dir data/benchdisk] [--only "c1 c2"]
#                      [--ranks "1 2 4"] [--rank-size 1G] [--ior PATH-TO-ior] [--no-ranks]
#
# The test files stay in --dir between runs (no deletes: on this VM a delete slows the
# writes after it); remove the folder yourself afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=3 SIZE=4G DIR=data/benchdisk ONLY="" RANKS="1 2 4" RANK_SIZE=1G IOR="" DO_RANKS=1
while [ $# -gt 0 ]; do
  case "$1" in
    --rounds) ROUNDS=$2; shift 2 ;;
    --size) SIZE=$2; shift 2 ;;
    --dir) DIR=$2; shift 2 ;;
    --only) ONLY=$2; shift 2 ;;
    --ranks) RANKS=$2; shift 2 ;;
    --rank-size) RANK_SIZE=$2; shift 2 ;;
    --ior) IOR=$2; shift 2 ;;
    --no-ranks) DO_RANKS=0; shift ;;
    *) echo "bench_disk: unknown argument $1" >&2; exit 2 ;;
  esac
done
BARGE=$(realpath build/barge)
command -v fio > /dev/null || { echo "bench_disk: fio is missing (scripts/setup installs it)" >&2; exit 2; }
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p "$DIR"
DIR=$(realpath "$DIR")
OUT=$(mktemp -d /tmp/barge-bench-disk.XXXXXX)
trap 'rm -rf "$OUT"' EXIT
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), kernel $(uname -r), $(fio --version)"
echo "== file: $DIR/barge-bench.0, $SIZE; $ROUNDS rounds, barge and fio interleaved"

# The file both tools use, laid out once with incompressible data (and kept).
"$BARGE" bench disk "$DIR" --rw read --bs 1M --size "$SIZE" --keep -q

# name rw bs direct
CASES=(
  "seqread-buffered read 1M 0"
  "seqread-direct read 1M 1"
  "seqwrite-buffered write 1M 0"
  "seqwrite-direct write 1M 1"
  "randread-4k-direct randread 4K 1"
  "randwrite-4k-direct randwrite 4K 1"
)

settle() { sync; sleep 2; }

run_barge() {  # rw bs direct json
  local d=""
  [ "$3" = 1 ] && d=--direct
  /usr/bin/time -f "%e %U %S" -o "$4.time" "$BARGE" bench disk "$DIR" --rw "$1" --bs "$2" --qd 32 \
    --size "$SIZE" $d --keep -q --json "$4"
}

run_fio() {  # rw bs direct json
  /usr/bin/time -f "%e %U %S" -o "$4.time" fio --name=t --filename="$DIR/barge-bench.0" \
    --ioengine=io_uring --fixedbufs --rw="$1" --bs="$2" --iodepth=32 --size="$SIZE" \
    --direct="$3" --invalidate=1 --lat_percentiles=1 --clat_percentiles=0 \
    --percentile_list=50:99 --output-format=json --output="$4" > /dev/null
}

for c in "${CASES[@]}"; do
  read -r name rw bs direct <<< "$c"
  if [ -n "$ONLY" ] && [[ " $ONLY " != *" $name "* ]]; then continue; fi
  for r in $(seq 1 "$ROUNDS"); do
    settle
    run_barge "$rw" "$bs" "$direct" "$OUT/$name.barge.$r.json"
    settle
    run_fio "$rw" "$bs" "$direct" "$OUT/$name.fio.$r.json"
  done
done

python3 - "$OUT" "$ROUNDS" <<'PY'
import json, os, sys, statistics
out, rounds = sys.argv[1], int(sys.argv[2])
def cpu(path):
    e, u, s = map(float, open(path + ".time").read().split()[-3:])
    return u + s
def barge(path):
    j = json.load(open(path))
    l = j["latency_ns"]
    return dict(bw=j["bandwidth_bytes_per_second"], iops=j["iops"], p50=l["p50"], p99=l["p99"],
                cpu=cpu(path) / (j["bytes"] / 1e9))
def fio(path):
    j = json.load(open(path))["jobs"][0]
    d = j["read"] if j["read"]["io_bytes"] else j["write"]
    p = d["lat_ns"]["percentile"]
    return dict(bw=d["bw_bytes"], iops=d["iops"], p50=p["50.000000"], p99=p["99.000000"],
                cpu=cpu(path) / (d["io_bytes"] / 1e9))
names = sorted({f.split(".")[0] for f in os.listdir(out) if f.endswith(".json")},
               key=lambda n: ["seqread-buffered", "seqread-direct", "seqwrite-buffered",
                              "seqwrite-direct", "randread-4k-direct", "randwrite-4k-direct"].index(n))
tol = dict(bw=0.05, iops=0.10, p50=0.10, p99=0.10)
for n in names:
    b = [barge(f"{out}/{n}.barge.{r}.json") for r in range(1, rounds + 1)]
    f = [fio(f"{out}/{n}.fio.{r}.json") for r in range(1, rounds + 1)]
    print(f"== {n}")
    for k, unit, scale in [("bw", "MiB/s", 1 / 1048576), ("iops", "IOPS", 1), ("p50", "us", 1e-3),
                           ("p99", "us", 1e-3), ("cpu", "s/GB", 1)]:
        bm = statistics.median(x[k] for x in b); fm = statistics.median(x[k] for x in f)
        ratio = bm / fm if fm else float("nan")
        if k == "cpu":
            verdict = "ok" if bm <= fm * 1.0 else "HIGHER"
        else:
            verdict = "ok" if abs(ratio - 1) <= tol[k] else "OUT"
        runs = lambda xs: " ".join(f"{x[k] * scale:.4g}" for x in xs)
        print(f"  {k:4} barge {bm * scale:10.4g} {unit:6} (runs {runs(b)})   fio {fm * scale:10.4g} "
              f"(runs {runs(f)})   barge/fio {ratio:.3f} {verdict}")
PY

[ "$DO_RANKS" = 1 ] || exit 0
# Multi-rank: sequential 1 MiB O_DIRECT writes then reads, one operation in flight per rank
# (IOR's POSIX pattern), file per process and shared file, np 1, 2, 4.
if [ -z "$IOR" ] && [ -x data/ior/bin/ior ]; then IOR=data/ior/bin/ior; fi
echo "== ranks: $RANK_SIZE per rank, 1 MiB transfers, O_DIRECT, queue depth 1; peer: ${IOR:-fio numjobs (no IOR)}"
ior_bw() {  # np layout(fpp|shared) -> "write_MiBs read_MiBs"
  local f="" o="$DIR/ior"
  [ "$2" = fpp ] && f=-F
  [ "$2" = shared ] && o="$DIR/ior.shared"
  mpirun -np "$1" "$IOR" -a POSIX --posix.odirect -w -r -e -t 1m -b "$RANK_SIZE" $f -k -o "$o" 2>/dev/null |
    awk '/^write / && $2 ~ /^[0-9.]+$/ {w=$2} /^read / && $2 ~ /^[0-9.]+$/ {r=$2} END {print w, r}'
}
fio_bw() {  # np layout -> "write_MiBs read_MiBs"
  local w r common="--ioengine=psync --bs=1M --direct=1 --size=$RANK_SIZE --numjobs=$1 --group_reporting --output-format=json"
  if [ "$2" = fpp ]; then common="$common --filename_format=$DIR/fio.\$jobnum"; else
    common="$common --filename=$DIR/fio.shared --offset_increment=$RANK_SIZE"; fi
  w=$(fio --name=w --rw=write --end_fsync=1 $common | python3 -c "import json,sys; print(json.load(sys.stdin)['jobs'][0]['write']['bw_bytes']/1048576)")
  r=$(fio --name=r --rw=read $common | python3 -c "import json,sys; print(json.load(sys.stdin)['jobs'][0]['read']['bw_bytes']/1048576)")
  echo "$w $r"
}
barge_bw() {  # np layout rw -> MiB/s
  local s="" fs=""
  [ "$2" = shared ] && s=--shared-file
  [ "$3" = write ] && fs=--fsync-end
  mpirun -np "$1" "$BARGE" bench disk "$DIR" --rw "$3" --bs 1M --qd 1 --direct --size "$RANK_SIZE" \
    $s $fs --keep -q --json "$OUT/r.json" > /dev/null
  python3 -c "import json; print(json.load(open('$OUT/r.json'))['bandwidth_bytes_per_second']/1048576)"
}
for layout in fpp shared; do
  for np in $RANKS; do
    bw_w=() bw_r=() pw=() pr=()
    for r in $(seq 1 "$ROUNDS"); do
      settle; bw_w+=("$(barge_bw "$np" "$layout" write)")
      settle; bw_r+=("$(barge_bw "$np" "$layout" read)")
      settle
      if [ -n "$IOR" ]; then read -r a b <<< "$(ior_bw "$np" "$layout")"; else read -r a b <<< "$(fio_bw "$np" "$layout")"; fi
      pw+=("$a"); pr+=("$b")
    done
    python3 - "$layout" "$np" "${bw_w[*]}" "${bw_r[*]}" "${pw[*]}" "${pr[*]}" <<'PY'
import sys, statistics as st
layout, np, bw, br, pw, pr = sys.argv[1:7]
f = lambda s: [float(x) for x in s.split()]
for what, b, p in (("write", f(bw), f(pw)), ("read", f(br), f(pr))):
    mb, mp = st.median(b), st.median(p)
    print(f"  {layout:6} np {np} {what:5}: barge {mb:8.1f} MiB/s (runs {' '.join(f'{x:.1f}' for x in b)})"
          f"   peer {mp:8.1f} (runs {' '.join(f'{x:.1f}' for x in p)})   barge/peer {mb / mp:.3f}")
PY
  done
done
