#!/usr/bin/env bash
# Hard links, sparse files, extended attributes and --exclude/--include in barge copy and
# barge sync, alone and under mpirun -np 2 and 3, with rsync -aHAX as the oracle:
#  - link groups stay link groups (also when the names sit in directories walked by
#    different ranks, and for a file split into chunks over ranks);
#  - sparse files keep their holes (apparent size equal, allocation about the source's,
#    no data where the source has a hole);
#  - --xattrs copies user.* (and trusted.* as root) on files, directories and SRC itself,
#    binary, empty and large values included; without it nothing is copied;
#  - --exclude/--include: name patterns, path patterns, an excluded directory is not
#    descended, an excluded name in DST survives sync --delete;
#  - sync after adding and removing links, changing and removing xattrs, punching a hole.
# Usage: metadata_test.sh BARGE
# Exit 0: pass; 77 + "SKIP: reason": the file system lacks user xattrs or sparse files;
# else "FAIL: ..." lines and exit 1.
set -euo pipefail
barge=$(readlink -m "${1:-build/barge}")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export LC_ALL=C
skip() { echo "SKIP: $*"; exit 77; }
die() { echo "FAIL: $*" >&2; exit 1; }
nfail=0 mark=0
fail() { echo "FAIL: $*" >&2; nfail=$((nfail + 1)); }
begin() { mark=$nfail; }          # begin; ...checks...; passed "what passed"
passed() { if [ "$nfail" = "$mark" ]; then echo "ok: $*"; fi; }

for tool in rsync python3 setfattr getfattr fallocate truncate; do
  command -v "$tool" >/dev/null || die "$tool is not installed (setfattr/getfattr: package attr)"
done
[ -x "$barge" ] || die "no barge binary at $barge"

# xattrs and sparse files need a real file system: /var/tmp (not a tmpfs /tmp).
work=$(mktemp -d /var/tmp/barge-meta-XXXXXX)
trap 'rm -rf "$work"' EXIT
fstype=$(findmnt -n -o FSTYPE -T "$work" 2>/dev/null || echo unknown)
root=0; [ "$(id -u)" = 0 ] && root=1

# ---- feature probes: skip only when the file system really lacks the feature ----
: > "$work/probe"
setfattr -n user.probe -v 1 "$work/probe" 2>/dev/null || skip "$fstype at $work refuses user xattrs"
truncate -s 8M "$work/probe"
printf x | dd of="$work/probe" bs=1 seek=$((4 << 20)) conv=notrunc status=none
[ $(( $(stat -c '%b * %B' "$work/probe") )) -lt $((1 << 20)) ] || skip "$fstype at $work does not keep holes"
rm -f "$work/probe"

