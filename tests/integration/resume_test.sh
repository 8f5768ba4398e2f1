#!/usr/bin/env bash
# Resume after a stopped or killed job: SIGUSR1 (what Slurm sends before the time limit)
# and SIGTERM stop barge cleanly with exit 75 and a journal; kill -9 of the process (or of
# one rank, which takes the job down) leaves the journal as last flushed. In every case
# `barge copy --resume` with the same arguments finishes the copy without re-sending
# finished files or journaled chunks, the result equals the source exactly, and the
# journal and part files are gone afterwards. Also: without --resume, a rerun starts over
# and is still exact, and in place: a rerun of the command that created DST, with or without
# --resume, after a kill or even after a success (a requeued Slurm job), never nests SRC inside
# DST (the placement record beside DST says DST is the copy of SRC). A rank failing its writes
# stops all ranks within a fraction of a second.
# Usage: resume_test.sh BARGE
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
barge=$(readlink -f "${1:-build/barge}")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Journal flushes every 20 ms instead of every second, so a run can be stopped mid-way on a
# machine where the whole copy takes about a second.
export BARGE_JOURNAL_FLUSH_MS=20
work=$(mktemp -d /var/tmp/barge-resume-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
src=$work/src
mkdir -p "$src/sub"
head -c $((640 << 20)) /dev/urandom > "$src/big"
head -c $((200 << 20)) /dev/urandom > "$src/sub/big2"
"$barge" gen "$src/small" --profile small --size 8M --files 800 --seed 3 -q
sleep 1.1   # rsync (the oracle) leaves times of entries changed this second unset
total=$(du -sb "$src" | cut -f1)

launch() {  # launch NP ARGS... (NP=1: no mpirun)
  local np=$1; shift
  if [ "$np" = 1 ]; then "$barge" "$@"; else mpirun -np "$np" --oversubscribe --bind-to none "$barge" "$@"; fi
}
moved() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['bytes_transferred'])" "$1"; }

# After a success only the placement record is left of the journal.
journal_done() {  # journal_done DIR NAME
  local left
  left=$(ls -A "$1" 2>/dev/null | tr '\n' ' ')
  [ -z "$left" ] || [ "$left" = "placement " ] || fail "$2: journal not removed after success ($left)"
}

check_resume() {  # check_resume NAME NP SIGNAL [plain: rerun without --resume]
  local name=$1 np=$2 sig=$3 rerun=${4:---resume} rc
  local dst=$work/dst-$name
  sync
  set +e
  local cmd=("$barge" copy -q --chunk-size 256K --report "$work/$name-1.json" "$src" "$dst")
  [ "$np" = 1 ] || cmd=(mpirun -np "$np" --oversubscribe --bind-to none "${cmd[@]}")
  # Stop the run once its journal holds some chunks: USR1
  # and TERM go to barge (mpirun forwards them to every rank); KILL goes to barge alone, or
  # under mpirun to one rank, which takes the whole job down.
  "${cmd[@]}" 2>"$work/$name.err" &
  local pid=$! i
  for ((i = 0; i < 500; i++)); do
    [ "$(cat "$work/.barge-journal.dst-$name"/rank-*.log 2>/dev/null | wc -l)" -ge 40 ] && break
    sleep 0.005
  done
  if [ "$sig" = KILL ] && [ "$np" != 1 ]; then
    kill -9 "$(pgrep -P "$pid" -f -- "$barge" | head -1)"
  elif [ "$sig" = USR1-ONE-RANK ]; then  # the others learn of it with the progress sums
    kill -USR1 "$(pgrep -P "$pid" -f -- "$barge" | tail -1)"
  else
    kill -s "$sig" "$pid"
  fi
  wait "$pid"
  rc=$?
  set -e
  case "$sig" in
    USR1|TERM|USR1-ONE-RANK) [ "$rc" = 75 ] || fail "$name: stopped run exit $rc, want 75 (resumable): $(tail -3 "$work/$name.err")" ;;
    KILL) [ "$rc" != 0 ] || fail "$name: the run finished before it was killed; make the data bigger" ;;
  esac
  [ -d "$work/.barge-journal.dst-$name" ] || fail "$name: no journal left for --resume"
  [ "$rerun" = plain ] && rerun=-q
  launch "$np" copy -q "$rerun" --chunk-size 256K --report "$work/$name-2.json" \
    --checksum-manifest "$work/$name-2.xxh" "$src" "$dst" || fail "$name: rerun exit $?"
  [ ! -e "$dst/src" ] || fail "$name: the rerun nested SRC inside the DST it created"
  local out
  out=$(rsync -aHAXn --delete --itemize-changes --modify-window=-1 --checksum "$src/" "$dst/")
  [ -z "$out" ] || fail "$name: after resume the trees differ: $(echo "$out" | head -5)"
  journal_done "$work/.barge-journal.dst-$name" "$name"
  "$barge" verify -q --manifest "$work/$name-2.xxh" "$dst" || fail "$name: the rerun's manifest does not check"
  [ "$(grep -vc '^#' "$work/$name-2.xxh")" = "$(find "$src" -type f | wc -l)" ] || fail "$name: the rerun's manifest misses files"
  [ -z "$(find "$dst" -name '.barge-part.*' -o -name '.barge-tmp.*')" ] || fail "$name: part files left"
  local again
  again=$(moved "$work/$name-2.json")
  if [ "$rerun" = --resume ]; then
    [ "$again" -lt "$total" ] || fail "$name: the resumed run moved $again of $total bytes: nothing was skipped"
    # A requeued job runs --resume once more after the success: it confirms, in place.
    launch "$np" copy -q --resume --chunk-size 256K --report "$work/$name-3.json" \
      --checksum-manifest "$work/$name-3.xxh" "$src" "$dst" || fail "$name: --resume after success exit $?"
    # Files in place and journaled chunks are listed in a manifest too (it was empty, or the
    # large file failed as "not copied").
    cmp -s "$work/$name-2.xxh" "$work/$name-3.xxh" || fail "$name: manifests of the resumed run and of --resume after success differ"
    [ ! -e "$dst/src" ] || fail "$name: --resume after a success nested SRC inside DST"
    [ "$(moved "$work/$name-3.json")" = 0 ] || fail "$name: --resume after a success moved $(moved "$work/$name-3.json") bytes"
  fi
  echo "$name: stopped with exit $rc, rerun ($rerun) moving $again of $total bytes, in place, result exact"
}

