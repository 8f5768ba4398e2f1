#!/usr/bin/env bash
# Backup repository end to end, alone and under mpirun (np 1, 2, 4):
#  - three generations: full backup; modify, add, delete, rename, chmod, incremental; more
#    changes, differential; then every snapshot restored and compared (content and metadata,
#    rsync -aHAX --checksum as the oracle) with a copy of the source saved at that time;
#    hard links, symlinks, a sparse file, an empty directory, a fifo, odd names, xattrs;
#  - an unchanged file is not read again by an incremental backup;
#  - restore --path; snapshots; verify of an intact repository;
#  - a second backup into a locked repository is refused; a stale lock is taken over;
#  - a backup killed mid-way leaves the repository valid (no new snapshot, verify passes);
#  - damage: a flipped byte in a pack, a truncated pack, a missing pack, a corrupted manifest:
#    verify and restore name exactly the files affected (and the snapshots needing them),
#    restore puts every other file in place, exit 1;
#  - restore never writes outside DST (a symlink planted in DST is not followed);
#  - forget --keep-last.
# Usage: backup_test.sh BARGE
set -euo pipefail
barge=$(readlink -f "${1:-build/barge}")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d /var/tmp/barge-backup-XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
launch() {  # launch NP ARGS... (NP=1: no mpirun)
  local np=$1; shift
  if [ "$np" = 1 ]; then "$barge" "$@"; else mpirun -np "$np" --oversubscribe --bind-to none "$barge" "$@"; fi
}
same_tree() {
  local out
  out=$(rsync -aHAXn --delete --itemize-changes --modify-window=-1 --checksum "$1/" "$2/")
  [ -z "$out" ] || fail "$3: trees differ: $(echo "$out" | head -5)"
}
snap_ids() { "$barge" snapshots --json "$1" | python3 -c "import json,sys; print(' '.join(s['id'] for s in json.load(sys.stdin)))"; }
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$1" "$2"; }

# The source: a generated mixed tree (compressible and not) plus hand-made entries.
src=$work/src
"$barge" gen "$src" --profile mixed --size 40M --compressibility 0.5 --seed 5 -q
mkdir -p "$src/odd dir/empty" "$src/links"
printf 'x' > "$src/odd dir/new
line"
printf 'y' > "$src/odd dir/"$'\xff\xfe'
ln -s /nonexistent "$src/odd dir/dangling"
mkfifo "$src/odd dir/fifo"
echo shared > "$src/links/a"
ln "$src/links/a" "$src/links/b"
ln "$src/links/a" "$src/odd dir/c"
truncate -s 64M "$src/sparse"
printf 'data' | dd of="$src/sparse" bs=1 seek=$((32 << 20)) conv=notrunc status=none
setfattr -n user.colour -v blue "$src/links/a"
chown 1234:5678 "$src/odd dir/new
line"
chmod 0751 "$src/odd dir"
sleep 1.1   # rsync leaves times of entries changed this second unset

change_1() {  # modify, add, delete, rename, chmod
  local files
  mapfile -t files < <(find "$src" -type f -size -64k -path '*d0*' | sort)
  printf 'changed' >> "${files[3]}"
  head -c 100000 /dev/urandom > "${files[10]}"
  rm -f "${files[20]}"
  mv "${files[30]}" "${files[30]}.renamed"
  chmod 0600 "${files[40]}"
  echo added > "$src/added-1"
  mkdir -p "$src/newdir/deeper" && echo deep > "$src/newdir/deeper/f"
  sleep 1.1
}
change_2() {
  local files
  mapfile -t files < <(find "$src" -type f -size -64k -path '*d0*' | sort)
  printf 'again' >> "${files[5]}"
  rm -rf "$src/newdir"
  echo added2 > "$src/added-2"
  touch -d '2001-02-03 04:05:06.123456789' "${files[6]}"
  sleep 1.1
}