run() {  # run NP ARGS...: barge alone (NP=1) or under mpirun
  local np=$1; shift
  if [ "$np" = 1 ]; then "$barge" "$@"; else mpirun -np "$np" --oversubscribe --bind-to none "$barge" "$@"; fi
}
barge_ok() {  # barge_ok LABEL NP ARGS...: run barge; on a non-zero exit, one FAIL line and status 1
  local label=$1 np=$2 rc=0 out; shift 2
  out=$(run "$np" "$@" 2>&1) || rc=$?
  if [ "$rc" != 0 ]; then
    fail "$label: barge ${*//$work/W} exited $rc$( [ "$rc" -gt 128 ] && echo " (signal $((rc - 128)))"): $(echo "$out" | grep -v '^\[[^]]*:[0-9]*\]\|^---\|^ *$' | head -4 | tr '\n' ';')"
    return 1
  fi
  [ -z "$out" ] || fail "$label: -q printed: $(echo "$out" | head -3 | tr '\n' ';')"
}
same_tree() {  # same_tree A B LABEL: rsync sees nothing to change from A to B
  local out
  out=$(rsync -aHAXn --delete --itemize-changes --modify-window=-1 --checksum "$1/" "$2/" 2>&1) ||
    { fail "$3: rsync compare failed: $out"; return 0; }
  [ -z "$out" ] || fail "$3: trees differ (rsync -aHAXn $1/ $2/): $(echo "$out" | head -8 | tr '\n' ';')"
}
# ---- one line per (entry, xattr): "path<TAB>name=0xvalue", sorted ----
xattr_dump() {
  (cd "$1" && find . -print0 | sort -z | xargs -0 getfattr -h -d -m - -e hex -- 2>&1) |
    awk '/^# file: /{f=substr($0, 9); next} NF{print f "\t" $0}' | sort
}
check_xattrs() {  # check_xattrs SRC DST LABEL
  local d
  d=$(diff <(xattr_dump "$1") <(xattr_dump "$2")) || fail "$3: xattrs differ (< src, > dst): $(echo "$d" | head -8 | tr '\n' ';')"
}
# bytes of DST's file that are data (SEEK_DATA) where SRC's file has a hole
extra_data() {
  python3 - "$1" "$2" <<'PY'
import os, sys
def ranges(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        size, off, out = os.fstat(fd).st_size, 0, []
        while off < size:
            try:
                d = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            h = os.lseek(fd, d, os.SEEK_HOLE)
            out.append((d, h)); off = h
        return out
    finally:
        os.close(fd)
src, dst = ranges(sys.argv[1]), ranges(sys.argv[2])
extra = 0
for d0, d1 in dst:
    covered = sum(max(0, min(d1, s1) - max(d0, s0)) for s0, s1 in src)
    extra += (d1 - d0) - covered
print(extra)
PY
}
alloc() { echo $(( $(stat -c '%b * %B' "$1") )); }
sparse_files=(sparse/big sparse/small sparse/tailhole sparse/allhole)
check_sparse() {  # check_sparse SRC DST LABEL
  local f s d as ad extra
  for f in "${sparse_files[@]}"; do
    s=$1/$f d=$2/$f
    [ -f "$d" ] || { fail "$3: $f missing"; continue; }
    cmp -s "$s" "$d" || fail "$3: $f content differs"
    as=$(du -B1 --apparent-size "$s" | cut -f1) ad=$(du -B1 --apparent-size "$d" | cut -f1)
    [ "$as" = "$ad" ] || fail "$3: $f apparent size $ad, source $as"
    as=$(alloc "$s") ad=$(alloc "$d")
    [ "$ad" -le $((as + 65536)) ] || fail "$3: $f not sparse: $ad bytes allocated, source $as (du -B1: $(du -B1 "$d" | cut -f1))"
    extra=$(extra_data "$s" "$d")
    [ "$extra" -le 65536 ] || fail "$3: $f has $extra bytes of data where the source has holes (filefrag: $(filefrag "$d" 2>&1))"
  done
}
check_links() {  # check_links SRC DST LABEL "GROUP1 NAMES" "GROUP2 NAMES" ... (names relative)
  local s=$1 d=$2 label=$3; shift 3
  local group name first ino n sn seen=" "
  for group in "$@"; do
    first=""
    for name in $group; do
      [ -e "$d/$name" ] || { fail "$label: link $name missing"; continue 2; }
      read -r ino n < <(stat -c '%i %h' "$d/$name")
      sn=$(stat -c %h "$s/$name")
      [ "$n" = "$sn" ] || fail "$label: $name has $n links, source $sn (group: $group)"
      if [ -z "$first" ]; then
        first=$ino
        case $seen in *" $ino "*) fail "$label: group '$group' shares inode $ino with another group";; esac
        seen="$seen$ino "
      elif [ "$ino" != "$first" ]; then
        fail "$label: $name (inode $ino) is not linked to the rest of '$group' (inode $first)"
      fi
    done
  done
}
groups=("d1/a d2/b d3/deep/c" "g2/x g2/y" "d1/big1 d3/big2" "h/keep h/drop.tmp" "g5/p g5/q"
        "sparse/small d4/small-link" "$(echo fill0{0..9}/many)")
