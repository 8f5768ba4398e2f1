#!/usr/bin/env bash
# send/recv when things break, host 1 → host 2 (network namespaces r-h1, r-h2):
#   - kill -9 of the sender mid-transfer, then the same command with --resume;
#   - kill -9 of the receiver (send --retries 0 exits 75), a new recv, then --resume;
#   - the link cut by a firewall rule for several seconds, then restored: send retries with
#     backoff and resumes by itself.
# Each ends exact (rsync as the oracle), and committed chunks are not sent again: the resumed
# run's bytes_transferred + bytes_skipped is the data's size, bytes_skipped > 0.
#   tests/integration/send_resume_test.sh [BARGE]
# Exit 0: pass; 77 + "SKIP: reason": network namespaces cannot be made here; else: fail.
set -euo pipefail
repo=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
barge=${1:-$repo/build/barge}
barge=$(readlink -f "$barge")
prefix=r-
export BARGE_NETNS_PREFIX=$prefix
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; for l in "$work"/*.log; do echo "== $l" >&2; tail -8 "$l" >&2; done; exit 1; }
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
command -v iptables >/dev/null || skip "iptables not installed (scripts/setup installs it)"

work=$(mktemp -d "${TMPDIR:-/tmp}/barge-rs.XXXXXX")
pids=()
cleanup() {
  local rc=$?
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$repo/scripts/netns-cluster.sh" down >/dev/null 2>&1 || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$repo/scripts/netns-cluster.sh" up 2 >/dev/null || skip "cannot create network namespaces"
h1() { ip netns exec "${prefix}h1" "$@"; }
h2() { ip netns exec "${prefix}h2" "$@"; }
h2 iptables -L INPUT >/dev/null 2>&1 || skip "iptables does not work in a namespace here"

same() {
  local out
  out=$(rsync -aHn --delete --itemize-changes --modify-window=-1 --checksum "$1" "$2") || fail "$3: rsync failed"
  [ -z "$out" ] || fail "$3: trees differ: $(head -5 <<<"$out" | tr '\n' '|')"
}
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$1" "$2"; }
head -c 32 /dev/urandom > "$work/key"; chmod 600 "$work/key"

# --- the source: three large files (chunked, journaled) and small ones ---
src=$work/src
mkdir -p "$src/small"
for i in 1 2 3; do head -c 48M /dev/urandom > "$src/big$i"; done
for i in $(seq 200); do head -c $((RANDOM % 8192 + 1)) /dev/urandom > "$src/small/f$i"; done
total=$(find "$src" -type f -printf '%s\n' | awk '{s += $1} END {print s}')
sleep 1.1

port=7600
# recv_on DST NAME [ARGS]: a listener on host 2 at $port; its pid in $recv_pid.
recv_on() {
  local dst=$1 name=$2; shift 2
  ip netns exec "${prefix}h2" "$barge" recv "$dst" --listen "0.0.0.0:$port" --psk-file "$work/key" --io-timeout 3 "$@" \
    >"$work/$name.log" 2>&1 &
  recv_pid=$!; pids+=("$recv_pid")
  for _ in $(seq 100); do h1 bash -c "exec 3<>/dev/tcp/10.50.0.2/$port" 2>/dev/null && return; sleep 0.05; done
  fail "recv $name did not start"
}
send_args=(--chunk-size 1M --streams 4 --io-timeout 3 --connect-timeout 2000 --psk-file "$work/key")
# wait_journal DST LINES: until the receiver's journal of DST lists that many committed
# chunks, at most 20 s.
wait_journal() {
  local log=$work/.barge-journal.$(basename "$1")/rank-0.log
  for _ in $(seq 200); do
    [ "$(cat "$log" 2>/dev/null | wc -l)" -ge "$2" ] && return
    sleep 0.1
  done
  fail "the transfer into $1 did not get going"
}
check_resumed() {  # REPORT WHAT
  local sent skipped
  sent=$(field "$1" 'r["bytes_transferred"]'); skipped=$(field "$1" 'r["bytes_skipped"]')
  [ "$skipped" -ge $((20 << 20)) ] || fail "$2: only $skipped bytes kept from the stopped run"
  [ $((sent + skipped)) = "$total" ] || fail "$2: sent $sent + kept $skipped != $total"
  echo "$2: exact, $skipped bytes kept, $sent sent"
}

# --- kill -9 of the sender, then send --resume ---
recv_on "$work/d1" recv1
ip netns exec "${prefix}h1" "$barge" send -q --bwlimit 20M "${send_args[@]}" "$src" "10.50.0.2:$port" \
  >"$work/send1.log" 2>&1 &
send_pid=$!; pids+=("$send_pid")
wait_journal "$work/d1" 30
[ "$(readlink "/proc/$send_pid/exe")" = "$barge" ] || fail "the sender's pid is not barge's"
kill -9 "$send_pid"; wait "$send_pid" 2>/dev/null || true
h1 "$barge" send -q --resume --report "$work/r1.json" "${send_args[@]}" "$src" "10.50.0.2:$port" \
  >"$work/resume1.log" 2>&1 || fail "send --resume after kill -9 of the sender: exit $?"
same "$src/" "$work/d1/" "sender killed"
[ -z "$(find "$work/d1" -name '.barge*')" ] || fail "sender killed: temporaries left"
check_resumed "$work/r1.json" "kill -9 of the sender, --resume"
kill "$recv_pid"; wait "$recv_pid" 2>/dev/null || true

# --- kill -9 of the receiver: the sender says 75; a new recv, then --resume ---
recv_on "$work/d2" recv2 --once
set +e
ip netns exec "${prefix}h1" "$barge" send -q --bwlimit 20M --retries 0 "${send_args[@]}" "$src" "10.50.0.2:$port" \
  >"$work/send2.log" 2>&1 &
send_pid=$!; pids+=("$send_pid")
wait_journal "$work/d2" 30
[ "$(readlink "/proc/$recv_pid/exe")" = "$barge" ] || fail "the receiver's pid is not barge's"
kill -9 "$recv_pid"
wait "$send_pid"; rc=$?
set -e
[ "$rc" = 75 ] || fail "receiver killed: send exit $rc, not 75"
grep -q -- "--resume" "$work/send2.log" || fail "receiver killed: send did not say to resume"
[ ! -e "$work/d2/big3" ] || [ "$(stat -c %s "$work/d2/big3")" = $((48 << 20)) ] ||
  fail "receiver killed: a partial file under its final name"
recv_on "$work/d2" recv2b --once
h1 "$barge" send -q --resume --report "$work/r2.json" "${send_args[@]}" "$src" "10.50.0.2:$port" \
  >"$work/resume2.log" 2>&1 || fail "send --resume after kill -9 of the receiver: exit $?"
wait "$recv_pid" || fail "recv --once after the resume: exit $?"
same "$src/" "$work/d2/" "receiver killed"
check_resumed "$work/r2.json" "kill -9 of the receiver, --resume"

# --- the link cut for 6 s, then restored: send retries and resumes by itself ---
recv_on "$work/d3" recv3
ip netns exec "${prefix}h1" "$barge" send -q --bwlimit 20M --retries 8 --report "$work/r3.json" "${send_args[@]}" "$src" \
  "10.50.0.2:$port" >"$work/send3.log" 2>&1 &
send_pid=$!; pids+=("$send_pid")
wait_journal "$work/d3" 30
h2 iptables -I INPUT -p tcp --dport "$port" -j DROP
sleep 6
h2 iptables -D INPUT -p tcp --dport "$port" -j DROP
wait "$send_pid" || fail "send across a cut link: exit $?"
same "$src/" "$work/d3/" "link cut"
grep -q "retry 1 of 8" "$work/send3.log" || fail "link cut: no retry was said"
resent=$(field "$work/r3.json" 'r["bytes_resent"]')
sent=$(field "$work/r3.json" 'r["bytes_transferred"]')
[ "$sent" -ge "$total" ] && [ "$resent" = $((sent - total)) ] || fail "link cut: sent $sent, resent $resent"
[ "$resent" -lt $((total / 2)) ] || fail "link cut: $resent bytes sent again, committed chunks re-sent"
echo "link cut 6 s: exact after $(grep -c 'retry' "$work/send3.log") retries, $resent bytes sent again"
echo "PASS"
