#!/usr/bin/env bash
# barge bench meta end to end: every mdtest phase, counts summed across mpirun -np 2 ranks,
# latency percentiles per phase, stonewall with wear-out, nothing left behind, bad input.
set -euo pipefail
BARGE=$(realpath "$1")
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d /tmp/barge-meta-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
mkdir -p "$T/d"

timeout -s KILL 120 mpirun -np 2 "$BARGE" bench meta "$T/d" --files 500 --dirs 200 --bytes 4K \
  --json "$T/m.json" > "$T/m.out"
grep -q "file_create" "$T/m.out" || fail "no phase table"
[ -z "$(ls "$T/d")" ] || fail "left behind: $(ls "$T/d")"
python3 - "$T/m.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["ranks"] == 2 and j["errors"] == {}, j
ph = {p["name"]: p for p in j["phases"]}
want = {"tree_create": 6, "dir_create": 400, "dir_stat": 400, "dir_remove": 400,
        "file_create": 1000, "file_stat": 1000, "file_read": 1000, "file_remove": 1000,
        "tree_remove": 6}
assert [p["name"] for p in j["phases"]] == list(want), [p["name"] for p in j["phases"]]
for name, n in want.items():
    p = ph[name]
    assert p["ops"] == n == p["latency_ns"]["count"], (name, p["ops"], n)
    l = p["latency_ns"]
    assert 0 < l["min"] <= l["p50"] <= l["p99"] <= l["max"], (name, l)
    assert abs(p["ops_per_second"] - p["ops"] / p["seconds"]) < 1e-6 * p["ops_per_second"]
PY

# Stonewall: creation stops after 0.3 s, then every rank wears out to the busiest's count.
timeout -s KILL 120 mpirun -np 2 "$BARGE" bench meta "$T/d" --files 2000000 --stonewall 0.3 \
  --json "$T/s.json" > /dev/null
[ -z "$(ls "$T/d")" ] || fail "stonewall run left $(ls "$T/d")"
python3 - "$T/s.json" <<'PY'
import json, sys
ph = {p["name"]: p for p in json.load(open(sys.argv[1]))["phases"]}
c = ph["file_create"]
assert "stonewall" in c and c["stonewall"]["ops"] <= c["ops"] < 2000000 * 2, c
assert c["ops"] % 2 == 0 and ph["file_remove"]["ops"] == c["ops"], (c["ops"], ph["file_remove"]["ops"])
assert 0.25 < c["stonewall"]["seconds"] < 2, c["stonewall"]
PY

rc=0
"$BARGE" bench meta "$T/nope" --files 10 2> "$T/e" || rc=$?
[ "$rc" = 2 ] && [ "$(wc -l < "$T/e")" = 1 ] && grep -q "$T/nope" "$T/e" || fail "missing path: $rc $(cat "$T/e")"
rc=0
"$BARGE" bench meta "$T/d" --files 0 2> "$T/e" || rc=$?
[ "$rc" = 2 ] && grep -q -- "--files" "$T/e" || fail "--files 0: $rc $(cat "$T/e")"
echo "bench_meta: all checks passed"
