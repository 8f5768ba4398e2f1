#!/usr/bin/env bash
# barge copy under mpirun with 1-4 ranks must give exactly what a single process gives:
# the same tree (checked with rsync -aHAX --checksum as the oracle and a byte-for-byte diff)
# and the same checksum manifest. Also: a skewed tree (one large file, many small ones)
# spreads the large file's chunks over every rank; ranks given different arguments stop
# together with exit 2; bad input under mpirun is one line and exit 2; rank 0's progress
# shows the whole job's counters.
# Usage: mpi_copy_test.sh BARGE
set -euo pipefail
barge=$(readlink -f "${1:-build/barge}")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mpirun_n() { local n=$1; shift; mpirun -np "$n" --oversubscribe --bind-to none "$@"; }
work=$(mktemp -d /tmp/barge-mpi-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
same_tree() {  # rsync as the independent oracle: content, perms, owners, times, links
  local out
  out=$(rsync -aHAXn --delete --itemize-changes --modify-window=-1 --checksum "$1/" "$2/")
  [ -z "$out" ] || fail "trees differ ($1 vs $2): $(echo "$out" | head -5)"
}

# A generated mixed tree plus hand-made odd entries.
"$barge" gen "$work/src" --profile mixed --size 48M --seed 11 -q
mkdir -p "$work/src/odd dir/deeper"
printf 'x' > "$work/src/odd dir/new
line"
printf 'y' > "$work/src/odd dir/"$'\xff\xfe'
ln -s /nonexistent "$work/src/odd dir/dangling"
ln -s loop "$work/src/odd dir/loop"
head -c 5000000 /dev/urandom > "$work/src/odd dir/deeper/big"   # > --chunk-size: split over ranks
: > "$work/src/odd dir/empty"
mkfifo "$work/src/odd dir/fifo"
chown 1234:5678 "$work/src/odd dir/empty"
chmod 0751 "$work/src/odd dir"
# Hard links across directories, of a small file and of one split over ranks: every path is
# in the manifest (followers with their leader's checksum) and the manifest checks.
mkdir -p "$work/src/links"
echo shared > "$work/src/links/a"
ln "$work/src/links/a" "$work/src/links/b"
ln "$work/src/links/a" "$work/src/odd dir/c"
ln "$work/src/odd dir/deeper/big" "$work/src/links/big-too"
touch -d '2001-02-03 04:05:06.123456789' "$work/src/odd dir/deeper"

"$barge" copy -q --chunk-size 1M --checksum-manifest "$work/m1" "$work/src" "$work/one"
same_tree "$work/src" "$work/one"
"$barge" verify -q --manifest "$work/m1" "$work/one" || fail "np=1 (no mpirun): the manifest of a tree with hard links does not check"
for p in links/a links/b "odd dir/c" links/big-too "odd dir/deeper/big"; do
  grep -qF "  $p" "$work/m1" || fail "manifest lacks $p"
done
for np in 1 2 3 4; do
  mpirun_n "$np" "$barge" copy -q --chunk-size 1M --verify --checksum-manifest "$work/m-$np" \
    --report "$work/r-$np.json" "$work/src" "$work/np$np" || fail "np=$np exit $?"
  same_tree "$work/src" "$work/np$np"
  cmp -s "$work/m1" "$work/m-$np" || fail "np=$np manifest differs from the single-process one"
  "$barge" verify -q --manifest "$work/m-$np" "$work/np$np" || fail "np=$np verify"
  [ -z "$(find "$work/np$np" -name '.barge-tmp*')" ] || fail "np=$np left temporaries"
  python3 - "$work/r-$np.json" "$np" <<'PY' || fail "np=$np report"
import json, sys
r = json.load(open(sys.argv[1])); n = int(sys.argv[2])
assert r["exit_code"] == 0, r
if n > 1:
    assert len(r["ranks"]) == n, r["ranks"]
    assert sum(k["files"] for k in r["ranks"]) == r["files"], r
    assert 0 < r["balance"] <= 1
PY
  echo "np=$np: identical to the single-process copy"
done
# --resume over a complete copy lists every file once (hard-link followers in place too).
mpirun_n 2 "$barge" copy -q --resume --chunk-size 1M --checksum-manifest "$work/m-resume" \
  "$work/src" "$work/np2" || fail "--resume over a complete copy, with a manifest: exit $?"
cmp -s "$work/m1" "$work/m-resume" || fail "--resume's manifest differs from the copy's"

# Skewed tree: one file of 64 chunks and 2000 small files; every rank must get chunks.
mkdir -p "$work/skew"
head -c $((64 << 20)) /dev/urandom > "$work/skew/huge"
"$barge" gen "$work/skew/small" --profile small --size 16M --files 2000 --seed 2 -q
mpirun_n 4 "$barge" copy -q --chunk-size 1M --report "$work/skew.json" "$work/skew" "$work/skew-copy"
same_tree "$work/skew" "$work/skew-copy"
python3 - "$work/skew.json" <<'PY' || fail "skewed tree: a rank moved no chunk of the large file"
import json, sys
r = json.load(open(sys.argv[1]))
for k in r["ranks"]:
    assert k["bytes"] >= (1 << 20), k   # at least one 1 MiB chunk each
print("skewed tree: bytes per rank", [k["bytes"] for k in r["ranks"]], "balance", round(r["balance"], 2))
PY

# Progress across ranks: rank 0 prints the sums of every rank's counters, so each line's
# totals are the whole job's (2001 files, 80 MiB), not rank 0's share. --fsync slows the run
# enough for several lines at 0.1 s intervals.
mpirun_n 2 "$barge" copy --fsync --progress plain --progress-interval 0.1 "$work/skew" \
  "$work/skew-progress" 2> "$work/progress.log" || fail "progress run exit $?"
same_tree "$work/skew" "$work/skew-progress"
grep -q '^barge: copy .* files, .*/s, ETA' "$work/progress.log" || fail "no progress line: $(cat "$work/progress.log")"
if grep '^barge: copy .* files, .*/s, ETA' "$work/progress.log" | grep -v '/ 80.0 MiB, [0-9]* / 2001 files'; then
  fail "a progress line does not show the job's totals"
fi
echo "progress: $(grep -c 'ETA' "$work/progress.log") aggregate lines from rank 0"

# --exclude with a directory-only pattern across ranks: the directory "cache" goes, a file
# named "cache" stays (found by whichever rank lists its directory).
mkdir -p "$work/ex/a/cache/deep" "$work/ex/b"
echo data > "$work/ex/a/cache/deep/f"
echo file > "$work/ex/b/cache"
echo keep > "$work/ex/a/keep"
mpirun_n 2 "$barge" copy -q --exclude 'cache/' "$work/ex" "$work/ex-copy" || fail "exclude copy exit $?"
[ ! -e "$work/ex-copy/a/cache" ] || fail "excluded directory a/cache was copied"
[ -f "$work/ex-copy/b/cache" ] && [ -f "$work/ex-copy/a/keep" ] || fail "exclude left out too much"

# Different arguments on different ranks: all stop, exit 2, nothing written.
set +e
mpirun_n 2 bash -c 'if [ "$OMPI_COMM_WORLD_RANK" = 1 ]; then exec "$0" copy -q "$1" "$2-other"; else exec "$0" copy -q "$1" "$2"; fi' \
  "$barge" "$work/src" "$work/diffargs" 2>"$work/diffargs.err"
rc=$?
set -e
[ "$rc" = 2 ] || fail "different arguments: exit $rc, want 2"
grep -q "different arguments" "$work/diffargs.err" || fail "different arguments not named"
[ ! -e "$work/diffargs" ] && [ ! -e "$work/diffargs-other" ] || fail "different arguments: something was written"

# Bad input under mpirun: one line from rank 0, exit 2.
set +e
mpirun_n 3 "$barge" copy -q "$work/missing" "$work/x" 2>"$work/bad.err"
rc=$?
set -e
[ "$rc" = 2 ] || fail "missing source under mpirun: exit $rc"
[ "$(grep -c 'barge: error' "$work/bad.err")" = 1 ] || fail "missing source: want one error line, got: $(cat "$work/bad.err")"
echo "mpi copy: all checks passed"
