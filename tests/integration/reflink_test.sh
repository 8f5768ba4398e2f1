#!/usr/bin/env bash
# --reflink on a real XFS file system with reflink (a loop device): copy clones the source's
# extents instead of writing them (DST takes almost no new space), the checksum manifest is
# still right, the tree is exact; --reflink never writes the bytes; across file systems auto
# falls back to writing and always fails each file naming it.
# Usage: reflink_test.sh BARGE     Exit 0 pass, 77 "SKIP: reason" (not root, no loop device),
# else FAIL lines and exit 1.
set -euo pipefail
barge=$(readlink -m "${1:-build/barge}")
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
skip() { echo "SKIP: $*"; exit 77; }
[ "$(id -u)" = 0 ] || skip "needs root for a loop device"
command -v mkfs.xfs >/dev/null || fail "mkfs.xfs missing (scripts/setup installs xfsprogs)"
work=$(mktemp -d)
mnt=$work/xfs
cleanup() { umount "$mnt" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
truncate -s 1600M "$work/img"
mkfs.xfs -q -m reflink=1 "$work/img"
mkdir "$mnt"
mount -o loop "$work/img" "$mnt" 2>/dev/null || skip "cannot mount a loop device here"

used() { df -B1 --output=used "$mnt" | tail -1; }
src=$mnt/src
"$barge" gen "$src" --profile mixed --size 300M --seed 3 -q
truncate -s 64M "$src/sparse" && printf 'tail' >> "$src/sparse"
sync
bytes=$(du -sb --apparent-size "$src" | cut -f1)

# auto on XFS: cloned. The new space is metadata only, a few percent of the data at most.
before=$(used)
"$barge" copy -q --checksum-manifest "$work/M" --report "$work/r.json" "$src" "$mnt/dst" || fail "copy exit $?"
sync
grown=$(( $(used) - before ))
[ "$grown" -lt $((bytes / 20)) ] || fail "reflink copy took $grown new bytes for $bytes of data"
same_tree "$src" "$mnt/dst" "reflink copy"
"$barge" verify -q --manifest "$work/M" "$mnt/dst" || fail "verify --manifest of the cloned tree exit $?"
"$barge" verify -q --manifest "$work/M" "$src" || fail "manifest does not match the source"
filefrag -v "$mnt/dst/sparse" | grep -q shared || fail "sparse file's data extent not shared"
echo "ok: auto clones ($grown new bytes for $bytes of data); tree and manifest exact"

# auto without a manifest: once clones work, files are cloned without being read (nothing
# needs their bytes); the report counts the cloned bytes; the tree is exact.
before=$(used)
"$barge" copy -q --report "$work/plain.json" "$src" "$mnt/dst-plain" || fail "plain copy exit $?"
sync
grown=$(( $(used) - before ))
[ "$grown" -lt $((bytes / 20)) ] || fail "plain reflink copy took $grown new bytes for $bytes of data"
same_tree "$src" "$mnt/dst-plain" "plain reflink copy"
cloned=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_cloned"])' "$work/plain.json")
[ "$cloned" -gt $((bytes / 2)) ] || fail "report bytes_cloned $cloned for $bytes of data"
echo "ok: plain copy clones without reading ($grown new bytes, $cloned cloned)"

# never: the bytes are written.
before=$(used)
"$barge" copy -q --reflink never "$src" "$mnt/dst-written" || fail "--reflink never exit $?"
sync
grown=$(( $(used) - before ))
[ "$grown" -gt $((bytes / 2)) ] || fail "--reflink never took only $grown new bytes"
same_tree "$src" "$mnt/dst-written" "--reflink never"
echo "ok: never writes ($grown new bytes)"

# Across file systems: auto writes the bytes; always fails each file, naming it.
"$barge" copy -q "$src" "$work/other" || fail "auto across file systems exit $?"
same_tree "$src" "$work/other" "auto across file systems"
set +e
"$barge" copy -q --reflink always "$src/sparse" "$work/always" 2> "$work/err"; rc=$?
set -e
[ "$rc" = 1 ] || fail "--reflink always across file systems exit $rc (want 1)"
grep -q "reflink .*always.*\|reflink $work/always" "$work/err" || fail "--reflink always message: $(head -3 "$work/err")"
[ ! -e "$work/always" ] || fail "--reflink always left a destination file"
echo "ok: across file systems auto writes, always fails naming the file"

# Clones that stop working mid-run: the second root is on ext4, so its files (left unread
# once the first root's clones worked) are read after their clone fails, then written.
"$barge" copy -q "$src" "$work/ext4-src" || fail "copy to ext4 exit $?"
mkdir "$mnt/multi"
"$barge" copy -q --report "$work/multi.json" "$src" "$work/ext4-src" "$mnt/multi" || fail "two-root copy exit $?"
same_tree "$src" "$mnt/multi/src" "two-root copy, cloned root"
same_tree "$src" "$mnt/multi/ext4-src" "two-root copy, root on another file system"
echo "ok: a root whose clones fail is read and written; both roots exact"
