#!/usr/bin/env bash
# barge send --sync [--delete] [--checksum] to a barge recv on loopback, with rsync as the
# oracle: after modify / add / delete / rename / type changes, DST equals what
# `rsync -aH [--delete]` makes of the same starting tree, and only what differs is sent (the
# reports' bytes_transferred and "sync" counts). A symlink planted in DST is replaced, never
# followed; --exclude keeps DST's matching entries from --delete, as rsync's does.
#   tests/integration/send_sync_test.sh [BARGE]
set -euo pipefail
repo=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
barge=${1:-$repo/build/barge}
barge=$(readlink -f "$barge")
fail() { echo "FAIL: $*" >&2; [ -f "$work/recv.log" ] && tail -20 "$work/recv.log" >&2; exit 1; }
command -v rsync >/dev/null || fail "rsync not found"

work=$(mktemp -d "${TMPDIR:-/tmp}/barge-ss.XXXXXX")
recv_pid=
cleanup() {
  local rc=$?
  [ -n "$recv_pid" ] && kill "$recv_pid" 2>/dev/null && wait "$recv_pid" 2>/dev/null
  [ -n "${KEEP:-}" ] || rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

same() {  # same A/ B/ WHAT: content and metadata, hard links, nothing extra
  local out
  out=$(rsync -aHn --delete --itemize-changes --modify-window=-1 --checksum "$1" "$2") ||
    fail "$3: rsync failed"
  [ -z "$out" ] || fail "$3: trees differ: $(head -5 <<<"$out" | tr "\n" "|")"
}
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$1" "$2"; }

head -c 32 /dev/urandom > "$work/key"; chmod 600 "$work/key"
dst=$work/dst
rm -f "$work/port"
"$barge" recv "$dst" --listen 127.0.0.1:0 --psk-file "$work/key" --port-file "$work/port" \
  >"$work/recv.log" 2>&1 &
recv_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
[ -s "$work/port" ] || fail "recv did not start: $(cat "$work/recv.log")"
to=127.0.0.1:$(cat "$work/port")
sync_to() {  # sync_to REPORT ARGS...: send --sync SRC → DST
  local report=$1; shift
  "$barge" send -q --sync --report "$report" "$src" "$to" --psk-file "$work/key" "$@"
}

# --- the source: files, a large one split into chunks, hard links, symlinks, odd names ---
src=$work/src
"$barge" gen "$src" --profile mixed --size 24M --compressibility 0.5 --seed 5 -q
mkdir -p "$src/tree/deep/er" "$src/links" "$src/gone"
head -c 9M /dev/urandom > "$src/big"
echo one > "$src/tree/one"; echo two > "$src/tree/deep/two"; echo three > "$src/tree/deep/er/3"
echo shared > "$src/links/a"; ln "$src/links/a" "$src/links/b"
ln -s one "$src/tree/link"
printf 'odd' > "$src/tree/new
line"
echo bye > "$src/gone/file"; echo solo > "$src/solo"
echo same-size-A > "$src/tree/quiet"
sleep 1.1   # rsync leaves the times of entries changed this second unset

# --- first sync: DST missing becomes SRC's mirror ---
sync_to "$work/s1.json" --chunk-size 1M || fail "first sync: exit $?"
same "$src/" "$dst/" "first sync"
[ "$(field "$work/s1.json" 'r["sync"]["unchanged_files"]')" = 0 ] || fail "first sync: unchanged files"

# --- a no-op sync sends nothing ---
sync_to "$work/s2.json" --delete || fail "no-op sync: exit $?"
[ "$(field "$work/s2.json" 'r["bytes_transferred"]')" = 0 ] || fail "no-op sync sent bytes"
same "$src/" "$dst/" "no-op sync"
echo "first and no-op syncs: exact, no-op sent 0 bytes"

# --- changes on both sides ---
cp -a "$dst" "$work/oracle"                 # what DST was: rsync makes the expected result
echo modified >> "$src/tree/one"             # content and size
touch -d '2001-02-03 04:05:06' "$src/tree/deep/two"   # time only: metadata, no bytes
chmod 0700 "$src/tree/deep"                  # directory mode
chmod 0600 "$src/solo"                       # file mode only
echo added > "$src/tree/added"               # new file
mkdir "$src/newdir"; echo x > "$src/newdir/x" # new directory
rm -rf "$src/gone"                           # deleted directory
mv "$src/tree/deep/er" "$src/tree/renamed"   # renamed directory
rm "$src/tree/link"; ln -s deep/two "$src/tree/link"   # retargeted symlink
rm "$src/links/b"; echo b-now > "$src/links/b"         # a hard link becomes its own file
ln "$src/solo" "$src/links/solo-too"                   # a new hard link to an unchanged file
rm "$src/tree/new
line"; mkdir "$src/tree/new
line"                                                  # a file becomes a directory
echo extra > "$dst/extra"                    # DST has what SRC lacks
mkdir -p "$dst/extradir/sub"; echo e > "$dst/extradir/sub/e"
echo protected > "$dst/notes.keep"
mkdir -p "$work/outside"; echo safe > "$work/outside/safe"
rm -rf "$dst/newdir"; ln -s "$work/outside" "$dst/newdir"   # a planted symlink where SRC has a dir
ln -s "$work/outside" "$dst/planted"          # ... and one SRC lacks
cp -a "$dst/extra" "$dst/extradir" "$dst/notes.keep" "$dst/newdir" "$dst/planted" "$work/oracle/"
sleep 1.1
big_before=$(stat -c %Y "$dst/big")

# --- --sync without --delete: the changes arrive, DST's extras stay ---
rsync -aH "$src/" "$work/oracle/"
sync_to "$work/s3.json" || fail "sync: exit $?"
same "$work/oracle/" "$dst/" "sync without --delete (against rsync -aH)"
[ -f "$dst/extra" ] || fail "sync without --delete removed an extra"
[ "$(cat "$work/outside/safe")" = safe ] && [ "$(ls "$work/outside")" = safe ] ||
  fail "a planted symlink led writes outside DST"
[ -d "$dst/newdir" ] && [ ! -L "$dst/newdir" ] || fail "the planted symlink was not replaced"
sent=$(field "$work/s3.json" 'r["bytes_transferred"]')
[ "$sent" -lt 1024 ] || fail "sync sent $sent bytes for a few small changes"
[ "$(stat -c %Y "$dst/big")" = "$big_before" ] || fail "an unchanged file was rewritten"
[ "$(stat -c %i "$dst/solo")" = "$(stat -c %i "$dst/links/solo-too")" ] || fail "new hard link not made"
echo "sync: equals rsync -aH, $sent bytes sent"

# --- --delete: equals rsync -aH --delete, excluded names kept on both ---
rsync -aH --delete --exclude '*.keep' "$src/" "$work/oracle/"
sync_to "$work/s4.json" --delete --exclude '*.keep' || fail "sync --delete: exit $?"
same "$work/oracle/" "$dst/" "sync --delete (against rsync -aH --delete)"
[ -f "$dst/notes.keep" ] || fail "--delete removed an excluded name"
[ ! -e "$dst/extra" ] && [ ! -e "$dst/planted" ] || fail "--delete left extras"
[ "$(cat "$work/outside/safe")" = safe ] || fail "--delete followed a planted symlink"
deleted=$(field "$work/s4.json" 'r["sync"]["deleted"]')
[ "$deleted" -ge 3 ] || fail "--delete reported $deleted deletions"
rm "$dst/notes.keep"; touch -r "$src" "$dst"   # the later comparisons are with SRC
echo "sync --delete: equals rsync -aH --delete ($deleted removed)"

# --- --checksum: same size and mtime, other content ---
stamp=$(stat -c %y "$src/tree/quiet")
echo same-size-B > "$src/tree/quiet"; touch -d "$stamp" "$src/tree/quiet"
sync_to "$work/s5.json" --delete || fail "sync (size+mtime): exit $?"
[ "$(cat "$dst/tree/quiet")" = same-size-A ] || fail "size+mtime sync compared content"
sync_to "$work/s6.json" --delete --checksum || fail "sync --checksum: exit $?"
[ "$(cat "$dst/tree/quiet")" = same-size-B ] || fail "--checksum missed a content change"
[ "$(field "$work/s6.json" 'r["bytes_transferred"]')" = 12 ] || fail "--checksum sent more than the changed file"
same "$src/" "$dst/" "sync --checksum"
echo "sync --checksum: content change found, 12 bytes sent"

# --- --xattrs: extended attributes travel with the plan; a change alone sends no bytes ---
xattr() {  # xattr set|del|dump PATH [NAME [VALUE]]
  python3 - "$@" <<'PY'
import os, sys
op, path = sys.argv[1], sys.argv[2]
if op == "set": os.setxattr(path, sys.argv[3], bytes.fromhex(sys.argv[4]), follow_symlinks=False)
elif op == "del": os.removexattr(path, sys.argv[3], follow_symlinks=False)
else:
    names = sorted(n for n in os.listxattr(path, follow_symlinks=False) if n.startswith("user."))
    print(" ".join(n + "=" + os.getxattr(path, n, follow_symlinks=False).hex() for n in names))
PY
}
if xattr set "$src/solo" user.barge 70726f6265 2>/dev/null; then
  xattr set "$src/tree/one" user.color 626c7565
  xattr set "$src/tree/deep" user.bin 000102ff           # a directory, a binary value
  xattr set "$src/big" user.big "$(python3 -c 'import os; print(os.urandom(4000).hex())')"
  sync_to "$work/x1.json" --delete || fail "sync without --xattrs: exit $?"
  [ -z "$(xattr dump "$dst/solo")" ] || fail "extended attributes sent without --xattrs"
  sync_to "$work/x2.json" --delete --xattrs || fail "sync --xattrs: exit $?"
  for p in solo tree/one tree/deep big; do
    [ "$(xattr dump "$dst/$p")" = "$(xattr dump "$src/$p")" ] || fail "--xattrs: $p differs"
  done
  [ "$(field "$work/x2.json" 'r["bytes_transferred"]')" = 0 ] || fail "--xattrs alone sent bytes"
  xattr del "$src/solo" user.barge; xattr set "$src/tree/one" user.color 726564
  sync_to "$work/x3.json" --delete --xattrs || fail "second sync --xattrs: exit $?"
  [ -z "$(xattr dump "$dst/solo")" ] || fail "--xattrs: a removed attribute stayed"
  [ "$(xattr dump "$dst/tree/one")" = "user.color=726564" ] || fail "--xattrs: a changed value did not arrive"
  same "$src/" "$dst/" "sync --xattrs"
  echo "sync --xattrs: attributes set, changed and removed in place, 0 bytes sent"
else
  echo "sync --xattrs: NOT TESTED, $work has no user extended attributes"
fi

# --- bad input: one line naming the argument, exit 2, nothing written ---
set +e
out=$("$barge" send --delete "$src" "$to" --psk-file "$work/key" 2>&1); rc=$?
set -e
[ "$rc" = 2 ] && grep -q -- "--delete" <<<"$out" || fail "--delete without --sync: exit $rc ($out)"
set +e
out=$("$barge" send --sync "$src" "$src/big" "$to" --psk-file "$work/key" 2>&1); rc=$?
set -e
[ "$rc" = 2 ] && grep -q "one SRC directory" <<<"$out" || fail "--sync, two sources: exit $rc ($out)"
kill -0 "$recv_pid" || fail "recv exited"
echo "PASS"