check_resume usr1-solo 1 USR1
check_resume term-solo 1 TERM
check_resume kill-solo 1 KILL
check_resume usr1-np3 3 USR1
check_resume kill-np2 2 KILL
check_resume usr1-one-of-np2 2 USR1-ONE-RANK
check_resume kill-plain-solo 1 KILL plain
check_resume kill-plain-np2 2 KILL plain

# Without --resume, a rerun after a stop starts over (parts truncated) and is exact.
dst=$work/dst-fresh
set +e
"$barge" copy -q --chunk-size 1M "$src" "$dst" 2>/dev/null &
pid=$!
sleep 0.3
kill -USR1 "$pid"
wait "$pid"
set -e
"$barge" copy -q --chunk-size 1M "$src" "$work/dst-fresh-2"  # unrelated destination: untouched journal
rm -rf "$dst"   # a user starting over removes the partial destination
"$barge" copy -q --chunk-size 1M "$src" "$dst" || fail "fresh rerun exit $?"
[ -z "$(rsync -aHAXn --delete --itemize-changes --modify-window=-1 --checksum "$src/" "$dst/")" ] || fail "fresh rerun differs"
journal_done "$work/.barge-journal.dst-fresh" "fresh rerun"
# One rank failing its writes stops every rank within a fraction of a second (the stop travels with
# the progress sums), not at the end of the phase; the run exits 2 naming the cause, and
# --resume without the fault finishes exactly. Rank 1 sees the destination read-only in a
# mount namespace of its own (the directories exist, so only file writes fail); --fsync with
# one thread keeps rank 0 busy for several seconds with its share of the files (22000 here
# when the stop does not travel: it runs to the end of the phase), so "stopped early" shows
# (640 here).
fsrc=$work/fsrc fdst=$work/fdst
"$barge" gen "$fsrc" --profile small --size 60M --files 60000 --seed 4 -q
mkdir -p "$fdst/fsrc"
rsync -a -f'+ */' -f'- *' "$fsrc/" "$fdst/fsrc/"
set +e
FDST=$fdst mpirun -np 2 --oversubscribe --bind-to none -x FDST "$here/ro_rank1.sh" "$barge" copy -q \
  --fsync --threads 1 --report "$work/fault.json" "$fsrc" "$fdst" 2> "$work/fault.log"
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "a rank failing writes: exit 0"
python3 - "$work/fault.json" <<'PY' || fail "a rank failing writes: $(tail -3 "$work/fault.log")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["exit_code"] == 2, r["exit_code"]
assert "Read-only file system" in r["fatal"], r["fatal"]      # the cause, not "another rank"
assert r["files"] < 8000, r["files"]                           # rank 0 stopped early too
print("one rank failing: every rank stopped after", r["files"], "of 60000 files,",
      [round(k["busy_seconds"], 2) for k in r["ranks"]], "s busy")
PY
mpirun -np 2 --oversubscribe --bind-to none "$barge" copy -q --resume "$fsrc" "$fdst" || fail "resume after the fault exit $?"
[ -z "$(rsync -aHAXn --delete --itemize-changes --modify-window=-1 --checksum "$fsrc/" "$fdst/fsrc/")" ] || fail "resume after the fault differs"

echo "resume: all checks passed"
