#!/usr/bin/env bash
# barge send and barge recv under mpirun at both ends, across four hosts (network namespaces
# m-h1 … m-h4): the sender's ranks on h1 and h2, the receiver's on h3 and h4, every rank
# with its own streams. Checks, with rsync as the oracle:
#   - a tree with large files (split across ranks and streams), hard links, a sparse file,
#     symlinks, a fifo, odd names and (--xattrs) extended attributes arrives exact, every
#     rank of both ends moving bytes;
#   - --sync --delete after modify/add/delete/rename equals rsync -aH --delete;
#   - kill -9 of a sending rank mid-transfer ends both jobs within seconds (no rank hangs,
#     the receiver exits 75), and --resume completes exactly, sending less than everything.
#   tests/integration/send_ranks_test.sh [BARGE]
# Exit 0: pass; 77 + "SKIP: reason": network namespaces cannot be made here; else: fail.
set -euo pipefail
repo=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
barge=${1:-$repo/build/barge}
barge=$(readlink -f "$barge")
prefix=m-
export BARGE_NETNS_PREFIX=$prefix
skip() { echo "SKIP: $*"; exit 77; }
fail() {
  echo "FAIL: $*" >&2
  for f in recv.log send.log; do [ -f "$work/$f" ] && { echo "--- $f" >&2; tail -20 "$work/$f" >&2; }; done
  exit 1
}
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
command -v mpirun >/dev/null || fail "mpirun (Open MPI) not found"
command -v rsync >/dev/null || fail "rsync not found"