singles=(d4/same-as-a sparse/big xattr/file1)
check_singles() {  # files that must not be linked to anything
  local f n
  for f in "${singles[@]}"; do
    [ -e "$2/$f" ] || { fail "$3: $f missing"; continue; }
    n=$(stat -c %h "$2/$f")
    [ "$n" = 1 ] || fail "$3: $f has $n links, must be 1"
  done
}
check_all() {  # check_all SRC DST LABEL: every check of a full --xattrs copy
  check_links "$1" "$2" "$3" "${groups[@]}"
  check_singles "$1" "$2" "$3"
  diff -r --no-dereference "$1" "$2" >/dev/null 2>&1 || fail "$3: contents differ: $(diff -rq --no-dereference "$1" "$2" 2>&1 | head -3 | tr '\n' ';')"
  check_sparse "$1" "$2" "$3"
  check_xattrs "$1" "$2" "$3"
  same_tree "$1" "$2" "$3"
}

# ---------------------------------------------------------------- the source tree
src=$work/src
mkdir -p "$src"/{d1/sub,d2/sub,d3/deep,d4,g2,h,sparse,xattr/dir/inner,cache/sub,d1/cache}
for i in 00 01 02 03 04 05 06 07 08 09; do  # filler, so the ranks have directories to share
  mkdir -p "$src/fill$i/in"
  for j in 1 2 3; do echo "fill $i $j" > "$src/fill$i/f$j"; done
  echo "inner $i" > "$src/fill$i/in/g"
done
# link group 1: three names in three directories
echo "linked content" > "$src/d1/a"
ln "$src/d1/a" "$src/d2/b"
ln "$src/d1/a" "$src/d3/deep/c"
cp "$src/d1/a" "$src/d4/same-as-a"   # same content, not a link
# link group 2: two names in one directory
echo "second group" > "$src/g2/x"
ln "$src/g2/x" "$src/g2/y"
# link group 3: a file of several chunks (--chunk-size 1M) with names in two directories
head -c $((3 << 20)) /dev/urandom > "$src/d1/big1"
ln "$src/d1/big1" "$src/d3/big2"
# link group 4: one name is exclude fodder
echo "kept or dropped" > "$src/h/keep"
ln "$src/h/keep" "$src/h/drop.tmp"
# link group 5: one name becomes a file of its own in the sync test
mkdir -p "$src/g5" && echo "group five" > "$src/g5/p"
ln "$src/g5/p" "$src/g5/q"
# link group 7: ten names, one in each filler directory
echo many > "$src/fill00/many"
for i in 01 02 03 04 05 06 07 08 09; do ln "$src/fill00/many" "$src/fill$i/many"; done

# sparse files: 64 MiB with data at 0 (12 MiB), 20 MiB (1 MiB) and the last 4 KiB; a 1 MiB hole
# then 10 bytes; data then a trailing hole; nothing but a hole
truncate -s 64M "$src/sparse/big"
dd if=/dev/urandom of="$src/sparse/big" bs=1M count=12 conv=notrunc status=none
dd if=/dev/urandom of="$src/sparse/big" bs=1M seek=20 count=1 conv=notrunc status=none
dd if=/dev/urandom of="$src/sparse/big" bs=4K seek=$((64 * 256 - 1)) count=1 conv=notrunc status=none
truncate -s 1M "$src/sparse/small"
printf '0123456789' >> "$src/sparse/small"
printf 'head data' > "$src/sparse/tailhole"
truncate -s 5M "$src/sparse/tailhole"
truncate -s 3M "$src/sparse/allhole"
ln "$src/sparse/small" "$src/d4/small-link"   # link group 6: a sparse file
[ "$(alloc "$src/sparse/big")" -lt $((16 << 20)) ] || skip "$fstype at $work did not keep sparse/big sparse"

