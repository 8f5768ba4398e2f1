#!/usr/bin/env bash
# barge migrate plan / run / status end to end:
#   - plan: the JSON contract, the tree's measurements (hard links, sparse, special files),
#     the HTML page drawn by headless Chromium (its size histograms), plan after a pass;
#   - run against a live source: a background writer creates, appends, truncates, renames
#     and deletes files and rewrites one large file in place over and over (each version a
#     single byte value): DST never holds a mixed version, and once the writer stops one more
#     run makes every SRC entry exact in DST (content and metadata, hard links, sparse files);
#   - run under mpirun -np 2;
#   - a run stopped by SIGTERM exits 75 and the same command resumes it;
#   - status: text, JSON fields, Prometheus metrics checked by prometheus_client's parser;
#   - bad input: one line, exit 2.
set -euo pipefail
BARGE=$(realpath "$1")
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d /tmp/barge-migrate-test.XXXXXX)
writer=""
cleanup() {
  [ -z "$writer" ] || kill "$writer" 2>/dev/null || true
  rm -rf "$T"
}
trap cleanup EXIT
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
m() { timeout -s KILL 300 "$BARGE" migrate "$@"; }
json() { python3 -c "import json,sys; j=json.load(open('$1')); print($2)"; }

expect2() {  # PATTERN CMD...
  local pat=$1 rc=0
  shift
  "$@" > /dev/null 2> "$T/e" || rc=$?
  [ "$rc" = 2 ] && [ "$(wc -l < "$T/e")" = 1 ] && grep -q -- "$pat" "$T/e" \
    || fail "$*: want exit 2 and one line with '$pat', got $rc: $(cat "$T/e")"
}

# every entry of SRC is in DST, equal (content, mode, owner, ns mtime, hard links, symlinks);
# DST may hold more (deletions wait for the cutover)
src_in_dst() {
  local out
  out=$(rsync -aHAXn --itemize-changes --modify-window=-1 --checksum "$1/" "$2/" | grep -v '^\.d' || true)
  [ -z "$out" ] || fail "$3: SRC entries differ in DST: $(echo "$out" | head -5)"
}

# --- a source with the awkward parts ---
"$BARGE" gen -q --profile mixed --size 48M --files 3000 "$T/src"
mkdir -p "$T/src/special"
echo linked > "$T/src/special/a"
ln "$T/src/special/a" "$T/src/special/b"
truncate -s 32M "$T/src/special/sparse"
printf 'tail' >> "$T/src/special/sparse"
ln -s ../special/a "$T/src/special/link"
mkfifo "$T/src/special/fifo"
python3 -c "open('$T/src/hot','wb').write(bytes([0]) * (96 << 20))"

# --- plan: contract, measurements, HTML ---
m plan "$T/src" "$T/dst" --state "$T/st" --json "$T/plan.json" --html "$T/plan.html" \
  --probe-seconds 2 > "$T/plan.out"
grep -q "full copy" "$T/plan.out" || fail "plan: no prediction: $(cat "$T/plan.out")"
python3 - "$T/plan.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for k in ("files", "bytes", "predicted_full_copy_seconds"):
    assert k in j, k
assert "predicted_cutover_seconds" not in j, "a cutover prediction before any pass"
t = j["tree"]
assert j["files"] == t["files"] == 3000 + 3 + 1, j["files"]
assert t["hardlinked_files"] == 2 and t["hardlink_groups"] == 1, t
assert t["sparse_files"] >= 1 and t["specials"] == 1 and t["symlinks"] >= 1, t
assert sum(b["files"] for b in t["size_histogram"]) == t["files"]
assert sum(b["bytes"] for b in t["size_histogram"]) == j["bytes"]
assert t["large_files"] == 1 and t["large_bytes"] == 96 << 20, t
assert j["rates"]["probed"], j["rates"]
assert 0 < j["predicted_full_copy_seconds"] < 120, j["predicted_full_copy_seconds"]
PY
[ -f "$T/st/plan.json" ] && [ -f "$T/st/state.json" ] || fail "plan: no state written"
[ -z "$(ls -A "$T/dst")" ] || fail "plan left something in DST: $(ls -A "$T/dst")"
if command -v chromium > /dev/null; then
  timeout -s KILL 60 chromium --headless --no-sandbox --disable-gpu --dump-dom \
    "file://$T/plan.html" > "$T/dom.html" 2> /dev/null || fail "chromium could not open the plan"
  python3 - "$T/dom.html" <<'PY'