work=$(mktemp -d "${TMPDIR:-/tmp}/barge-sranks.XXXXXX")
recv_pid=
cleanup() {
  local rc=$?
  [ -n "$recv_pid" ] && kill "$recv_pid" 2>/dev/null && wait "$recv_pid" 2>/dev/null
  "$repo/scripts/netns-cluster.sh" down >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR
"$repo/scripts/netns-cluster.sh" up 4 >/dev/null || skip "cannot create network namespaces"

same() {  # same SRC/ DST/ WHAT: content and metadata, hard links
  local out
  out=$(rsync -aHn --delete --itemize-changes --modify-window=-1 --checksum "$1" "$2") || fail "$3: rsync failed"
  [ -z "$out" ] || fail "$3: trees differ: $(head -5 <<<"$out")"
}
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$1" "$2"; }

port=47310
# start_recv DST [ARGS]: `barge recv --once` as two ranks on h3 and h4 (ports 47310, 47311).
start_recv() {
  local dst=$1; shift
  BARGE_NETNS_FIRST=3 setsid timeout -k 5 120 "$repo/scripts/mpirun-netns.sh" 2 2 -- \
    "$barge" recv "$dst" --listen "0.0.0.0:$port" --psk-file "$work/key" --once "$@" \
    >"$work/recv.log" 2>&1 &
  recv_pid=$!
  local k ok
  for k in 3 4; do
    ok=0
    for _ in $(seq 200); do
      if ip netns exec "${prefix}h$k" ss -ltn | grep -q ":$((port + k - 3)) "; then ok=1; break; fi
      sleep 0.05
    done
    [ "$ok" = 1 ] || fail "recv rank on h$k is not listening"
  done
}
# send_ranks ARGS: `barge send` as two ranks on h1 and h2 to rank 0 of the receiver.
send_ranks() {
  BARGE_NETNS_FIRST=1 setsid timeout -k 5 120 "$repo/scripts/mpirun-netns.sh" 2 2 -- \
    "$barge" send -q --psk-file "$work/key" "$@" >"$work/send.log" 2>&1
}

head -c 32 /dev/urandom > "$work/key"; chmod 600 "$work/key"

# --- the source ---
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
truncate -s 48M "$src/sparse"
printf 'data' | dd of="$src/sparse" bs=1 seek=$((24 << 20)) conv=notrunc status=none
head -c 24M /dev/urandom > "$src/big1"
head -c 17M /dev/urandom > "$src/big2"
ln "$src/big2" "$src/links/big2-link"
chown 1234:5678 "$src/odd dir/new
line"
chmod 0751 "$src/odd dir"
# Extended attributes on a large file (written by both receiving ranks, put in place by rank
# 0), a directory and a hard-linked file: sent with --xattrs.
xattrs_of() {  # the user.* attributes of each path, one line each
  python3 -c 'import os, sys
for p in sys.argv[1:]:
    print(sorted((n, os.getxattr(p, n)) for n in os.listxattr(p) if n.startswith("user.")))' "$@"
}
python3 -c 'import os, sys
for p, n, v in zip(sys.argv[1::3], sys.argv[2::3], sys.argv[3::3]): os.setxattr(p, n, v.encode())' \
  "$src/big1" user.part large "$src/odd dir" user.dir yes "$src/links/a" user.link shared
sleep 1.1   # rsync leaves times of entries changed this second unset

# --- two sending hosts → two receiving hosts ---
start_recv "$work/dst" --report "$work/recv.json"
send_ranks --chunk-size 1M --streams 3 --xattrs --report "$work/send.json" "$src" "10.50.0.3:$port" \
  || fail "send: exit $?"
wait "$recv_pid" || fail "recv: exit $?"; recv_pid=
same "$src/" "$work/dst/" "h1+h2 → h3+h4"
[ "$(stat -c %i "$work/dst/links/a")" = "$(stat -c %i "$work/dst/odd dir/c")" ] || fail "hard link lost"
[ "$(du -k "$work/dst/sparse" | cut -f1)" -lt 1024 ] || fail "sparse file arrived dense"
[ -z "$(find "$work/dst" -name '.barge*')" ] || fail "temporaries left in DST"
[ "$(xattrs_of "$work/dst/big1" "$work/dst/odd dir" "$work/dst/links/b")" = \
  "$(xattrs_of "$src/big1" "$src/odd dir" "$src/links/b")" ] || fail "--xattrs: attributes differ"
[ "$(xattrs_of "$work/dst/big1")" != "[]" ] || fail "--xattrs: none arrived"
[ "$(field "$work/send.json" 'r["exit_code"]')" = 0 ] || fail "send report exit code"
# Every rank of both ends moved bytes, on its own host.
recv_hosts=$(field "$work/recv.json" '" ".join(sorted(k["host"] for k in r["ranks"] if k["bytes"] > 0))')
send_hosts=$(field "$work/send.json" '" ".join(sorted(k["host"] for k in r["send_ranks"] if k["bytes"] > 0))')
[ "$recv_hosts" = "h3 h4" ] || fail "receiving ranks with bytes: '$recv_hosts' (want h3 h4)"
[ "$send_hosts" = "h1 h2" ] || fail "sending ranks with bytes: '$send_hosts' (want h1 h2)"
total=$(field "$work/send.json" 'r["bytes"]')
echo "h1+h2 → h3+h4: exact ($(field "$work/send.json" 'r["files"]') files, $total bytes)"

# --- --sync --delete across ranks, rsync as the oracle ---
mod=$work/mod
cp -a "$src" "$mod"
f=$(cd "$mod" && find . -type f -size +1k -name 'f*' | sort | sed -n 1,3p)
for x in $f; do printf 'changed' >> "$mod/$x"; done
rm -f "$mod/$(cd "$mod" && find . -type f -name 'f*' | sort | sed -n 10p)"
mv "$mod/big1" "$mod/big1-renamed"
echo new > "$mod/odd dir/added"
sleep 1.1   # as above: rsync, the oracle, leaves this second's times unset
cp -a "$work/dst" "$work/oracle"
rsync -aH --delete "$mod/" "$work/oracle/"
start_recv "$work/dst" --report "$work/recv-sync.json"
send_ranks --sync --delete --chunk-size 1M --streams 2 --report "$work/sync.json" "$mod" \
  "10.50.0.3:$port" || fail "send --sync: exit $?"
wait "$recv_pid" || fail "recv (sync): exit $?"; recv_pid=
same "$mod/" "$work/dst/" "sync --delete"
same "$work/oracle/" "$work/dst/" "sync --delete against rsync"
sent=$(field "$work/sync.json" 'r["bytes_transferred"]')
[ "$sent" -lt $((total / 2)) ] || fail "sync sent $sent of $total bytes"
echo "sync --delete: equals rsync's result ($sent bytes sent)"

# --- kill -9 of a sending rank, then --resume ---
start_recv "$work/dst2" --report "$work/recv-killed.json"
BARGE_NETNS_FIRST=1 setsid timeout -k 5 120 "$repo/scripts/mpirun-netns.sh" 2 2 -- \
  "$barge" send -q --psk-file "$work/key" --chunk-size 1M --streams 2 --bwlimit 25M --retries 0 \
  "$src" "10.50.0.3:$port" >"$work/send.log" 2>&1 &
send_pid=$!
barge_on_h2() {  # the pid of the barge process in h2's namespace (the sending rank there)
  local p
  for p in $(ip netns pids "${prefix}h2"); do
    [ "$(cat "/proc/$p/comm" 2>/dev/null)" = barge ] && { echo "$p"; return 0; }
  done
  return 0
}
victim=
for _ in $(seq 200); do
  victim=$(barge_on_h2)
  [ -n "$victim" ] && [ -d "$work/dst2" ] && break
  sleep 0.05
done
[ -n "$victim" ] || fail "no sending rank on h2"
sleep 1.5
kill -9 "$victim"
t0=$(date +%s)
set +e
wait "$send_pid"; send_rc=$?
wait "$recv_pid"; recv_rc=$?
set -e
recv_pid=
took=$(( $(date +%s) - t0 ))
[ "$send_rc" != 0 ] || fail "send survived the loss of a rank"
[ "$recv_rc" = 75 ] || fail "recv after a lost sender rank: exit $recv_rc (want 75, resumable)"
[ "$took" -le 45 ] || fail "the jobs took $took s to end after a rank died"
start_recv "$work/dst2" --report "$work/recv-resumed.json"
send_ranks --resume --chunk-size 1M --streams 2 --report "$work/resumed.json" "$src" \
  "10.50.0.3:$port" || fail "send --resume: exit $?"
wait "$recv_pid" || fail "recv (resume): exit $?"; recv_pid=
same "$src/" "$work/dst2/" "kill -9 of a rank, then --resume"
resent=$(field "$work/resumed.json" 'r["bytes_transferred"]')
[ "$resent" -lt "$total" ] || fail "--resume sent $resent bytes, all of $total"
echo "kill -9 of a sending rank: both jobs ended in $took s; --resume exact, sent $resent of $total bytes"
echo "PASS"