gen_tree=$work/gen-src
"$barge" copy -q --xattrs "$src" "$gen_tree"   # pristine source for every np
for np in 1 2 4; do
  rm -rf "$src"; "$barge" copy -q --xattrs "$gen_tree" "$src"; sleep 1.1
  repo=$work/repo-$np
  launch "$np" backup -q --xattrs --mode full --tag gen1 --report "$work/b1-$np.json" "$src" "$repo" || fail "np=$np full backup exit $?"
  rsync -aHAX "$src/" "$work/saved-$np-1/"
  change_1
  launch "$np" backup -q --xattrs --mode incremental --report "$work/b2-$np.json" "$src" "$repo" || fail "np=$np incremental exit $?"
  rsync -aHAX "$src/" "$work/saved-$np-2/"
  change_2
  launch "$np" backup -q --xattrs --mode differential --report "$work/b3-$np.json" "$src" "$repo" || fail "np=$np differential exit $?"
  rsync -aHAX "$src/" "$work/saved-$np-3/"
  read -r -a ids <<< "$(snap_ids "$repo")"
  [ "${#ids[@]}" = 3 ] || fail "np=$np: ${#ids[@]} snapshots"
  "$barge" snapshots --json "$repo" | python3 -c "
import json, sys
s = json.load(sys.stdin)
assert [x['kind'] for x in s] == ['full', 'incremental', 'differential'], s
assert s[1]['parent'] == s[0]['id'] and s[2]['parent'] == s[0]['id'], s
assert s[0]['tag'] == 'gen1'
" || fail "np=$np: snapshot kinds or parents"
  # an incremental reads only what changed
  full=$(field "$work/b1-$np.json" 'r["bytes_read"]'); incr=$(field "$work/b2-$np.json" 'r["bytes_read"]')
  [ "$incr" -lt $((full / 20)) ] || fail "np=$np: incremental read $incr of $full bytes"
  for g in 1 2 3; do
    launch "$np" restore -q --snapshot "${ids[$((g - 1))]}" "$repo" "$work/restored-$np-$g" || fail "np=$np restore $g exit $?"
    same_tree "$work/saved-$np-$g" "$work/restored-$np-$g" "np=$np generation $g"
    [ -z "$(find "$work/restored-$np-$g" -name '.barge-tmp*')" ] || fail "np=$np: temporaries left"
  done
  r=$work/restored-$np-1
  [ "$(stat -c %i "$r/links/a")" = "$(stat -c %i "$r/links/b")" ] || fail "np=$np: hard link lost"
  [ "$(stat -c %i "$r/links/a")" = "$(stat -c %i "$r/odd dir/c")" ] || fail "np=$np: hard link lost"
  [ "$(getfattr --absolute-names --only-values -n user.colour "$r/links/a")" = blue ] || fail "np=$np: xattr lost"
  [ "$(stat -c %b "$r/sparse")" -lt 1000 ] || fail "np=$np: sparse file restored dense ($(stat -c %b "$r/sparse") blocks)"
  "$barge" verify -q "$repo" || fail "np=$np: verify of an intact repository exit $?"
  echo "np=$np: full, incremental, differential restored exactly (incremental read $incr of $full bytes)"
  rm -rf "$work"/restored-$np-* "$work"/saved-$np-2 "$work"/saved-$np-3
  [ "$np" = 1 ] || rm -rf "$work"/saved-$np-1   # np=1's first generation serves the damage cases
done
# Small chunks: many files of many chunks in many directories, their chunks restored in
# parallel (a thread waiting for one file's chunks must not start another file).
"$barge" backup -q --xattrs --chunk-size 64K "$gen_tree" "$work/repo-small-chunks" || fail "small chunks backup exit $?"
"$barge" restore -q "$work/repo-small-chunks" "$work/small-chunks-out" || fail "small chunks restore exit $?"
same_tree "$gen_tree" "$work/small-chunks-out" "small chunks"
rm -rf "$work/repo-small-chunks" "$work/small-chunks-out"

repo=$work/repo-1
read -r -a ids <<< "$(snap_ids "$repo")"