# xattrs: text, binary, empty and large values, many names; on files, directories, SRC itself
# and a hard-linked inode; trusted.* as root
echo "has xattrs" > "$src/xattr/file1"
echo "more xattrs" > "$src/xattr/dir/inner/file2"
setfattr -n user.project -v alpha "$src/xattr/file1"
setfattr -n user.bin -v 0x00ff10 "$src/xattr/file1"
setfattr -n user.empty "$src/xattr/file1"
setfattr -n user.large -v "$(head -c 1500 /dev/zero | tr '\0' L)" "$src/xattr/file1"
for i in $(seq 1 20); do setfattr -n "user.many$i" -v "value $i" "$src/xattr/dir/inner/file2"; done
setfattr -n user.project -v alpha "$src/xattr/dir"
setfattr -n user.dirbin -v 0x0001020304 "$src/xattr/dir/inner"
setfattr -n user.linked -v "on a linked inode" "$src/d1/a"
setfattr -n user.root -v top "$src"
setfattr -n user.sparse -v holes "$src/sparse/big"
if [ "$root" = 1 ]; then
  setfattr -n trusted.tag -v secret "$src/xattr/file1"
  setfattr -n trusted.tag -v 0xdeadbeef "$src/xattr/dir"
fi

# exclude fodder: *.tmp in several directories, cache/ (a directory, contents included, also
# nested), an important.tmp that --include keeps, an important.tmp inside cache/ (which must
# stay out: an excluded directory is not descended), a path pattern
for f in top.tmp d1/x.tmp d2/sub/y.tmp d3/deep/z.tmp xattr/dir/w.tmp; do echo "tmp $f" > "$src/$f"; done
setfattr -n user.project -v tmpfile "$src/d1/x.tmp"
echo keep > "$src/important.tmp"
echo keep > "$src/d2/important.tmp"
echo cached > "$src/cache/blob"
echo cached > "$src/cache/sub/blob2"
echo inside > "$src/cache/important.tmp"
echo nested > "$src/d1/cache/n"
echo "a file named cache.txt" > "$src/d2/cache.txt"
echo "log" > "$src/d1/sub/a.log"
echo "log" > "$src/d2/sub/a.log"
echo "not a log" > "$src/d1/sub/a.txt"

# some metadata worth keeping
chmod 0750 "$src/d3"
touch -d '2003-04-05 06:07:08.123456789' "$src/d4/same-as-a"

# rsync 3.x leaves the times of entries modified in the current second unset: let it pass.
sleep 1.1

# ---------------------------------------------------------------- 2. copy --xattrs, np 1-3
for np in 1 2 3; do
  begin
  dst=$work/copy-$np
  barge_ok "copy np=$np" "$np" copy -q --xattrs --chunk-size 1M "$src" "$dst" || continue
  check_all "$src" "$dst" "copy np=$np"
  passed "copy --xattrs np=$np: links, sparse files, xattrs and rsync -aHAX oracle ok"
done

