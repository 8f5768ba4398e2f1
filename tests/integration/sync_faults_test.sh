#!/usr/bin/env bash
# barge sync when things go wrong, and ownership as root:
#  1. a destination that fills up (a small tmpfs) stops the run with exit 2 naming ENOSPC,
#     leaves no temporary and no file under its final name that looks complete (source's
#     size and mtime) but is not, and a rerun once there is space finishes the mirror;
#  2. SIGUSR1 during a sync that copies (a fresh mirror, alone and under mpirun -np 2): progress
#     lines while it copies, exit 75, and a rerun finishes the mirror exactly; one rank failing
#     its writes stops every rank early (exit 2 naming the cause), and a rerun is exact;
#  3. owners and groups as root, also when DST's directory is setgid with another group
#     (a new file would take that group): files end up with the source's uid and gid;
#  4. files vanishing or growing after the walk saw them (copy alone and at np=2): named,
#     never put in place with other bytes, the rest copied, exit 1.
# Usage: sync_faults_test.sh BARGE      (exit 77 + "SKIP: reason" without root or tmpfs)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
barge=$(readlink -f "${1:-build/barge}")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (tmpfs mount, chown)"; exit 77; }
work=$(mktemp -d /var/tmp/barge-syncf-XXXXXX)
mnt=$work/mnt
mkdir -p "$mnt"
if ! mount -t tmpfs -o size=6M tmpfs "$mnt" 2>"$work/mount.err"; then
  echo "SKIP: cannot mount a tmpfs: $(cat "$work/mount.err")"
  rm -rf "$work"
  exit 77
fi
trap 'umount "$mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
source "$here/lib.sh"
# Every regular file under DST with its source's size and mtime has the source's bytes, and
# no temporary is left.
no_false_complete() {  # src dst what
  python3 - "$1" "$2" <<'PY' || fail "$3"
import filecmp, os, sys
src, dst = sys.argv[1], sys.argv[2]
for d, _, files in os.walk(dst):
    for f in files:
        p = os.path.join(d, f)
        rel = os.path.relpath(p, dst)
        if f.startswith(".barge-tmp."):
            sys.exit(f"temporary left in DST: {rel}")
        s = os.path.join(src, rel)
        if not os.path.isfile(s):
            sys.exit(f"{rel} is not in the source")
        a, b = os.lstat(s), os.lstat(p)
        if (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns) and not filecmp.cmp(s, p, shallow=False):
            sys.exit(f"{rel} has the source's size and mtime but other bytes")
PY
}

# 1. destination full
src=$work/src
"$barge" gen "$src" --profile small --size 16M --seed 5 -q
set +e
"$barge" sync -q "$src" "$mnt/dst" 2>"$work/full.err"
rc=$?
set -e
[ "$rc" = 2 ] || fail "sync into a full destination: exit $rc, want 2: $(head -3 "$work/full.err")"
grep -q 'No space left' "$work/full.err" || fail "ENOSPC not named: $(head -3 "$work/full.err")"
no_false_complete "$src" "$mnt/dst" "full destination"
mount -o remount,size=64M "$mnt"
"$barge" sync -q "$src" "$mnt/dst" || fail "rerun with space: exit $?"
same_tree "$src" "$mnt/dst" "rerun after ENOSPC"
echo "full destination: exit 2 naming ENOSPC, nothing half-done, rerun exact"

# 2. stopped by SIGUSR1 while copying
big=$work/big
"$barge" gen "$big" --profile small --size 20M --files 20000 --seed 6 -q
sleep 1.1   # rsync (the oracle) leaves times of entries changed this second unset
for np in 1 2; do
  dst=$work/stopped-$np
  set +e
  if [ "$np" = 1 ]; then
    "$barge" sync --progress plain --progress-interval 0.1 "$big" "$dst" 2>"$work/usr1.err" &
  else
    mpirun -np 2 --oversubscribe --bind-to none "$barge" sync --progress plain \
      --progress-interval 0.1 "$big" "$dst" 2>"$work/usr1.err" &
  fi
  pid=$!
  # once some files are in place and a progress line is out
  for _ in $(seq 1 400); do
    [ -n "$(find "$dst" -type f 2>/dev/null | head -1)" ] && grep -q '^barge: sync ' "$work/usr1.err" && break
    sleep 0.005
  done
  kill -USR1 "$pid"
  wait "$pid"
  rc=$?
  set -e
  [ "$rc" = 75 ] || fail "np=$np: sync stopped by SIGUSR1: exit $rc, want 75: $(tail -3 "$work/usr1.err")"
  n=$(find "$dst" -type f | wc -l)
  [ "$n" -lt 20000 ] || fail "np=$np: the sync finished before the signal; make the data bigger"
  grep -q '^barge: sync .* files' "$work/usr1.err" || fail "np=$np: no progress while the walk copies: $(head -3 "$work/usr1.err")"
  no_false_complete "$big" "$dst" "np=$np stopped sync"
  "$barge" sync -q "$big" "$dst" || fail "np=$np: rerun after SIGUSR1: exit $?"
  same_tree "$big" "$dst" "np=$np rerun after SIGUSR1"
  echo "np=$np: SIGUSR1 after $n files: exit 75, rerun exact"
done