# restore --path: only that subtree, in its place
"$barge" restore -q --path "odd dir" --snapshot "${ids[0]}" "$repo" "$work/part" || fail "restore --path exit $?"
[ -f "$work/part/odd dir/c" ] && [ ! -e "$work/part/links" ] && [ ! -e "$work/part/sparse" ] || fail "restore --path restored the wrong entries"
"$barge" restore -q --path nothere "$repo" "$work/part2" 2> "$work/err" && fail "restore --path of a missing path succeeded"
grep -q -- "--path nothere: not in snapshot" "$work/err" || fail "missing --path message: $(cat "$work/err")"

# Into an existing setgid directory: new files take its group, so restore must still give
# them the group they had (root's here), while skipping chown where nothing differs.
mkdir "$work/sgid" && chgrp 5678 "$work/sgid" && chmod 2775 "$work/sgid"
"$barge" restore -q --snapshot "${ids[0]}" "$repo" "$work/sgid/" || fail "restore into a setgid DST exit $?"
[ "$(stat -c %u:%g "$work/sgid/sparse")" = "$(stat -c %u:%g "$work/saved-1-1/sparse")" ] ||
  fail "setgid DST: sparse owned $(stat -c %u:%g "$work/sgid/sparse")"
[ "$(stat -c %u:%g "$work/sgid/odd dir/new
line")" = 1234:5678 ] || fail "setgid DST: owner lost"
rm -rf "$work/sgid"

# Lock: a live holder refuses a second backup; a dead one's lock is taken over.
echo "$(hostname) $$ $(date +%s) backup" > "$repo/lock"
set +e; "$barge" backup -q "$src" "$repo" 2> "$work/err"; rc=$?; set -e
[ "$rc" = 2 ] && grep -q "locked by barge backup" "$work/err" || fail "locked repository: exit $rc, $(cat "$work/err")"
sh -c 'exit 0' & dead=$!; wait "$dead"
echo "$(hostname) $dead $(date +%s) backup" > "$repo/lock"
"$barge" backup -q "$src" "$repo" || fail "stale lock not taken over"
[ ! -e "$repo/lock" ] || fail "lock left behind"

# A backup killed mid-way leaves the repository as it was: no new snapshot, all verifies.
before=$(snap_ids "$repo")
head -c $((256 << 20)) /dev/urandom > "$src/big-random"
"$barge" backup -q --level 19 "$src" "$repo" & pid=$!
for ((i = 0; i < 200; i++)); do [ -n "$(find "$repo/packs" -newer "$src/big-random" -name '*.pack' 2>/dev/null)" ] && break; sleep 0.02; done
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
rm -f "$src/big-random"
[ "$(snap_ids "$repo")" = "$before" ] || fail "a killed backup left a snapshot"
[ -e "$repo/lock" ] || fail "the killed backup's lock is gone"   # forget below takes it over (stale)
"$barge" verify -q "$repo" || fail "verify after a killed backup exit $?"

# Damage. Copies of the np=1 repository, one kind of damage each.
damage_case() {  # name command...
  local name=$1; shift
  local d=$work/dmg-$name
  rm -rf "$d"; cp -a "$repo" "$d"
  "$@" "$d"
  set +e
  "$barge" verify "$d" > "$work/$name.verify" 2>&1; local vrc=$?
  "$barge" restore --snapshot "${ids[0]}" "$d" "$work/$name-out" > "$work/$name.restore" 2>&1; local rrc=$?
  set -e
  [ "$vrc" = 1 ] || fail "$name: verify exit $vrc: $(tail -3 "$work/$name.verify")"
  [ "$rrc" = 1 ] || fail "$name: restore exit $rrc: $(tail -3 "$work/$name.restore")"
}
flip() {  # flip one byte in the middle of the largest pack
  local p; p=$(ls -S "$1"/packs/*/*.pack | head -1)
  python3 - "$p" <<'PY'
import sys, os
p = sys.argv[1]; n = os.path.getsize(p)
with open(p, 'r+b') as f:
    f.seek(n // 2); b = f.read(1); f.seek(n // 2); f.write(bytes([b[0] ^ 0x55]))
PY
}
truncate_pack() { local p; p=$(ls -S "$1"/packs/*/*.pack | head -1); truncate -s $(( $(stat -c %s "$p") / 2 )) "$p"; }
remove_pack() { rm -f "$(ls -S "$1"/packs/*/*.pack | head -1)"; }
for kind in flip truncate_pack remove_pack; do
  damage_case "$kind" "$kind"
  grep -q "^barge: error: damaged: " "$work/$kind.verify" || fail "$kind: verify names no damaged file"
  grep -q "needed by snapshot" "$work/$kind.verify" || fail "$kind: verify names no snapshot"
  # every file restore names is one verify names, and every other file is restored exactly
  # every file not restored is named (once), and every other file is restored exactly
  python3 - "$work/$kind.restore" "$work/saved-1-1" "$work/$kind-out" <<'PY' || fail "$kind: restore output does not match the damage"