# ---------------------------------------------------------------- 3. --exclude / --include
# np=1 and 3 into a new DST; np=2 into an existing directory (SRC lands in DST/src: patterns
# stay relative to SRC)
for run in "1 new" "3 new" "2 into"; do
  begin
  read -r np mode <<<"$run"
  label="exclude copy np=$np ($mode DST)" oracle=$work/ex-oracle-$np
  if [ "$mode" = new ]; then target=$work/ex-$np dst=$target
  else target=$work/ex-into-$np/ dst=$work/ex-into-$np/src; mkdir "$target"; fi
  barge_ok "$label" "$np" copy -q --chunk-size 1M --exclude '*.tmp' --exclude cache \
    --include important.tmp --exclude 'd1/sub/*.log' --exclude 'fill0[2-4]' "$src" "$target" || continue
  [ -d "$dst" ] || { fail "$label: $dst not created"; continue; }
  got=$(cd "$dst" && find . -name '*.tmp' | sort | tr '\n' ' ')
  [ "$got" = "./d2/important.tmp ./important.tmp " ] || fail "$label: *.tmp present: '$got' (want only ./d2/important.tmp ./important.tmp)"
  got=$(cd "$dst" && find . -name cache | sort | tr '\n' ' ')
  [ -z "$got" ] || fail "$label: cache present: $got"
  if [ -e "$dst/d1/sub/a.log" ]; then fail "$label: d1/sub/a.log not excluded by the path pattern d1/sub/*.log"; fi
  [ -e "$dst/d2/sub/a.log" ] || fail "$label: d2/sub/a.log excluded (d1/sub/*.log is a path pattern, not a name)"
  [ -e "$dst/d1/sub/a.txt" ] || fail "$label: d1/sub/a.txt missing"
  [ -e "$dst/d2/cache.txt" ] || fail "$label: d2/cache.txt missing ('cache' must match whole names only)"
  got=$(cd "$dst" && ls -d fill* | tr '\n' ' ')
  [ "$got" = "fill00 fill01 fill05 fill06 fill07 fill08 fill09 " ] || fail "$label: fill0[2-4] not excluded as a bracket glob: $got"
  [ "$(stat -c %h "$dst/fill00/many" 2>/dev/null)" = 7 ] || fail "$label: fill00/many has $(stat -c %h "$dst/fill00/many" 2>&1) links, want 7 (3 names excluded)"
  if [ -e "$dst/h/keep" ] && [ "$(stat -c %h "$dst/h/keep")" != 1 ]; then
    fail "$label: h/keep has $(stat -c %h "$dst/h/keep") links, its other name is excluded"
  fi
  # rsync takes the first matching rule: the include goes first; a leading / anchors a path
  rsync -aH --include important.tmp --exclude '*.tmp' --exclude cache --exclude '/d1/sub/*.log' \
    --exclude 'fill0[2-4]' "$src/" "$oracle/"
  n=$(find "$dst" | wc -l) on=$(find "$oracle" | wc -l)
  [ "$n" = "$on" ] || fail "$label: $n entries, rsync's filtered copy has $on"
  same_tree "$oracle" "$dst" "$label vs rsync --exclude oracle"
  # no --xattrs: no xattrs copied
  got=$(xattr_dump "$dst")
  [ -z "$got" ] || fail "$label: xattrs copied without --xattrs: $(echo "$got" | head -3 | tr '\n' ';')"
  [ "$mode" = new ] || [ "$(ls -A "$target")" = src ] || fail "$label: $target holds $(ls -A "$target" | tr '\n' ' '), want only src"
  passed "$label: equals rsync's filtered copy"
done

# ---------------------------------------------------------------- 4. sync
for np in 1 2; do
  begin
  dst=$work/sync-$np
  barge_ok "sync np=$np first" "$np" sync -q --delete --xattrs --chunk-size 1M "$src" "$dst" || continue
  check_all "$src" "$dst" "sync np=$np first"
  rsync -aHAX --delete "$src/" "$work/sync-oracle-$np/"
  passed "sync --delete --xattrs np=$np into an empty DST: links, sparse files, xattrs, rsync oracle"
done

# changes: a new link to group 1 (in a new directory) and to group 3 (in an existing one), one
# link of group 1 removed, a file of its own replaced by a link to group 1, a name of group 5
# replaced by a file of its own, group 2's content changed in place (both names must follow
# and stay linked), xattr values changed (also on SRC itself and on a linked inode), one
# removed, one added to a directory, a new hole punched into sparse/big
mkdir "$src/d5"
ln "$src/d1/a" "$src/d5/new-link"
ln "$src/d1/big1" "$src/g2/big3"
rm "$src/d3/deep/c"
ln -f "$src/d1/a" "$src/d4/same-as-a"
rm "$src/g5/q" && echo "q on its own" > "$src/g5/q"
setfattr -n user.root -v top2 "$src"
echo "second group, edited" >> "$src/g2/x"
setfattr -n user.project -v beta "$src/xattr/file1"
setfattr -x user.bin "$src/xattr/file1"
setfattr -n user.added -v 0x7f00 "$src/xattr/dir/inner"
setfattr -n user.linked -v "changed on the linked inode" "$src/d1/a"
before=$(alloc "$src/sparse/big")
fallocate -p -o 8M -l 4M "$src/sparse/big"
[ "$(alloc "$src/sparse/big")" -le $((before - (4 << 20))) ] || die "fallocate -p did not free 4 MiB in SRC (test set-up)"
groups=("d1/a d2/b d5/new-link d4/same-as-a" "g2/x g2/y" "d1/big1 d3/big2 g2/big3" "h/keep h/drop.tmp"
        "sparse/small d4/small-link" "$(echo fill0{0..9}/many)")
singles=(g5/p g5/q sparse/big xattr/file1)
sleep 1.1

