#!/usr/bin/env bash
# barge sync against rsync as the oracle: after each round of changes to SRC (modify 1% of
# the files, add, delete, rename, mode-only, mtime-only, type changes, symlinks), `barge sync
# --delete SRC DST` must leave DST equal (content and metadata) to what
# `rsync -aHAX --delete SRC/ DST2/` produces, alone and under mpirun -np 2 and 3. A no-op sync
# opens no source file; --dry-run changes nothing; --checksum finds a same-size, same-mtime edit.
# Usage: sync_test.sh BARGE
set -euo pipefail
barge=$(readlink -f "${1:-build/barge}")
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
work=$(mktemp -d /tmp/barge-sync-XXXXXX)
trap 'rm -rf "$work"' EXIT
source "$(dirname "$(readlink -f "$0")")/lib.sh"
run() {  # run NP ARGS...: barge alone (NP=1) or under mpirun
  local np=$1; shift
  if [ "$np" = 1 ]; then "$barge" "$@"; else mpirun -np "$np" --oversubscribe --bind-to none "$barge" "$@"; fi
}

src=$work/src
"$barge" gen "$src" --profile mixed --size 24M --seed 21 -q
mkdir -p "$src/links" "$src/typechange"
ln -s ../d000 "$src/links/reldir"
ln -s /nowhere "$src/links/dangling"
echo data > "$src/typechange/was-file"
mkdir "$src/typechange/was-dir" && echo inner > "$src/typechange/was-dir/inner"

change_round() {  # a reproducible round of changes to SRC
  local round=$1 i=0
  while IFS= read -r f; do
    i=$((i + 1))
    case $((i % 100)) in
      1) printf 'edit %s' "$round" >> "$f" ;;                     # 1% modified
      2) chmod 0640 "$f" ;;                                       # mode only
      3) touch -d "2021-0$((round + 1))-02 03:04:05.5" "$f" ;;    # mtime only
      4) mv "$f" "$f.renamed-$round" ;;                           # rename
      5) rm -f "$f" ;;                                            # delete
    esac
  done < <(find "$src/d000" -type f -name 'f*' | sort)
  echo "added in round $round" > "$src/added-$round"
  mkdir -p "$src/newdir-$round/sub" && echo x > "$src/newdir-$round/sub/file"
  if [ "$round" = 1 ]; then
    rm "$src/typechange/was-file" && mkdir "$src/typechange/was-file" && echo y > "$src/typechange/was-file/now-inside"
    rm -r "$src/typechange/was-dir" && echo file > "$src/typechange/was-dir"
    rm "$src/links/dangling" && ln -s /elsewhere "$src/links/dangling"
  fi
}

# rsync 3.x leaves the times of entries modified in the current second unset (seen here),
# which would make the oracle wrong: let a second pass after every change to SRC.
settle() { sleep 1.1; }
settle
for np in 1 2 3; do
  dst=$work/dst-$np oracle=$work/oracle-$np
  run "$np" sync -q --delete "$src" "$dst" || fail "np=$np first sync exit $?"
  rsync -aHAX --delete "$src/" "$oracle/"
  same_tree "$oracle" "$dst" "np=$np initial"
done
for round in 1 2; do
  change_round "$round"
  settle
  for np in 1 2 3; do
    dst=$work/dst-$np oracle=$work/oracle-$np
    # an extra file only DST has: --delete must remove it
    echo stale > "$dst/stale-$round"
    run "$np" sync -q --delete "$src" "$dst" || fail "np=$np round $round exit $?"
    rsync -aHAX --delete "$src/" "$oracle/"
    same_tree "$oracle" "$dst" "np=$np round $round"
    same_tree "$src" "$dst" "np=$np round $round vs src"
  done
  echo "round $round: barge sync equals rsync -aHAX --delete for np=1,2,3"
done

# A no-op sync opens no regular file under SRC (it compares metadata only).
strace -f -e trace=openat -o "$work/strace.log" "$barge" sync -q "$src" "$work/dst-1" || fail "no-op sync exit"
if grep -F "\"$src/" "$work/strace.log" | grep -v O_DIRECTORY | grep -q O_RDONLY; then
  fail "no-op sync opened source files: $(grep -F "\"$src/" "$work/strace.log" | grep -v O_DIRECTORY | head -3)"
fi
[ -z "$("$barge" sync -i "$src" "$work/dst-1")" ] || fail "no-op sync itemized changes"

# --dry-run lists and changes nothing.
echo more >> "$src/added-1"
before=$(cd "$work/dst-1" && find . -printf '%p %s %T@ %m\n' | sort | md5sum)
out=$("$barge" sync -n --delete "$src" "$work/dst-1" 2>"$work/dry.err") || fail "dry run exit $?: $(cat "$work/dry.err")"
echo "$out" | grep -q 'added-1' || fail "dry run did not list the change: $out"
after=$(cd "$work/dst-1" && find . -printf '%p %s %T@ %m\n' | sort | md5sum)
[ "$before" = "$after" ] || fail "dry run changed DST"

# --checksum catches an edit that keeps size and mtime.
f=$(find "$src/d000" -type f -size +100c | sort | sed -n 1p)  # sed reads all: no SIGPIPE under pipefail
rel=${f#"$src/"}
"$barge" sync -q "$src" "$work/dst-1" || fail "sync before the checksum edit: exit $?"
stamp=$(stat -c %y "$f")
printf 'Z' | dd of="$f" bs=1 seek=10 conv=notrunc status=none
touch -d "$stamp" "$f"
[ -z "$("$barge" sync -i "$src" "$work/dst-1" | grep -F "$rel")" ] || fail "size+mtime mode should not see the edit"
"$barge" sync -i --checksum "$src" "$work/dst-1" | grep -qF "$rel" || fail "--checksum missed the edit"
cmp -s "$f" "$work/dst-1/$rel" || fail "--checksum did not copy the edited file"
echo "sync: all checks passed"