import sys, re
dom = open(sys.argv[1]).read()
for chart in ("size-files", "size-bytes"):
    m = re.search(r'<svg[^>]*id="%s".*?</svg>' % chart, dom, re.S)
    assert m, chart + " missing"
    assert m.group(0).count('class="bar"') >= 3, chart + ": too few bars"
PY
  timeout -s KILL 60 chromium --headless --no-sandbox --disable-gpu --screenshot="$T/plan.png" \
    --window-size=900,1400 "file://$T/plan.html" > /dev/null 2>&1 || fail "no screenshot"
  [ "$(stat -c %s "$T/plan.png")" -gt 10000 ] || fail "the screenshot is empty"
else
  fail "chromium is missing (scripts/setup installs it)"
fi

# --- run against a live source ---
touch "$T/src/grows" "$T/src/shrinks"
python3 - "$T/src" "$T/stop" > "$T/writer.log" 2>&1 <<'PY' &
import os, sys, time
src, stop = sys.argv[1], sys.argv[2]
hot = os.path.join(src, "hot")
size = os.path.getsize(hot)
v = 1
os.makedirs(os.path.join(src, "new"), exist_ok=True)
while not os.path.exists(stop):
    with open(hot, "r+b") as f:  # in place, one byte value per version, a chunk at a time
        for off in range(0, size, 8 << 20):
            f.seek(off)
            f.write(bytes([v % 250 + 1]) * (8 << 20))
            time.sleep(0.002)
    with open(os.path.join(src, "new", "f%d" % v), "wb") as f:
        f.write(os.urandom(1000 + v))
    with open(os.path.join(src, "grows"), "ab") as f:
        f.write(b"x" * 4096)
    with open(os.path.join(src, "shrinks"), "wb") as f:
        f.write(b"y" * (100000 - v))
    if v > 3 and os.path.exists(os.path.join(src, "new", "f%d" % (v - 3))):
        os.rename(os.path.join(src, "new", "f%d" % (v - 3)), os.path.join(src, "new", "r%d" % v))
    if v > 6 and os.path.exists(os.path.join(src, "new", "r%d" % (v - 2))):
        os.unlink(os.path.join(src, "new", "r%d" % (v - 2)))
    v += 1
print("versions", v)
PY
writer=$!
sleep 0.5
m run --state "$T/st" --max-passes 4 --metrics "$T/metrics.prom" --metrics-interval 0.2 \
  > "$T/run1.out" 2> "$T/run1.err" || rc=$?
[ "${rc:-0}" = 0 ] || fail "run against a live source: exit $rc: $(cat "$T/run1.err")"
grep -q "pass 1 (full)" "$T/run1.out" || fail "run: no full pass: $(cat "$T/run1.out")"
# the hot file in DST is one version, never a mix
if [ -e "$T/dst/hot" ]; then
  python3 -c "
