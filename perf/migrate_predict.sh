#!/usr/bin/env bash
# migrate plan's predicted full-copy time against the measured full pass, on a 4 GiB tree
# of mixed files on this machine's disk: the issue asks for ±25%; exits 1 outside it.
# Usage: perf/migrate_predict.sh build/barge   (about 3 minutes; run it alone: it times)
# Not in the test suite: on this VM the same copy varies by up to 2x between runs.
# After the probe, 65 s pass before the run: ext4 on this VM's discard-mounted disk slows
# the writes that follow a deletion (the probe removes its scratch) for about a minute.
set -euo pipefail
BARGE=$(realpath "$1")
fail() { echo "FAIL: $*" >&2; exit 1; }
base=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)/data
mkdir -p "$base"
T=$(mktemp -d "$base/migrate-predict.XXXXXX")  # on the disk, not /tmp (tmpfs on some hosts)
trap 'rm -rf "$T"' EXIT
"$BARGE" gen -q --profile mixed --size 4G "$T/src"
sync; sleep 5
"$BARGE" migrate plan "$T/src" "$T/dst" --state "$T/st" --json "$T/plan.json" > "$T/plan.out"
cat "$T/plan.out"
sync; sleep 65
"$BARGE" migrate run --state "$T/st" --max-passes 1 -q
python3 - "$T/plan.json" "$T/st/journal.jsonl" <<'PY'
import json, sys
predicted = json.load(open(sys.argv[1]))["predicted_full_copy_seconds"]
full = json.loads(open(sys.argv[2]).readline())
assert full["kind"] == "full"
ratio = predicted / full["seconds"]
print(f"migrate_predict: predicted {predicted:.2f} s, measured {full['seconds']:.2f} s, ratio {ratio:.3f}")
assert 0.75 <= ratio <= 1.25, f"prediction off by more than 25%: {ratio:.3f}"
PY