for np in 1 2; do
  begin
  dst=$work/sync-$np oracle=$work/sync-oracle-$np
  [ -d "$dst" ] || continue
  setfattr -n user.stray -v only-in-dst "$dst/xattr/file1"   # sync --xattrs must remove it
  barge_ok "sync np=$np second" "$np" sync -q --delete --xattrs --chunk-size 1M "$src" "$dst" || continue
  label="sync np=$np after changes"
  if [ -e "$dst/d3/deep/c" ]; then fail "$label: removed link d3/deep/c still in DST"; fi
  [ "$(cat "$dst/g5/p" 2>&1)" = "group five" ] || fail "$label: g5/p changed to '$(cat "$dst/g5/p" 2>&1)' (written through the old link g5/q?)"
  check_all "$src" "$dst" "$label"
  rsync -aHAX --delete "$src/" "$oracle/"
  same_tree "$oracle" "$dst" "$label vs rsync -aHAX --delete oracle"
  passed "sync --delete --xattrs np=$np: equals rsync -aHAX --delete after link/xattr/hole changes"
done

# sync --delete with --exclude: excluded names only DST has survive (a directory too, with its
# contents), excluded names SRC has are not transferred, an --include'd name only DST has is
# deleted like any other, everything else is mirrored
echo "tmp edited" >> "$src/d1/x.tmp"
echo "new tmp" > "$src/d4/new.tmp"
echo "new plain" > "$src/d4/new-plain"
echo "new in cache" > "$src/cache/new"
for np in 1 2; do
  dst=$work/sync-$np
  [ -d "$dst" ] || continue
  echo "only in dst" > "$dst/only-dst.tmp"
  echo "only in dst" > "$dst/d2/sub/only-dst.tmp"
  mkdir -p "$dst/d4/cache/deeper" && echo "only in dst" > "$dst/d4/cache/deeper/kept"
  echo "only in dst" > "$dst/d4/important.tmp"
  echo "stale" > "$dst/d2/stale"
done
sleep 1.1   # before rsync copies DST (see above)
for np in 1 2; do
  begin
  dst=$work/sync-$np oracle=$work/sync-ex-oracle-$np
  [ -d "$dst" ] || continue
  rsync -aHAX "$dst/" "$oracle/"
  label="sync --exclude np=$np"
  barge_ok "$label" "$np" sync -q --delete --xattrs --exclude '*.tmp' --exclude cache \
    --include important.tmp "$src" "$dst" || continue
  [ -e "$dst/only-dst.tmp" ] || fail "$label: excluded only-dst.tmp deleted by --delete"
  [ -e "$dst/d2/sub/only-dst.tmp" ] || fail "$label: excluded d2/sub/only-dst.tmp deleted by --delete"
  [ -e "$dst/d4/cache/deeper/kept" ] || fail "$label: excluded directory d4/cache (only in DST) deleted or emptied by --delete"
  if [ -e "$dst/d4/important.tmp" ]; then fail "$label: d4/important.tmp (only in DST, --include'd) survived --delete"; fi
  if [ -e "$dst/d2/stale" ]; then fail "$label: d2/stale (not excluded, not in SRC) survived --delete"; fi
  if [ -e "$dst/d4/new.tmp" ]; then fail "$label: excluded d4/new.tmp transferred"; fi
  if [ -e "$dst/cache/new" ]; then fail "$label: cache/new transferred (cache is excluded)"; fi
  if cmp -s "$src/d1/x.tmp" "$dst/d1/x.tmp"; then fail "$label: excluded d1/x.tmp updated"; fi
  cmp -s "$src/d4/new-plain" "$dst/d4/new-plain" || fail "$label: d4/new-plain not transferred"
  rsync -aHAX --delete --include important.tmp --exclude '*.tmp' --exclude cache "$src/" "$oracle/"
  same_tree "$oracle" "$dst" "$label vs rsync --exclude --delete oracle"
  passed "$label: excluded names kept, --include'd DST-only name deleted, equals rsync"
done

[ "$nfail" = 0 ] || { echo "metadata: $nfail checks failed" >&2; exit 1; }
echo "metadata: all checks passed"