# 2b. one rank failing its writes (DST read-only in rank 1's own mount namespace; the
# directories exist, so only file writes fail): every rank stops early, not after the walk
# has copied everything; exit 2 naming the cause; a rerun without the fault is exact.
fdst=$work/fdst
mkdir -p "$fdst"
rsync -a -f'+ */' -f'- *' "$big/" "$fdst/"
set +e
FDST=$fdst mpirun -np 2 --oversubscribe --bind-to none -x FDST "$here/ro_rank1.sh" "$barge" sync -q \
  --report "$work/fault.json" "$big" "$fdst" 2> "$work/fault.log"
rc=$?
set -e
[ "$rc" = 2 ] || fail "a rank failing writes: exit $rc, want 2: $(tail -3 "$work/fault.log")"
python3 - "$work/fault.json" <<'PY' || fail "a rank failing writes: $(tail -3 "$work/fault.log")"
import json, sys
r = json.load(open(sys.argv[1]))
assert r["exit_code"] == 2, r["exit_code"]
assert "Read-only file system" in r["fatal"], r["fatal"]   # the cause, not "another rank"
assert r["files"] < 10000, r["files"]                       # rank 0 stopped early too
print("one rank failing: every rank stopped after", r["files"], "of 20000 files")
PY
no_false_complete "$big" "$fdst" "a rank failing writes"
"$barge" sync -q "$big" "$fdst" || fail "rerun without the fault: exit $?"
same_tree "$big" "$fdst" "rerun after a rank failed"

# 3. owners and groups, and a setgid destination directory
own=$work/own odst=$work/own-dst
mkdir -p "$own/a"
echo one > "$own/a/f1"
echo two > "$own/a/f2"
chown 1234:5678 "$own/a/f1"
sleep 1.1
"$barge" sync -q "$own" "$odst" || fail "owner sync exit $?"
[ "$(stat -c %u:%g "$odst/a/f1")" = 1234:5678 ] || fail "f1 owner $(stat -c %u:%g "$odst/a/f1")"
chgrp 4321 "$odst/a"
chmod g+s "$odst/a"
echo changed >> "$own/a/f2"
echo three > "$own/a/f3"
sleep 1.1
"$barge" sync -q "$own" "$odst" || fail "setgid sync exit $?"
for f in f2 f3; do
  [ "$(stat -c %u:%g "$odst/a/$f")" = 0:0 ] || fail "$f in a setgid directory: $(stat -c %u:%g "$odst/a/$f"), want 0:0"
done
same_tree "$own" "$odst" "setgid destination"
echo "owners: kept, also in a setgid destination directory"

# 4. files that vanish or grow after the walk saw them (copy alone and at np=2, one thread so
# the transfer takes a while): each is named, never put in place with bytes it did not have
# when the walk saw it, the rest is copied, exit 1.
vsrc=$work/vsrc
"$barge" gen "$vsrc" --profile small --size 20M --files 20000 --seed 8 -q
for np in 1 2; do
  rm -rf "$work/vdst" "$work/vsave"
  # the victims: five files to delete and five to grow, in the directory copied last
  last=$(find "$vsrc" -mindepth 2 -type d | sort | tail -1)
  mapfile -t victims < <(find "$last" -type f | sort | tail -10)
  mkdir -p "$work/vsave" && cp -a "${victims[@]}" "$work/vsave/"
  set +e
  if [ "$np" = 1 ]; then
    "$barge" copy --threads 1 --progress plain --progress-interval 0.1 --report "$work/v.json" "$vsrc" "$work/vdst" 2>"$work/v.err" &
  else
    mpirun -np 2 --oversubscribe --bind-to none "$barge" copy --threads 1 --progress plain \
      --progress-interval 0.1 --report "$work/v.json" "$vsrc" "$work/vdst" 2>"$work/v.err" &
  fi
  pid=$!
  for _ in $(seq 1 1000); do grep -q '^barge: copy ' "$work/v.err" && break; sleep 0.005; done
  for k in 0 1 2 3 4; do rm -f "${victims[$k]}"; done
  for k in 5 6 7 8 9; do printf 'grown' >> "${victims[$k]}"; done
  wait "$pid"
  rc=$?
  set -e
  named=0
  for k in $(seq 0 9); do
    rel=${victims[$k]#"$vsrc/"}
    if grep -qF "$rel" "$work/v.err"; then
      named=$((named + 1))
      [ ! -e "$work/vdst/$rel" ] || cmp -s "$work/vdst/$rel" "$work/vsave/$(basename "$rel")" \
        || fail "np=$np: $rel changed during the copy, was named, and yet stands in DST with other bytes"
    else
      cmp -s "$work/vdst/$rel" "$work/vsave/$(basename "$rel")" \
        || fail "np=$np: $rel changed during the copy, is not named, and DST does not hold its walked bytes"
    fi
  done
  [ "$named" -gt 0 ] || fail "np=$np: the copy reached every victim before it changed; make the data bigger"
  [ "$rc" = 1 ] || fail "np=$np: files changed during the copy: exit $rc, want 1: $(tail -3 "$work/v.err")"
  # everything else arrived intact
  others=$(rsync -rlptn --checksum --itemize-changes "$vsrc/" "$work/vdst/" | { grep -vF "$(basename "$last")/" || true; } | head -3)
  [ -z "$others" ] || fail "np=$np: files that did not change differ: $others"
  cp -a "$work/vsave/." "$last/"   # restore the victims for the next round
  echo "np=$np: $named of 10 files changed during the copy were named; exit 1; the rest intact"
done

echo "sync faults: all checks passed"