import os, sys, filecmp
restore, saved, out = sys.argv[1:]
named = open(restore, 'rb').read().count(b": not restored")
absent = 0
for root, dirs, files in os.walk(saved):
    for f in files:
        rel = os.path.relpath(os.path.join(root, f), saved)
        a, b = os.path.join(saved, rel), os.path.join(out, rel)
        if not os.path.lexists(b):
            absent += 1
        elif os.path.isfile(b) and not os.path.islink(b):
            assert filecmp.cmp(a, b, shallow=False), rel
assert named > 0 and absent == named, (named, absent)
print(f"{named} files named and absent, every other file restored exactly")
PY
  echo "$kind: verify and restore named the damaged files, the rest restored"
done
# a corrupted manifest: verify names the snapshot, restore of it refuses, the others are fine
d=$work/dmg-manifest; rm -rf "$d"; cp -a "$repo" "$d"
python3 - "$d/snapshots/${ids[1]}.snap" <<'PY'
import sys
p = sys.argv[1]
with open(p, 'r+b') as f:
    f.seek(100); b = f.read(1); f.seek(100); f.write(bytes([b[0] ^ 1]))
PY
set +e; "$barge" verify "$d" > "$work/m.verify" 2>&1; vrc=$?
"$barge" restore --snapshot "${ids[1]}" "$d" "$work/m-out" > "$work/m.restore" 2>&1; rrc=$?; set -e
[ "$vrc" = 1 ] && grep -q "snapshot ${ids[1]}: .*checksum mismatch" "$work/m.verify" || fail "corrupt manifest: verify exit $vrc $(cat "$work/m.verify")"
[ "$rrc" = 2 ] && grep -q "checksum mismatch" "$work/m.restore" || fail "corrupt manifest: restore exit $rrc $(cat "$work/m.restore")"
"$barge" verify -q --snapshot "${ids[0]}" "$d" || fail "corrupt manifest: the other snapshots do not verify"
echo "corrupt manifest: named, refused, others intact"

# Nothing written outside DST: DST already holds a symlink where the snapshot has a directory.
mkdir -p "$work/outside" "$work/trap"
ln -s "$work/outside" "$work/trap/links"
set +e; "$barge" restore -q --snapshot "${ids[0]}" "$repo" "$work/trap" 2> "$work/trap.err"; rc=$?; set -e
[ "$rc" = 1 ] || fail "restore over a planted symlink: exit $rc"
[ -z "$(ls -A "$work/outside")" ] || fail "restore wrote outside DST: $(ls "$work/outside")"
echo "planted symlink: not followed, nothing written outside DST"

# forget keeps the newest snapshots and removes what nothing references
n_before=$(ls "$repo"/packs/*/*.pack | wc -l)
"$barge" forget -q --keep-last 1 "$repo" > /dev/null || fail "forget exit $?"
[ "$(snap_ids "$repo" | wc -w)" = 1 ] || fail "forget kept $(snap_ids "$repo" | wc -w) snapshots"
"$barge" verify -q "$repo" || fail "verify after forget"
"$barge" restore -q "$repo" "$work/after-forget" || fail "restore after forget"
echo "forget: $(ls "$repo"/packs/*/*.pack | wc -l) of $n_before packs left, latest snapshot intact"
echo "backup: all checks passed"