d = open('$T/dst/hot','rb').read()
assert len(set(d)) == 1, 'mixed versions in DST/hot: %s' % sorted(set(d))[:5]"
fi
retried=$(python3 -c "
import json; print(sum(json.loads(l)['files_retried'] for l in open('$T/st/journal.jsonl')))")
[ "$retried" -ge 1 ] || fail "no file was seen changing while being read"
touch "$T/stop"; wait "$writer"; writer=""
m status --state "$T/st" --json "$T/s1.json" > /dev/null
m run --state "$T/st" > "$T/run2.out" 2> "$T/run2.err" || fail "run after the writer stopped: $(cat "$T/run2.err")"
src_in_dst "$T/src" "$T/dst" "after the writer stopped"
[ "$(stat -c %i "$T/dst/special/a")" = "$(stat -c %i "$T/dst/special/b")" ] || fail "hard link lost"
[ "$(stat -c %b "$T/dst/special/sparse")" -lt 1000 ] || fail "sparse file filled in"
[ -p "$T/dst/special/fifo" ] || fail "fifo not made"
python3 - "$T/st" "$T/dst" <<'PY'
import json, sys, subprocess
st, dst = sys.argv[1], sys.argv[2]
passes = [json.loads(l) for l in open(st + "/journal.jsonl")]
assert [p["pass"] for p in passes] == list(range(1, len(passes) + 1)), passes
assert passes[0]["kind"] == "full" and all(p["kind"] == "catch-up" for p in passes[1:])
assert passes[0]["files_changed"] >= 3000, passes[0]
state = json.load(open(st + "/state.json"))
assert state["phase"] == "ready" and state["pass_running"] == 0, state
# the state's manifest holds every file of DST the passes copied, with its real checksum
man = {}
for line in open(st + "/manifest"):
    if line.startswith("#"): continue
    h, p = line.rstrip("\n").split("  ", 1)
    man[p] = h
for p in ("hot", "grows", "special/a"):
    out = subprocess.run(["xxhsum", "-H2", dst + "/" + p], capture_output=True, text=True).stdout
    assert out.split()[0] == man[p], (p, out, man.get(p))
PY

# --- status: text, JSON, metrics ---
m status --state "$T/st" > "$T/status.out"
grep -q "phase        ready" "$T/status.out" || fail "status: $(cat "$T/status.out")"
m status --state "$T/st" --json - > "$T/status.json"
m status --state "$T/st" --metrics "$T/metrics2.prom" > /dev/null
python3 - "$T/status.json" "$T/s1.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
for k in ("phase", "passes", "bytes_done", "predicted_remaining_seconds"):
    assert k in j, k
assert j["phase"] == "ready" and j["passes"] >= 3 and j["bytes_done"] >= 48 << 20, j
assert j["predicted_remaining_seconds"] is not None and j["predicted_remaining_seconds"] >= 0
assert json.load(open(sys.argv[2]))["phase"] == "ready"
PY
for f in "$T/metrics.prom" "$T/metrics2.prom"; do
  /usr/bin/python3 - "$f" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families
fams = {f.name: f for f in text_string_to_metric_families(open(sys.argv[1]).read())}
for n in ("barge_migrate_phase", "barge_migrate_passes", "barge_migrate_bytes_done",
          "barge_migrate_source_files"):
    assert n in fams, (n, sorted(fams))
phases = {s.labels["phase"]: s.value for s in fams["barge_migrate_phase"].samples}
assert sum(phases.values()) == 1, phases
PY
done

# --- plan after passes: the change rate and the cutover's prediction ---
echo more > "$T/src/after"
m plan "$T/src" "$T/dst" --state "$T/st" --json "$T/plan2.json" --no-probe > "$T/plan2.out"
python3 - "$T/plan2.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["predicted_cutover_seconds"] >= 0, j
assert j["delta"]["files_changed"] == 1, j["delta"]
PY
[ ! -e "$T/dst/after" ] || fail "plan's dry run copied a file"

# --- cutover: a failing freeze changes nothing; a moving SRC is refused; then exact ---
before=$(cat "$T/st/state.json")
expect2 "freeze-cmd failed (exit 3)" "$BARGE" migrate cutover --state "$T/st" --freeze-cmd "exit 3"
[ "$(cat "$T/st/state.json")" = "$before" ] || fail "a failed freeze changed the state"
[ ! -e "$T/dst/after" ] || fail "a failed freeze copied a file"
( for i in $(seq 40); do echo "$i" > "$T/src/ticker"; sleep 0.1; done ) &
ticker=$!
expect2 "is still changing" "$BARGE" migrate cutover --state "$T/st" --quiesce-seconds 1
wait "$ticker"
m cutover --state "$T/st" --freeze-cmd "touch $T/frozen" --unfreeze-cmd "touch $T/unfrozen" \
  > "$T/cut.out" 2> "$T/cut.err" || fail "cutover: exit $?: $(cat "$T/cut.err")"
[ -e "$T/frozen" ] && [ -e "$T/unfrozen" ] || fail "cutover: freeze or unfreeze not run"
grep -q "DST equals SRC" "$T/cut.out" || fail "cutover: $(cat "$T/cut.out")"
grep -q "downtime .* (predicted " "$T/cut.out" || fail "cutover: no downtime: $(cat "$T/cut.out")"
same_tree "$T/src" "$T/dst" "after the cutover"
python3 - "$T/st" <<'PY'
import json, sys
c = json.load(open(sys.argv[1] + "/cutover.json"))
assert c["verify"]["ok"] and c["verify"]["from_manifest"] == c["verify"]["files"], c["verify"]
assert c["pass"]["kind"] == "cutover" and c["pass"]["entries_deleted"] >= 1, c["pass"]
assert c["downtime_seconds"] > 0 and c["predicted_downtime_seconds"] is not None, c
assert json.load(open(sys.argv[1] + "/state.json"))["phase"] == "done"
PY
expect2 "cut over already" "$BARGE" migrate cutover --state "$T/st"

# --- rollback: to the DST of each pass, exactly ---
R=$T/rb
"$BARGE" gen -q --profile mixed --size 8M --files 400 "$R/src"
ln "$R/src/$(cd "$R/src" && find . -type f | sort | head -1)" "$R/src/hardlink"
m plan "$R/src" "$R/dst" --state "$R/st" --no-probe -q
m run --state "$R/st" --max-passes 1 -q
cp -a "$R/dst" "$R/ref1"
edit() {  # changes of every kind: content, metadata only, deletion, new, type change
  local f g
  f=$(cd "$R/src" && find . -type f -name 'f*' | sort | sed -n "${1}p")
  g=$(cd "$R/src" && find . -type f -name 'f*' | sort | sed -n "$(($1 + 7))p")
  echo "edit $1" >> "$R/src/$f"
  chmod 600 "$R/src/$g"
  rm -f "$R/src/$(cd "$R/src" && find . -type f -name 'f*' | sort | sed -n "$(($1 + 20))p")"
  mkdir -p "$R/src/new$1" && echo "$1" > "$R/src/new$1/x"
  rm -f "$R/src/hardlink"; echo "now a file $1" > "$R/src/hardlink"
}
edit 3
m run --state "$R/st" --max-passes 2 -q
cp -a "$R/dst" "$R/ref2"
edit 5
m cutover --state "$R/st" --freeze-cmd true -q || fail "rollback tree: cutover exit $?"
same_tree "$R/src" "$R/dst" "rollback tree after its cutover"
m rollback --state "$R/st" > "$R/rb1.out" || fail "rollback: exit $?"
same_tree "$R/ref2" "$R/dst" "rolled back to before the cutover"
[ "$(json "$R/st/state.json" 'j["phase"]')" = ready ] || fail "rollback: phase not ready"
m rollback --state "$R/st" --to-pass 1 > /dev/null || fail "rollback --to-pass 1: exit $?"
same_tree "$R/ref1" "$R/dst" "rolled back to pass 1"
expect2 "to-pass 1" "$BARGE" migrate rollback --state "$R/st" --to-pass 1
# a migration rolled back can go on: a new pass and a cutover make DST SRC again
m cutover --state "$R/st" --freeze-cmd true -q || fail "cutover after rollback: exit $?"
same_tree "$R/src" "$R/dst" "cutover after a rollback"

# --- under mpirun -np 2 ---
timeout -s KILL 120 mpirun -np 2 "$BARGE" migrate plan "$T/src" "$T/dstm" --state "$T/stm" -q
timeout -s KILL 300 mpirun -np 2 "$BARGE" migrate run --state "$T/stm" > "$T/mpi.out" 2>&1 \
  || fail "run under mpirun: $(cat "$T/mpi.out")"
[ "$(grep -c "pass 1 (full):" "$T/mpi.out")" = 1 ] || fail "rank 0 only should report: $(cat "$T/mpi.out")"
src_in_dst "$T/src" "$T/dstm" "under mpirun"

# --- stopped by SIGTERM, resumed by the same command ---
"$BARGE" gen -q --profile mixed --size 600M --files 6000 "$T/big"
m plan "$T/big" "$T/bigdst" --state "$T/stb" --no-probe -q
"$BARGE" migrate run --state "$T/stb" -q > /dev/null 2> "$T/term.err" &
job=$!
sleep 0.6
kill -TERM "$job"
rc=0; wait "$job" || rc=$?
if [ "$rc" = 75 ]; then
  [ "$(json "$T/stb/state.json" 'j["pass_running"]')" = 1 ] || fail "SIGTERM: the pass is not kept as running"
  grep -q "run the same command again" "$T/term.err" || fail "SIGTERM: no hint: $(cat "$T/term.err")"
else
  [ "$rc" = 0 ] || fail "SIGTERM: exit $rc: $(cat "$T/term.err")"
  echo "migrate_test: the run ended before SIGTERM; resume not exercised this time" >&2
fi
m run --state "$T/stb" -q || fail "the resumed run: exit $?"
src_in_dst "$T/big" "$T/bigdst" "resumed after SIGTERM"
[ -z "$(find "$T/bigdst" -name '.barge*')" ] || fail "temporaries left: $(find "$T/bigdst" -name '.barge*')"

# --- bad input: one line, exit 2 ---
expect2 "no migration there" "$BARGE" migrate run --state "$T/nothing"
expect2 "no migration there" "$BARGE" migrate status --state "$T/nothing"
expect2 "until-delta 12x" "$BARGE" migrate run --state "$T/st" --until-delta 12x
expect2 "not a directory" "$BARGE" migrate plan "$T/missing" "$T/d9" --state "$T/s9"
expect2 "holds the migration of" "$BARGE" migrate plan "$T/big" "$T/dst" --state "$T/st" --no-probe
expect2 "overlap" "$BARGE" migrate plan "$T/src" "$T/src/inside" --state "$T/s8" --no-probe
echo "migrate_test: ok"
