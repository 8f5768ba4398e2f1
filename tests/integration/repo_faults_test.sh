#!/usr/bin/env bash
# The backup repository when things go wrong (issue 9), each case a function:
#  forget_full  forget removes the last full: the next incremental is still incremental (of
#               the newest snapshot), every kept snapshot restores exactly; a differential
#               with no full left becomes full and says so, even with -q;
#  bad_options  a bad --chunk-size (3, 1, 5000, 2G) is refused, exit 2, one line naming it,
#               and nothing is created;
#  enospc       a backup that fills the repository's file system (a 64 MiB tmpfs), alone and
#               under mpirun -np 2, removes the packs it wrote and says what to do; grown to
#               hold the data but not the data twice, the rerun succeeds and verifies;
#  killed       the packs of a backup killed with SIGKILL are removed by the next backup;
#  overlap      REPO inside SRC (unless excluded), SRC inside REPO, DST inside REPO, and a DST
#               holding REPO where the snapshot writes: exit 2, nothing created;
#  damaged      one flipped byte in the newest snapshot: `snapshots` lists every snapshot and
#               marks that one (text and --json, exit 1); an incremental backup passes over it
#               to the newest intact one and says so;
#  config       a deleted or garbled config: commands point at `barge repair`, which rebuilds
#               it from config.bak or from the snapshots (refusing when it cannot tell);
#  lock_race    8 backups at once, also over a dead run's lock: exactly one wins, the others
#               name the winner's host and pid and never offer to remove its lock;
#  short_id     --snapshot takes the short id `snapshots` shows, refuses an ambiguous prefix;
#  incomplete   a snapshot taken while a file could not be read is marked incomplete
#               (backup's warning and report, `snapshots` text and --json);
#  restore_dst  a DST that is a symlink is followed only as DST/; reruns of a restore (after a
#               success, after SIGKILL, over temporaries a killed run left) complete it in
#               place and never nest.
# Usage: repo_faults_test.sh BARGE [CASE...]   (exit 77 + "SKIP: reason" without root)
set -euo pipefail
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
here=$(cd "$(dirname "$0")" && pwd)
barge=$(readlink -f "${1:-build/barge}")
shift || true
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (tmpfs mount, running as nobody)"; exit 77; }
work=$(mktemp -d /var/tmp/barge-repof-XXXXXX)
mnt=$work/mnt
trap 'umount "$mnt" 2>/dev/null || true; rm -rf "$work"' EXIT
source "$here/lib.sh"
snap_json() { "$barge" snapshots --json "$1" 2>/dev/null || true; }
snap_ids() { snap_json "$1" | python3 -c "import json,sys; print(' '.join(s['id'] for s in json.load(sys.stdin)))"; }
# py EXPR-or-statements with the snapshots of REPO as `s` (a list)
check_snaps() { snap_json "$1" | python3 -c "import json,sys; s=json.load(sys.stdin); $2" || fail "$3: $(snap_json "$1")"; }
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$1" "$2"; }
flip_byte() { python3 -c "
import sys; p, at = sys.argv[1], int(sys.argv[2])
with open(p, 'r+b') as f:
    f.seek(at); b = f.read(1); f.seek(at); f.write(bytes([b[0] ^ 1]))" "$1" "$2"; }
run() {  # run OUT ARGS...: barge ARGS with stderr in OUT; sets rc
  local out=$1; shift
  set +e; "$barge" "$@" 2> "$out"; rc=$?; set -e
}

t_forget_full() {
  local s=$work/ff-src r=$work/ff-repo
  "$barge" gen "$s" --profile small --size 4M --seed 2 -q
  "$barge" backup -q --mode full "$s" "$r"
  echo one > "$s/added-1"
  "$barge" backup -q "$s" "$r"
  echo two > "$s/added-2"
  "$barge" backup -q "$s" "$r"
  cp -a "$s" "$work/ff-saved-3"
  "$barge" forget -q --keep-last 1 "$r" > /dev/null
  check_snaps "$r" "assert len(s) == 1 and s[0]['kind'] == 'incremental'" "forget kept the wrong snapshots"
  local kept; kept=$(snap_ids "$r")
  echo three > "$s/added-3"
  run "$work/ff.err" backup -q --report "$work/ff.json" "$s" "$r"
  [ "$rc" = 0 ] || fail "backup after forget: exit $rc: $(cat "$work/ff.err")"
  [ "$(field "$work/ff.json" 'r["snapshot"]["kind"]')" = incremental ] || fail "the backup after forget is $(field "$work/ff.json" 'r["snapshot"]["kind"]'), not incremental"
  [ "$(field "$work/ff.json" 'r["snapshot"]["parent"]')" = "$kept" ] || fail "its parent is not the newest snapshot"
  [ "$(field "$work/ff.json" 'r["bytes_read"]')" -lt 4096 ] || fail "it read $(field "$work/ff.json" 'r["bytes_read"]') bytes (stored everything again)"
  [ ! -s "$work/ff.err" ] || fail "a plain incremental said something: $(cat "$work/ff.err")"
  "$barge" verify -q "$r" || fail "verify after forget"
  "$barge" restore -q "$r" "$work/ff-out-4"
  same_tree "$s" "$work/ff-out-4" "the incremental after forget"
  "$barge" restore -q --snapshot "$kept" "$r" "$work/ff-out-3"
  same_tree "$work/ff-saved-3" "$work/ff-out-3" "the kept incremental whose full was forgotten"
  # a differential with no full left: full, and said so with -q
  run "$work/ff.err" backup -q --mode differential --report "$work/ff2.json" "$s" "$r"
  [ "$rc" = 0 ] && grep -q "warning: no intact full snapshot.*this differential backup is a full one" "$work/ff.err" \
    || fail "differential without a full: exit $rc, said: $(cat "$work/ff.err")"
  [ "$(field "$work/ff2.json" 'r["snapshot"]["kind"]')" = full ] || fail "differential without a full is not full"
  echo "forget_full: incremental after forget stays incremental, kept snapshots restore, differential says it is full"
}

t_bad_options() {
  "$barge" gen "$work/bo-src" --profile small --size 256K --seed 3 -q
  for size in 3 1 5000 2G; do
    run "$work/bo.err" backup -q --chunk-size "$size" "$work/bo-src" "$work/bo-repo"
    [ "$rc" = 2 ] || fail "--chunk-size $size: exit $rc"
    [ ! -e "$work/bo-repo" ] || fail "--chunk-size $size: the repository was created: $(ls -A "$work/bo-repo")"
    [ "$(wc -l < "$work/bo.err")" = 1 ] && grep -q -- "--chunk-size" "$work/bo.err" || fail "--chunk-size $size: message: $(cat "$work/bo.err")"
  done
  "$barge" backup -q --chunk-size 64K "$work/bo-src" "$work/bo-repo" || fail "--chunk-size 64K refused"
  echo "bad_options: bad chunk sizes refused before anything is created"
}

t_enospc() {
  local s=$work/en-src
  "$barge" gen "$s" --profile mixed --size 100M --compressibility 0 --seed 3 -q
  mkdir -p "$mnt"
  mount -t tmpfs -o size=64m tmpfs "$mnt" || fail "cannot mount a tmpfs"
  run "$work/en.err" backup -q "$s" "$mnt/repo"
  [ "$rc" = 2 ] || fail "backup onto a full file system: exit $rc"
  grep -q "No space left on device" "$work/en.err" && grep -q "run the same backup again" "$work/en.err" \
    || fail "ENOSPC message: $(cat "$work/en.err")"
  [ -z "$(find "$mnt/repo/packs" -name '*.pack')" ] || fail "the failed backup left packs: $(du -sh "$mnt/repo/packs")"
  [ -z "$(snap_ids "$mnt/repo")" ] || fail "the failed backup left a snapshot"
  # under mpirun every rank removes its own packs
  set +e
  mpirun -np 2 --oversubscribe --bind-to none "$barge" backup -q "$s" "$mnt/repo" > "$work/en.out" 2> "$work/en.err"; rc=$?
  set -e
  [ "$rc" != 0 ] && grep -q "packs (.*) this run wrote were removed" "$work/en.err" || fail "np=2 on a full file system: exit $rc: $(cat "$work/en.err")"
  [ -z "$(find "$mnt/repo/packs" -name '*.pack')" ] || fail "the failed np=2 backup left packs: $(du -sh "$mnt/repo/packs")"
  # room for the data, not for the data and what the failed run wrote
  mount -o remount,size=150m "$mnt"
  run "$work/en.err" backup -q "$s" "$mnt/repo"
  [ "$rc" = 0 ] || fail "rerun after growing the file system: exit $rc: $(cat "$work/en.err")"
  "$barge" verify -q "$mnt/repo" || fail "verify after the rerun"
  "$barge" restore -q "$mnt/repo" "$work/en-out"
  same_tree "$s" "$work/en-out" "restore after ENOSPC and rerun"
  umount "$mnt"; rm -rf "$s" "$work/en-out"
  echo "enospc: the failed run removed its packs, the rerun succeeded and verifies"
}

t_killed() {
  local s=$work/k-src r=$work/k-repo
  mkdir -p "$s"; echo small > "$s/small"
  "$barge" backup -q "$s" "$r"
  head -c $((48 << 20)) /dev/urandom > "$s/big"
  "$barge" backup -q --level 19 "$s" "$r" & local pid=$!
  for ((i = 0; i < 500; i++)); do [ -n "$(find "$r/packs" -newer "$s/big" -name '*.pack' -size +0)" ] && break; sleep 0.02; done
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  [ -n "$(find "$r/packs" -newer "$s/big" -name '*.pack')" ] || fail "the killed backup wrote no pack (test setup)"
  rm -f "$s/big"
  run "$work/k.err" backup "$s" "$r"
  [ "$rc" = 0 ] && grep -q "packs .* that a failed or killed run left" "$work/k.err" || fail "backup after a killed one: exit $rc: $(cat "$work/k.err")"
  run "$work/k.err" forget --dry-run --keep-last 1000 "$r"
  grep -q "0 snapshots, 0 packs" "$work/k.err" || fail "unreferenced packs left: $(cat "$work/k.err")"
  "$barge" verify -q "$r" || fail "verify after the sweep"
  echo "killed: the next backup removed the killed run's packs"
}

t_overlap() {
  local t=$work/ov
  mkdir -p "$t/sub"; echo data > "$t/f"
  run "$work/ov.err" backup -q "$t" "$t/sub/repo"
  [ "$rc" = 2 ] && grep -q "lies inside the source" "$work/ov.err" || fail "REPO inside SRC: exit $rc: $(cat "$work/ov.err")"
  [ ! -e "$t/sub/repo" ] || fail "REPO inside SRC: the repository was created"
  "$barge" backup -q --exclude /sub/repo/ "$t" "$t/sub/repo" || fail "REPO inside SRC, excluded: exit $?"
  check_snaps "$t/sub/repo" "assert s[0]['files'] == 1" "the excluded repository is in the snapshot"
  run "$work/ov.err" backup -q "$t/sub/repo/snapshots" "$t/sub/repo"
  [ "$rc" = 2 ] && grep -q "lies inside the repository" "$work/ov.err" || fail "SRC inside REPO: exit $rc: $(cat "$work/ov.err")"
  run "$work/ov.err" backup -q "$t/sub/repo" "$t/sub/repo/"
  [ "$rc" = 2 ] && grep -q "same directory" "$work/ov.err" || fail "SRC = REPO: exit $rc: $(cat "$work/ov.err")"
  [ "$(snap_ids "$t/sub/repo" | wc -w)" = 1 ] || fail "a refused backup wrote a snapshot"
  run "$work/ov.err" restore -q "$t/sub/repo" "$t/sub/repo/packs/x"
  [ "$rc" = 2 ] && grep -q "lies inside the repository" "$work/ov.err" || fail "DST inside REPO: exit $rc: $(cat "$work/ov.err")"
  [ ! -e "$t/sub/repo/packs/x" ] || fail "DST inside REPO: DST was created"
  # REPO inside DST: refused where the snapshot would write, allowed elsewhere
  local s2=$work/ov-src2 d=$work/ov-dst
  mkdir -p "$s2/sub/repo" "$s2/other" "$d/sub"; echo x > "$s2/sub/repo/config"; echo y > "$s2/other/f"
  "$barge" backup -q "$s2" "$d/sub/repo"
  run "$work/ov.err" restore -q "$d/sub/repo" "$d"
  [ "$rc" = 2 ] && grep -q "holds the repository" "$work/ov.err" || fail "REPO inside DST: exit $rc: $(cat "$work/ov.err")"
  "$barge" verify -q "$d/sub/repo" || fail "the refused restore damaged the repository"
  "$barge" restore -q --path other "$d/sub/repo" "$d" || fail "restore --path beside the repository: exit $?"
  [ "$(cat "$d/other/f")" = y ] || fail "restore --path beside the repository restored nothing"
  echo "overlap: every overlap refused before anything was written"
}

t_damaged() {
  local s=$work/dm-src r=$work/dm-repo
  "$barge" gen "$s" --profile small --size 1M --seed 4 -q
  "$barge" backup -q "$s" "$r"; echo 1 > "$s/n1"; "$barge" backup -q "$s" "$r"; echo 2 > "$s/n2"; "$barge" backup -q "$s" "$r"
  local ids; read -r -a ids <<< "$(snap_ids "$r")"
  flip_byte "$r/snapshots/${ids[2]}.snap" 100
  set +e; "$barge" snapshots "$r" > "$work/dm.out" 2> "$work/dm.err"; rc=$?; set -e
  [ "$rc" = 1 ] || fail "snapshots with a damaged one: exit $rc: $(cat "$work/dm.err")"
  grep -q "^${ids[0]} .* ok" "$work/dm.out" && grep -q "^${ids[1]} .* ok" "$work/dm.out" \
    && grep -q "^${ids[2]} .*DAMAGED" "$work/dm.out" || fail "snapshots table: $(cat "$work/dm.out")"
  grep -q "snapshot ${ids[2]} is damaged: .*checksum mismatch" "$work/dm.err" || fail "snapshots stderr: $(cat "$work/dm.err")"
  set +e; "$barge" snapshots --json "$r" > "$work/dm.json" 2> /dev/null; rc=$?; set -e
  [ "$rc" = 1 ] || fail "snapshots --json with a damaged one: exit $rc"
  python3 - "$work/dm.json" "${ids[2]}" <<'PY' || fail "snapshots --json: $(cat "$work/dm.json")"
import json, sys
s = json.load(open(sys.argv[1]))
assert len(s) == 3, s
assert [x["damaged"] for x in s] == [False, False, True], s
assert s[2]["id"] == sys.argv[2] and "checksum mismatch" in s[2]["error"], s
assert s[1]["kind"] == "incremental" and s[1]["files"] > 0
PY
  echo 3 > "$s/n3"
  run "$work/dm.err" backup -q --report "$work/dm-b.json" "$s" "$r"
  [ "$rc" = 0 ] || fail "backup with a damaged newest snapshot: exit $rc: $(cat "$work/dm.err")"
  grep -q "warning: passing over damaged snapshots.*${ids[2]}.*compares with ${ids[1]} instead" "$work/dm.err" || fail "no note of the fallback: $(cat "$work/dm.err")"
  [ "$(field "$work/dm-b.json" 'r["snapshot"]["kind"]')" = incremental ] && [ "$(field "$work/dm-b.json" 'r["snapshot"]["parent"]')" = "${ids[1]}" ] \
    || fail "the fallback backup: $(field "$work/dm-b.json" 'r["snapshot"]')"
  [ "$(field "$work/dm-b.json" 'r["bytes_read"]')" -lt 4096 ] || fail "the fallback backup read everything again"
  "$barge" restore -q "$r" "$work/dm-out"
  same_tree "$s" "$work/dm-out" "the backup that passed over a damaged snapshot"
  echo "damaged: listed and marked, exit 1; the incremental fell back to the newest intact snapshot"
}

t_config() {
  local s=$work/cf-src r=$work/cf-repo
  "$barge" gen "$s" --profile small --size 1M --seed 5 -q
  head -c 300000 /dev/urandom > "$s/spans-chunks"
  "$barge" backup -q --chunk-size 64K "$s" "$r"
  cp "$r/config" "$work/cf-config.orig"
  rm "$r/config"
  for cmd in "snapshots $r" "verify -q $r" "restore -q $r $work/cf-none" "backup -q $s $r"; do
    run "$work/cf.err" $cmd
    [ "$rc" = 2 ] && grep -q "run \`barge repair $r\`" "$work/cf.err" || fail "$cmd without config: exit $rc: $(cat "$work/cf.err")"
  done
  [ ! -e "$work/cf-none" ] || fail "restore without a config created DST"
  run "$work/cf.err" repair "$r"
  [ "$rc" = 0 ] && grep -q "config rebuilt from config.bak" "$work/cf.err" || fail "repair from config.bak: exit $rc: $(cat "$work/cf.err")"
  cmp -s "$r/config" "$work/cf-config.orig" || fail "the rebuilt config differs from the original"
  "$barge" verify -q "$r" || fail "verify after repair"
  "$barge" restore -q "$r" "$work/cf-out"; same_tree "$s" "$work/cf-out" "restore after repair"
  # garbled config: named, repaired from the copy
  printf 'garbage' > "$r/config"
  run "$work/cf.err" verify -q "$r"
  [ "$rc" = 2 ] && grep -q "barge repair" "$work/cf.err" || fail "garbled config: exit $rc: $(cat "$work/cf.err")"
  "$barge" repair -q "$r" && cmp -s "$r/config" "$work/cf-config.orig" || fail "repair of a garbled config"
  # neither config nor copy: derived from the snapshots (a file spans several 64 KiB chunks)
  rm "$r/config" "$r/config.bak"
  run "$work/cf.err" repair --chunk-size 128K "$r"
  [ "$rc" = 2 ] && grep -q "chunks of 65536 bytes" "$work/cf.err" || fail "repair with a wrong --chunk-size: exit $rc: $(cat "$work/cf.err")"
  run "$work/cf.err" repair "$r"
  [ "$rc" = 0 ] && grep -q "rebuilt from 1 snapshots (chunk size 65536" "$work/cf.err" || fail "repair from the snapshots: exit $rc: $(cat "$work/cf.err")"
  "$barge" verify -q "$r" || fail "verify after a derived repair"
  "$barge" backup -q --checksum --report "$work/cf.json" "$s" "$r" || fail "backup after a derived repair"
  [ "$(field "$work/cf.json" 'r["snapshot"]["bytes_stored_new"]')" = 0 ] || fail "the derived chunk size does not match: stored $(field "$work/cf.json" 'r["snapshot"]["bytes_stored_new"]') bytes again"
  # nothing to tell the chunk size from: refused unless given
  local r2=$work/cf-repo2
  "$barge" backup -q "$s" "$r2"   # 4 MiB chunks: every file is one chunk
  rm "$r2/config" "$r2/config.bak"
  run "$work/cf.err" repair "$r2"
  [ "$rc" = 2 ] && grep -q -- "--chunk-size" "$work/cf.err" || fail "repair that cannot tell the chunk size: exit $rc: $(cat "$work/cf.err")"
  [ ! -e "$r2/config" ] || fail "a refused repair wrote a config"
  "$barge" repair -q --chunk-size 4M "$r2" && "$barge" verify -q "$r2" || fail "repair --chunk-size"
  echo "config: missing and garbled configs point at repair, which rebuilt them"
}

t_lock_race() {
  local s=$work/lr-src r=$work/lr-repo
  mkdir -p "$s"; head -c $((4 << 20)) /dev/urandom > "$s/f"
  "$barge" backup -q "$s" "$r"
  local host; host=$(hostname)
  for round in 1 2 3; do
    if [ "$round" = 3 ]; then  # over a dead run's lock
      sh -c 'exit 0' & local dead=$!; wait "$dead"
      echo "$host $dead $(date +%s) backup" > "$r/lock"
    fi
    local pids=() i
    for i in 1 2 3 4 5 6 7 8; do "$barge" backup -q --mode full --level 19 "$s" "$r" 2> "$work/lr.$i" & pids+=($!); done
    local winners=() losers=0 rc
    for i in 1 2 3 4 5 6 7 8; do
      set +e; wait "${pids[$((i - 1))]}"; rc=$?; set -e
      if [ "$rc" = 0 ]; then winners+=("${pids[$((i - 1))]}"); else [ "$rc" = 2 ] && losers=$((losers + 1)); fi
    done
    [ "${#winners[@]}" = 1 ] && [ "$losers" = 7 ] || fail "round $round: ${#winners[@]} winners, $losers losers: $(cat "$work"/lr.*)"
    for i in 1 2 3 4 5 6 7 8; do
      [ "${pids[$((i - 1))]}" = "${winners[0]}" ] && continue
      grep -q "locked by barge backup on $host (this host), pid ${winners[0]}, since" "$work/lr.$i" \
        || fail "round $round: a loser names the wrong holder: $(cat "$work/lr.$i") (winner ${winners[0]})"
      ! grep -qi "remove" "$work/lr.$i" || fail "round $round: a loser invites removing a live lock: $(cat "$work/lr.$i")"
    done
    [ ! -e "$r/lock" ] || fail "round $round: lock left behind"
  done
  [ -z "$(find "$r" -maxdepth 1 \( -name '.lock-*' -o -name lock.break \))" ] || fail "lock temporaries left"
  echo "lock_race: 3 rounds of 8 backups, one winner each, losers named it"
}

t_short_id() {
  local s=$work/si-src r=$work/si-repo
  mkdir -p "$s"; echo a > "$s/a"
  "$barge" backup -q "$s" "$r"; echo b > "$s/b"; "$barge" backup -q "$s" "$r"; echo c > "$s/c"; "$barge" backup -q "$s" "$r"
  local ids; read -r -a ids <<< "$(snap_ids "$r")"
  local short; short=$("$barge" snapshots "$r" | awk -v id="${ids[2]}" '$1 == id {print $3}')
  [ "$short" = "${ids[1]:21}" ] || fail "the PARENT column shows '$short'"
  "$barge" restore -q --snapshot "$short" "$r" "$work/si-out" || fail "restore --snapshot $short (the short id) exit $?"
  [ -e "$work/si-out/b" ] && [ ! -e "$work/si-out/c" ] || fail "restore --snapshot $short restored the wrong snapshot"
  "$barge" verify -q --snapshot "$short" "$r" || fail "verify --snapshot $short exit $?"
  "$barge" restore -q --snapshot "${ids[0]:0:20}" "$r" "$work/si-out0" || fail "restore with a unique time prefix"
  run "$work/si.err" restore -q --snapshot "${ids[0]:0:4}" "$r" "$work/si-amb"
  [ "$rc" = 2 ] && grep -q "ambiguous, matches 3 snapshots" "$work/si.err" || fail "ambiguous prefix: exit $rc: $(cat "$work/si.err")"
  [ ! -e "$work/si-amb" ] || fail "an ambiguous prefix created DST"
  echo "short_id: the PARENT column's short id is accepted, an ambiguous prefix refused"
}

t_incomplete() {
  local n=$work/nb
  mkdir -p "$n/src/d"; echo ok > "$n/src/d/good"; echo secret > "$n/src/d/bad"
  chmod 711 "$work"; chown -R nobody "$n"; chmod 000 "$n/src/d/bad"
  ! setpriv --reuid=nobody --regid=nogroup --clear-groups cat "$n/src/d/bad" 2> /dev/null || fail "nobody can read a mode-000 file (test setup)"
  set +e
  setpriv --reuid=nobody --regid=nogroup --clear-groups "$barge" backup -q --report "$n/rep.json" "$n/src" "$n/repo" 2> "$n/err"; rc=$?
  set -e
  [ "$rc" = 1 ] || fail "backup with an unreadable file: exit $rc: $(cat "$n/err")"
  grep -q "d/bad: Permission denied" "$n/err" && grep -q "warning: snapshot .* is incomplete: 1 entries could not be read" "$n/err" \
    || fail "backup did not say the snapshot is incomplete: $(cat "$n/err")"
  [ "$(field "$n/rep.json" 'r["snapshot"]["incomplete"]')" = True ] || fail "report: $(cat "$n/rep.json")"
  chmod 644 "$n/src/d/bad"
  setpriv --reuid=nobody --regid=nogroup --clear-groups "$barge" backup -q "$n/src" "$n/repo" || fail "complete backup"
  check_snaps "$n/repo" "assert [x['incomplete'] for x in s] == [True, False] and s[0]['unreadable'] == 1, s" "snapshots --json marks"
  "$barge" snapshots "$n/repo" | grep -q " incomplete " || fail "the snapshots table does not mark it: $("$barge" snapshots "$n/repo")"
  echo "incomplete: marked in the report, the warning, and snapshots"
}

t_restore_dst() {
  local s=$work/rd-src r=$work/rd-repo
  "$barge" gen "$s" --profile small --size 2M --seed 6 -q
  echo linked > "$s/f1"; ln "$s/f1" "$s/m"; ln -s f1 "$s/l"
  "$barge" backup -q "$s" "$r"
  mkdir "$work/rd-real"; ln -s rd-real "$work/rd-link"
  run "$work/rd.err" restore -q "$r" "$work/rd-link"
  [ "$rc" = 2 ] && grep -q "is a symlink (to rd-real): name it $work/rd-link/" "$work/rd.err" || fail "DST a symlink: exit $rc: $(cat "$work/rd.err")"
  [ -z "$(ls -A "$work/rd-real")" ] || fail "a refused restore wrote through the symlink"
  "$barge" restore -q "$r" "$work/rd-link/" || fail "restore into LINK/ exit $?"
  same_tree "$s" "$work/rd-real" "restore through LINK/"
  # reruns complete in place, never nest
  local d=$work/rd-dst
  "$barge" restore -q "$r" "$d"
  "$barge" restore -q "$r" "$d" || fail "rerun after a success: exit $?"
  same_tree "$s" "$d" "rerun after a success"
  # temporaries of a killed run where entries 2 ("l", the symlink) and 3 ("m", a hard link)
  # are made: the rerun replaces them
  rm -rf "$d"; mkdir "$d"
  local order; order=$(cd "$s" && { echo; find . -mindepth 1 | sed 's|^\./||'; } | LC_ALL=C sort | grep -n -x -e 'l' -e 'm' | cut -d: -f1)
  local li mi; li=$(( $(echo "$order" | head -1) - 1 )); mi=$(( $(echo "$order" | tail -1) - 1 ))
  echo leftover > "$d/.barge-tmp.special.$li"; echo leftover > "$d/.barge-tmp.link.$mi"
  run "$work/rd.err" restore -q "$r" "$d"
  [ "$rc" = 0 ] || fail "rerun over a killed run's temporaries: exit $rc: $(cat "$work/rd.err")"
  same_tree "$s" "$d" "rerun over a killed run's temporaries"
  # killed mid-way, then rerun
  rm -rf "$d"
  "$barge" restore -q "$r" "$d" & local pid=$!
  sleep 0.05; kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
  "$barge" restore -q "$r" "$d" || fail "rerun after SIGKILL: exit $?"
  same_tree "$s" "$d" "rerun after SIGKILL"
  [ -z "$(find "$d" -name '.barge-tmp*')" ] || fail "temporaries left after the rerun"
  echo "restore_dst: symlink DST only as DST/; reruns complete in place"
}

cases=("$@")
[ "${#cases[@]}" -gt 0 ] || cases=(forget_full bad_options enospc killed overlap damaged config lock_race short_id incomplete restore_dst)
for c in "${cases[@]}"; do "t_$c"; done
echo "repo_faults: all checks passed"
