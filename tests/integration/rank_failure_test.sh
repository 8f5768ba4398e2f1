#!/usr/bin/env bash
# No rank ever hangs: under mpirun -np 3, one rank whose address space is capped (ulimit -v,
# so a real allocation fails: std::bad_alloc, or a thread that cannot start) makes the whole
# job fail within seconds, exit 2, naming that rank and the cause, for copy, sync, backup and
# restore. It used to print the error on that rank and return, while the others waited in
# their next agreement forever. Afterwards the same commands at full size succeed (the
# repository's lock left by the ended job is taken over as stale).
# Usage: rank_failure_test.sh BARGE
set -euo pipefail
barge=$(readlink -f "${1:-build/barge}")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d /var/tmp/barge-rankfail-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
"$barge" gen "$work/in/src" --profile mixed --size 60M --seed 9 -q

# A rank that cannot see SRC (its own mount namespace hides it) fails the backup on every
# rank, exit 2, naming that rank; no snapshot is written. (It used to take rank 0's verdict,
# go ahead, and write a snapshot with exit 1.)
rc=0
mpirun -np 1 --bind-to none "$barge" backup -q "$work/in/src" "$work/repo-hidden" : \
  -np 1 --bind-to none unshare -m sh -c 'mount -t tmpfs tmpfs "$0" && exec "$1" backup -q "$2" "$3"' \
  "$work/in" "$barge" "$work/in/src" "$work/repo-hidden" >"$work/hidden.log" 2>&1 || rc=$?
[ "$rc" = 2 ] || fail "a rank without SRC: backup exit $rc, want 2: $(grep barge "$work/hidden.log")"
grep -q "barge: error: rank 1: source .*: No such file or directory" "$work/hidden.log" || fail "a rank without SRC is not named: $(grep barge "$work/hidden.log")"
[ -z "$(ls -A "$work/repo-hidden/snapshots" 2>/dev/null)" ] || fail "a rank without SRC: a snapshot was written"
echo "backup with a rank that cannot see SRC: exit 2, rank 1 named, no snapshot"

if ldd "$barge" | grep -q libasan; then
  echo "SKIP (the rest): ulimit -v cannot cap an AddressSanitizer binary (its shadow memory needs terabytes of address space)"
  exit 77
fi
mv "$work/in/src" "$work/src"
"$barge" backup -q "$work/src" "$work/repo"

# check NAME ARGS...: ranks 0 and 1 normal, rank 2 capped at 250 MB of address space.
check() {
  local name=$1; shift
  local t0 t1 rc=0
  t0=$(date +%s%N)
  timeout 120 mpirun -np 2 --oversubscribe --bind-to none "$barge" "$@" : \
    -np 1 --bind-to none sh -c 'ulimit -v 250000; exec "$0" "$@"' "$barge" "$@" >"$work/$name.log" 2>&1 || rc=$?
  t1=$(date +%s%N)
  local secs=$(( (t1 - t0) / 1000000000 ))
  # The next step may need what this job held (a repository's lock): its ranks must be gone,
  # not still stopping after mpirun returned.
  for _ in $(seq 100); do pgrep -f -- "$work/" >/dev/null || break; sleep 0.1; done
  [ "$rc" != 124 ] || fail "$name: the job hung (killed by timeout after 120 s): $(tail -5 "$work/$name.log")"
  [ "$rc" = 2 ] || fail "$name: exit $rc, want 2: $(tail -5 "$work/$name.log")"
  [ "$secs" -le 30 ] || fail "$name: the job took $secs s to end"
  grep -q "barge: error: rank 2 (.*): " "$work/$name.log" || fail "$name: the failing rank is not named: $(head -5 "$work/$name.log")"
  echo "$name: rank 2 failed ($(grep -m1 -o 'rank 2 ([^)]*): [^;]*' "$work/$name.log")), job ended in $secs s with exit 2"
}
check copy copy -q "$work/src" "$work/dst"
check sync sync -q "$work/src" "$work/mirror"
check backup backup -q "$work/src" "$work/repo"
check restore restore -q "$work/repo" "$work/restored"

# Nothing is left half-done: the same commands without the cap complete.
mpirun -np 3 --oversubscribe --bind-to none "$barge" copy -q "$work/src" "$work/dst" || fail "copy rerun exit $?"
mpirun -np 3 --oversubscribe --bind-to none "$barge" backup -q "$work/src" "$work/repo" || fail "backup rerun exit $?"
mpirun -np 3 --oversubscribe --bind-to none "$barge" restore -q "$work/repo" "$work/restored" || fail "restore rerun exit $?"
[ -z "$(rsync -aHAXn --delete --itemize-changes --modify-window=-1 --checksum "$work/src/" "$work/dst/")" ] || fail "copy rerun differs"
[ -z "$(rsync -aHAXn --delete --itemize-changes --modify-window=-1 --checksum "$work/src/" "$work/restored/")" ] || fail "restore rerun differs"
echo "rank failure: all checks passed"
