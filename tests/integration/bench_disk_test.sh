#!/usr/bin/env bash
# barge bench disk end to end: the JSON contract, the plot (parsed as SVG and drawn by a real
# browser), mpirun -np 2 summing both ranks exactly, stonewall with wear-out, the knee
# search, steady state, and every bad input: one line, exit 2, nothing left behind.
set -euo pipefail
BARGE=$(realpath "$1")
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d /tmp/barge-bench-test.XXXXXX)
MNT=""
cleanup() {
  [ -n "$MNT" ] && umount "$MNT" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
mkdir -p "$T/d"
bench() { timeout -s KILL 120 "$BARGE" bench disk "$@"; }
json() { python3 -c "import json,sys; j=json.load(open('$1')); print($2)"; }

# 1. One rank: the contract's fields, and figures that add up.
bench "$T/d" --rw write --bs 256K --qd 8 --size 64M --json "$T/w.json" > "$T/w.out"
grep -q "throughput" "$T/w.out" || fail "no summary"
[ -z "$(ls "$T/d")" ] || fail "files left behind without --keep"
python3 - "$T/w.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for k in ["bandwidth_bytes_per_second", "iops", "latency_ns", "intervals", "ranks", "errors"]:
    assert k in j, k
for k in ["min", "mean", "p50", "p90", "p99", "p99_9", "p99_99", "max"]:
    assert k in j["latency_ns"], k
    for iv in j["intervals"]:
        assert k in iv["latency_ns"], ("interval", k)
lat = j["latency_ns"]
assert lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p99_9"] <= lat["max"], lat
assert j["bytes"] == 64 << 20 and j["ops"] == 256, (j["bytes"], j["ops"])
assert sum(b[2] for b in j["latency_bins"]) == j["ops"]
assert sum(iv["bytes"] for iv in j["intervals"]) == j["bytes"]
assert j["errors"] == {} and len(j["ranks"]) == 1
bw = j["bytes"] / j["seconds"]
assert abs(j["bandwidth_bytes_per_second"] - bw) < 1e-6 * bw
PY

# 1b. SQPOLL (a kernel thread submits): buffered 1 MiB reads at depth 32, where an operation
# can complete before the poller frees its submission entry; every operation counted.
bench "$T/d" --rw write --bs 1M --qd 32 --size 256M --keep -q > /dev/null
for _ in 1 2 3; do
  bench "$T/d" --rw read --bs 1M --qd 32 --size 256M --sqpoll --keep -q --json "$T/sq.json" \
    > /dev/null 2> "$T/sq.err" || fail "--sqpoll read: $(cat "$T/sq.err")"
  [ "$(json "$T/sq.json" 'j["ops"], j["errors"]')" = "256 {}" ] || fail "--sqpoll: $(cat "$T/sq.json")"
done
rm -f "$T/d"/*

# 2. The plot: a time-based run with a timeline, parsed as SVG with its four series.
bench "$T/d" --rw randread --bs 4K --qd 16 --size 32M --runtime 3 --interval 0.5 --plot "$T/p.svg" \
  --json "$T/p.json" > /dev/null 2> "$T/p.err"
[ "$(grep -c '^bench disk: \[' "$T/p.err")" -ge 5 ] || fail "no live interval lines: $(cat "$T/p.err")"
python3 - "$T/p.svg" "$T/p.json" <<'PY'
import json, sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
assert root.tag == "{http://www.w3.org/2000/svg}svg", root.tag
series = {p.get("data-series"): p for p in root.iter("{http://www.w3.org/2000/svg}polyline")}
assert set(series) == {"bandwidth", "p50", "p99", "p99_9"}, series.keys()
n = len(json.load(open(sys.argv[2]))["intervals"])
assert n >= 5, n
for name, p in series.items():
    pts = p.get("points").split()
    assert len(pts) == n, (name, len(pts), n)
PY
if command -v chromium > /dev/null; then
  # A real browser draws it: the screenshot holds the series' colours.
  timeout -s KILL 60 chromium --headless --no-sandbox --disable-gpu --screenshot="$T/p.png" \
    --window-size=800,560 "file://$T/p.svg" > /dev/null 2>&1 || fail "chromium could not render the plot"
  python3 - "$T/p.png" <<'PY'
import sys, zlib, struct
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
pos, idat, w, h = 8, b"", 0, 0
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
        assert depth == 8 and ctype in (2, 6), (depth, ctype)
        bpp = 3 if ctype == 2 else 4
    if kind == b"IDAT":
        idat += body
    pos += 12 + n
raw = zlib.decompress(idat)
stride = w * bpp
prev = bytearray(stride)
colours = set()
for y in range(h):
    f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    prev = line
    for x in range(0, stride, bpp):
        colours.add(tuple(line[x:x + 3]))
def near(rgb):
    return any(all(abs(c - t) < 40 for c, t in zip(col, rgb)) for col in colours)
for name, rgb in {"bandwidth": (0x22, 0xaa, 0x77), "p50": (0x22, 0x77, 0xcc),
                  "p99": (0xee, 0x88, 0x00), "p99_9": (0xcc, 0x22, 0x22)}.items():
    assert near(rgb), ("series not drawn", name)
PY
else
  echo "bench_disk: chromium absent, the plot was checked as SVG only" >&2
fi

# 3. mpirun -np 2: the report is the exact sum of both ranks.
timeout -s KILL 120 mpirun -np 2 "$BARGE" bench disk "$T/d" --rw read --bs 128K --qd 4 --size 32M \
  --json "$T/m.json" > /dev/null
python3 - "$T/m.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
r = j["ranks"]
assert len(r) == 2 and [x["rank"] for x in r] == [0, 1], r
assert j["bytes"] == 2 * (32 << 20) == r[0]["bytes"] + r[1]["bytes"], j["bytes"]
assert j["ops"] == r[0]["ops"] + r[1]["ops"] == sum(b[2] for b in j["latency_bins"])
assert j["latency_ns"]["count"] == r[0]["latency_ns"]["count"] + r[1]["latency_ns"]["count"]
assert j["latency_ns"]["max"] == max(x["latency_ns"]["max"] for x in r)
assert j["latency_ns"]["min"] == min(x["latency_ns"]["min"] for x in r)
PY
[ -z "$(ls "$T/d")" ] || fail "files left behind by the MPI run"

# 4. Stonewall with wear-out across ranks and threads (shared file): every thread ends with the
#    count of the fastest, and both the stonewalled and the whole figures are reported.
timeout -s KILL 120 mpirun -np 2 "$BARGE" bench disk "$T/d" --shared-file --threads 2 --rw randread \
  --bs 4K --qd 4 --size 16M --runtime 30 --stonewall 1 --json "$T/s.json" > "$T/s.out"
grep -q "stonewall" "$T/s.out" || fail "no stonewall line"
python3 - "$T/s.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
s, r = j["stonewall"], j["ranks"]
assert r[0]["ops"] == r[1]["ops"], [x["ops"] for x in r]   # wear-out: equal counts
assert j["ops"] % 4 == 0 and s["ops"] <= j["ops"], (s["ops"], j["ops"])
assert 0.9 < s["seconds"] < 2.5 and j["seconds"] < 10, (s["seconds"], j["seconds"])
PY

# 5. The knee: queue depths 1, 2, 4, ... each measured; the knee is one of them.
bench "$T/d" --rw randread --bs 4K --size 16M --runtime 0.5 --find-knee --max-qd 64 \
  --json "$T/k.json" > "$T/k.out" 2>&1
grep -q "knee" "$T/k.out" || fail "no knee line"
python3 - "$T/k.json" <<'PY'
import json, sys
k = json.load(open(sys.argv[1]))["knee"]
depths = [s["queue_depth"] for s in k["steps"]]
assert depths == [1 << i for i in range(len(depths))] and len(depths) >= 2, depths
assert k["queue_depth"] is None or k["queue_depth"] in depths
assert k["queue_depth"] is None or k["reason"], k
PY
bench "$T/d" --rw randread --bs 4K --size 16M --runtime 0.5 --find-knee --latency-target 1ns \
  --json "$T/k2.json" > /dev/null 2>&1
[ "$(json "$T/k2.json" 'len(j["knee"]["steps"])')" = 1 ] || fail "latency target did not stop the search"

# 6. Steady state ends a long run early.
bench "$T/d" --rw read --bs 64K --size 16M --runtime 60 --interval 0.2 --steady-state 60 \
  --steady-window 1 --json "$T/ss.json" > /dev/null
[ "$(json "$T/ss.json" 'j["steady_state_reached"] and j["seconds"] < 30')" = True ] ||
  fail "steady state did not stop the run"

# 7. Bad input: one line, exit 2, nothing left behind.
expect_refused() {  # WHAT PATTERN ARGS...
  local what=$1 pattern=$2 rc=0
  shift 2
  "$@" > "$T/bad.out" 2> "$T/bad.err" || rc=$?
  [ "$rc" = 2 ] || fail "$what: exit $rc, not 2: $(cat "$T/bad.err")"
  [ "$(wc -l < "$T/bad.err")" = 1 ] || fail "$what: not one line: $(cat "$T/bad.err")"
  grep -q -- "$pattern" "$T/bad.err" || fail "$what: '$pattern' not in: $(cat "$T/bad.err")"
  [ -z "$(ls "$T/d")" ] || fail "$what: left $(ls "$T/d")"
}
expect_refused "unaligned --direct" "direct I/O alignment" bench "$T/d" --direct --bs 1000 --size 1M
expect_refused "size 0" "--size" bench "$T/d" --size 0
expect_refused "size < bs" "smaller than --bs" bench "$T/d" --bs 1M --size 512K
expect_refused "missing path" "$T/nope" bench "$T/nope" --size 1M
touch "$T/file"
expect_refused "path is a file" "not a directory" bench "$T/file" --size 1M
expect_refused "unknown --rw" "--rw" bench "$T/d" --rw sideways --size 1M
chmod 755 "$T"
expect_refused "no permission" "Permission denied" setpriv --reuid=nobody --regid=nogroup \
  --clear-groups "$BARGE" bench disk "$T/d" --size 1M
MNT="$T/small"
mkdir -p "$MNT"
mount -t tmpfs -o size=8m tmpfs "$MNT"
expect_refused_in() {  # like expect_refused, for a directory other than $T/d
  local dir=$1
  shift
  local rc=0
  "$@" > "$T/bad.out" 2> "$T/bad.err" || rc=$?
  [ "$rc" = 2 ] || fail "full: exit $rc, not 2: $(cat "$T/bad.err")"
  [ "$(wc -l < "$T/bad.err")" = 1 ] || fail "full: not one line: $(cat "$T/bad.err")"
  grep -q "No space left on device" "$T/bad.err" || fail "full: $(cat "$T/bad.err")"
  [ -z "$(ls "$dir")" ] || fail "full: left $(ls "$dir")"
}
# Full at preallocation, and full in the middle of the run (no preallocation).
expect_refused_in "$MNT" bench "$MNT" --rw write --size 32M
expect_refused_in "$MNT" bench "$MNT" --rw write --size 32M --no-fallocate
grep -q "write at offset" "$T/bad.err" || fail "the mid-run failure does not name the offset"
echo "bench_disk: all checks passed"
