#!/usr/bin/env bash
# barge copy --tune: the probe on a tree of many small files (sample copies by the engine) and
# on large files (region copies), what it tried and chose in the report, its time bounded,
# no scratch left behind, the copy exact; a tiny tree keeps the defaults and says so.
set -euo pipefail
BARGE=$(realpath "$1")
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d /tmp/barge-tune-test.XXXXXX)
trap 'rm -rf "$T"' EXIT
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR

check_report() {  # REPORT METHOD MAX_SECONDS
  python3 - "$@" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
t = j["tune"]
assert j["exit_code"] == 0, j
assert t["method"] == sys.argv[2], t
c = t["chosen"]
assert c["chunk_bytes"] > 0 and c["queue_depth"] > 0 and c["threads"] > 0, c
assert isinstance(c["direct"], bool)
if t["method"] == "none":
    assert t["probes"] == [] and "too small" in t["note"], t
    sys.exit(0)
p = t["probes"]
first = 1 if t["method"] == "sample copy" else 0
assert len(p) >= first + 1, p
# A probe stops where its budget says so, and the note says which bound stopped it.
if len(p) < first + 5:
    assert "stopped the probe" in t["note"], t["note"]
if first:
    assert p[0]["change"] == "calibration", p[0]
assert p[first]["change"] == "defaults", p
for q in p:
    assert q["bytes"] > 0 and q["seconds"] > 0, q
    assert abs(q["bytes_per_second"] - q["bytes"] / q["seconds"]) < 1e-6 * q["bytes_per_second"]
    if t["method"] == "sample copy":
        assert q["files"] > 0, q
# The choice is the defaults or a setting that was probed.
probed = [(q["chunk_bytes"], q["queue_depth"], q["threads"], q["direct"]) for q in p]
assert (c["chunk_bytes"], c["queue_depth"], c["threads"], c["direct"]) in probed, (c, probed)
assert 0 < t["seconds"] <= float(sys.argv[3]), t["seconds"]
assert j["seconds"] >= t["seconds"], "the probe is part of the run's time"
PY
}
no_scratch() { [ -z "$(find "$T" -name '.barge-tune.*')" ] || fail "scratch left: $(find "$T" -name '.barge-tune.*')"; }

# Many small files: sample copies.
"$BARGE" gen "$T/small" --profile small --size 40M --files 6000 -q
"$BARGE" copy --tune --tune-seconds 2 --report "$T/s.json" "$T/small" "$T/s-out" 2> "$T/s.err"
grep -q "^barge: tune: chunk" "$T/s.err" || fail "no tune line: $(cat "$T/s.err")"
grep -q "^barge:   probe defaults" "$T/s.err" || fail "no probe lines: $(cat "$T/s.err")"
check_report "$T/s.json" "sample copy" 8
same_tree "$T/small" "$T/s-out" "copy --tune (small files)"
no_scratch

# Large files: region copies.
"$BARGE" gen "$T/large" --profile large --size 300M -q
"$BARGE" copy --tune --tune-seconds 2 --report "$T/l.json" "$T/large" "$T/l-out" 2> "$T/l.err"
check_report "$T/l.json" "region copy" 8
same_tree "$T/large" "$T/l-out" "copy --tune (large files)"
no_scratch

# A tiny tree: nothing to gain, the defaults are kept.
"$BARGE" gen "$T/tiny" --profile small --size 1M --files 20 -q
"$BARGE" copy --tune --report "$T/t.json" "$T/tiny" "$T/t-out" 2> /dev/null
check_report "$T/t.json" none 0
same_tree "$T/tiny" "$T/t-out" "copy --tune (tiny)"

# Bad input: one line, exit 2.
rc=0
"$BARGE" copy --tune --tune-seconds 0.1 "$T/tiny" "$T/x" 2> "$T/e" || rc=$?
[ "$rc" = 2 ] && [ "$(wc -l < "$T/e")" = 1 ] && grep -q -- "--tune-seconds" "$T/e" \
  || fail "--tune-seconds 0.1: $rc $(cat "$T/e")"
[ ! -e "$T/x" ] || fail "a refused copy wrote $T/x"

# Under mpirun (--tune=true: mpirun takes a bare --tune for its own): both ranks probe their
# shares at once, rank 0 reports, the copy is exact.
for kind in small large; do
  timeout -s KILL 120 mpirun -np 2 "$BARGE" copy --tune=true --tune-seconds 2 --report "$T/m-$kind.json" \
    "$T/$kind" "$T/m-$kind" 2> "$T/m-$kind.err" || fail "mpirun copy --tune: $(cat "$T/m-$kind.err")"
  [ "$(grep -c "^barge: tune: chunk" "$T/m-$kind.err")" = 1 ] || fail "mpirun: $(cat "$T/m-$kind.err")"
  method="sample copy"
  [ "$kind" = large ] && method="region copy"
  check_report "$T/m-$kind.json" "$method" 8
  python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["tune"]; assert "2 ranks probed" in t["note"], t' \
    "$T/m-$kind.json"
  same_tree "$T/$kind" "$T/m-$kind" "copy --tune under mpirun ($kind)"
  no_scratch
done
echo "copy_tune: PASS"
