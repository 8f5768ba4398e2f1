#!/usr/bin/env bash
# barge send / recv between two hosts (network namespaces s-h1 → s-h2, 10.50.0.1 → .2) and on
# loopback: a tree with hard links, a sparse file, symlinks, a fifo and odd names arrives
# exact (rsync as the oracle); copy's placement rules against DST; a large file split across
# streams; --compress none; send over ssh to a real sshd on host 2; refusals (wrong key, group-readable key, garbage, an immediate
# close) leave nothing written and the listener serving.
#   tests/integration/send_recv_test.sh [BARGE]
# Exit 0: pass; 77 + "SKIP: reason": network namespaces cannot be made here; else: fail.
set -euo pipefail
repo=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
barge=${1:-$repo/build/barge}
barge=$(readlink -f "$barge")
prefix=s-
export BARGE_NETNS_PREFIX=$prefix
skip() { echo "SKIP: $*"; exit 77; }
fail() { echo "FAIL: $*" >&2; [ -f "$work/recv.log" ] && tail -20 "$work/recv.log" >&2; exit 1; }
[ "$(id -u)" = 0 ] || skip "needs root to create network namespaces"
command -v rsync >/dev/null || fail "rsync not found"

work=$(mktemp -d "${TMPDIR:-/tmp}/barge-sr.XXXXXX")
recv_pid=
cleanup() {
  local rc=$?
  [ -n "$recv_pid" ] && kill "$recv_pid" 2>/dev/null && wait "$recv_pid" 2>/dev/null
  "$repo/scripts/ns-sshd.sh" stop "$work/ssh"
  "$repo/scripts/netns-cluster.sh" down >/dev/null 2>&1 || true
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$repo/scripts/netns-cluster.sh" up 2 >/dev/null || skip "cannot create network namespaces"
h1() { ip netns exec "${prefix}h1" "$@"; }
h2() { ip netns exec "${prefix}h2" "$@"; }

same() {  # same SRC/ DST/ WHAT: content and metadata, hard links
  local out
  out=$(rsync -aHn --delete --itemize-changes --modify-window=-1 --checksum "$1" "$2") || fail "$3: rsync failed"
  [ -z "$out" ] || fail "$3: trees differ: $(head -5 <<<"$out")"
}
field() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$1" "$2"; }

# start_recv NS DST [ARGS]: a listener in namespace NS ("" = here) on port 0; sets $port.
start_recv() {
  local ns=$1 dst=$2; shift 2
  rm -f "$work/port"
  local run=()
  [ -n "$ns" ] && run=(ip netns exec "$ns")
  local addr=127.0.0.1
  [ -n "$ns" ] && addr=0.0.0.0
  local auth=(--psk-file "$work/key")
  [[ " $* " == *" --cert "* ]] && auth=()
  "${run[@]}" "$barge" recv "$dst" --listen "$addr:0" "${auth[@]}" --port-file "$work/port" \
    "$@" >"$work/recv.log" 2>&1 &
  recv_pid=$!
  for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.05; done
  [ -s "$work/port" ] || fail "recv did not start: $(cat "$work/recv.log")"
  port=$(cat "$work/port")
}
stop_recv() { kill "$recv_pid" 2>/dev/null || true; wait "$recv_pid" 2>/dev/null || true; recv_pid=; }

head -c 32 /dev/urandom > "$work/key"; chmod 600 "$work/key"
head -c 40 /dev/urandom > "$work/other-key"; chmod 600 "$work/other-key"

# --- the source ---
src=$work/src
"$barge" gen "$src" --profile mixed --size 48M --compressibility 0.5 --seed 11 -q
mkdir -p "$src/odd dir/empty" "$src/links"
printf 'x' > "$src/odd dir/new
line"
printf 'y' > "$src/odd dir/"$'\xff\xfe'
printf 'z' > "$src/odd dir/-dash"
ln -s /nonexistent "$src/odd dir/dangling"
mkfifo "$src/odd dir/fifo"
echo shared > "$src/links/a"
ln "$src/links/a" "$src/links/b"
ln "$src/links/a" "$src/odd dir/c"
truncate -s 64M "$src/sparse"
printf 'data' | dd of="$src/sparse" bs=1 seek=$((32 << 20)) conv=notrunc status=none
head -c 20M /dev/urandom > "$src/big"
chown 1234:5678 "$src/odd dir/new
line"
chmod 0751 "$src/odd dir"
sleep 1.1   # rsync leaves times of entries changed this second unset

# --- host 1 → host 2: DST missing becomes the copy ---
start_recv "${prefix}h2" "$work/h2dst" --once --report "$work/recv.json"
h1 "$barge" send -q --chunk-size 1M --streams 4 --report "$work/send.json" "$src" "10.50.0.2:$port" \
  --psk-file "$work/key" || fail "send h1 → h2: exit $?"
wait "$recv_pid" || fail "recv --once exit $?"; recv_pid=
same "$src/" "$work/h2dst/" "h1 → h2"
[ "$(stat -c %i "$work/h2dst/links/a")" = "$(stat -c %i "$work/h2dst/odd dir/c")" ] || fail "hard link lost"
[ "$(du -k "$work/h2dst/sparse" | cut -f1)" -lt 1024 ] || fail "sparse file arrived dense"
[ "$(field "$work/send.json" 'r["exit_code"]')" = 0 ] || fail "send report exit code"
[ "$(field "$work/recv.json" 'r["files"]')" = "$(field "$work/send.json" 'r["files"]')" ] || fail "file counts differ"
[ -z "$(find "$work/h2dst" -name '.barge*')" ] || fail "temporaries left in DST"
echo "h1 → h2: exact ($(field "$work/send.json" 'r["files"]') files)"

# --- placement: DST exists → DST/src; SRC/. merges; --compress none; one stream ---
mkdir -p "$work/into"
start_recv "" "$work/into"
"$barge" send -q --streams 1 --compress none "$src" "127.0.0.1:$port" --psk-file "$work/key" || fail "send into: exit $?"
same "$src/" "$work/into/src/" "existing DST"
mkdir -p "$work/merge"; echo keep > "$work/merge/keep"
stop_recv; start_recv "" "$work/merge"
"$barge" send -q "$src/." "127.0.0.1:$port" --psk-file "$work/key" || fail "send src/.: exit $?"
[ -f "$work/merge/keep" ] && [ -f "$work/merge/big" ] || fail "SRC/. did not merge into DST"
cmp "$src/big" "$work/merge/big" || fail "big file differs"
# A symlink planted in DST where the tree has a directory is not followed: that subtree
# fails (exit 1), nothing lands outside DST, the rest arrives.
mkdir -p "$work/trap/src" "$work/outside"
ln -s "$work/outside" "$work/trap/src/odd dir"
stop_recv; start_recv "" "$work/trap"
set +e
"$barge" send -q "$src" "127.0.0.1:$port" --psk-file "$work/key" 2>/dev/null; rc=$?
set -e
[ "$rc" = 1 ] || fail "planted symlink: exit $rc"
[ -z "$(ls -A "$work/outside")" ] || fail "a planted symlink led writes outside DST"
cmp "$src/big" "$work/trap/src/big" || fail "planted symlink: the rest did not arrive"
echo "placement: ok"

# --- refusals; the listener keeps serving ---
empty=$work/empty; mkdir -p "$empty"
stop_recv; start_recv "" "$empty"
set +e
out=$("$barge" send -q "$src" "127.0.0.1:$port" --psk-file "$work/other-key" 2>&1); rc=$?
set -e
[ "$rc" = 2 ] || fail "wrong key: exit $rc ($out)"
grep -q "127.0.0.1" "$work/recv.log" || fail "recv did not log the refused peer"
head -c 5000 /dev/urandom | timeout 5 bash -c "cat > /dev/tcp/127.0.0.1/$port" 2>/dev/null || true
timeout 5 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port; exec 3>&-" 2>/dev/null || true
chmod 640 "$work/other-key"
set +e
out=$("$barge" send -q "$src" "127.0.0.1:$port" --psk-file "$work/other-key" 2>&1); rc=$?
set -e
[ "$rc" = 2 ] && grep -q "chmod 600" <<<"$out" || fail "group-readable key: exit $rc ($out)"
[ -z "$(ls -A "$empty")" ] || fail "a refused sender wrote into DST"
"$barge" send -q "$src" "127.0.0.1:$port" --psk-file "$work/key" || fail "send after refusals: exit $?"
same "$src/" "$empty/src/" "after refusals"
kill -0 "$recv_pid" || fail "recv exited"
cat "$work/recv.log"
echo "refusals: ok"

# --- over ssh: a real sshd on host 2 starts recv; the data goes over barge's own streams ---
stop_recv
rsh=$("$repo/scripts/ns-sshd.sh" start "${prefix}h2" 10.50.0.2 "$work/ssh") || fail "sshd did not start"
sshd_dir=$work/ssh
for _ in $(seq 50); do h1 $rsh root@10.50.0.2 true 2>/dev/null && break; sleep 0.1; done
h1 "$barge" send -q --report "$work/ssh.json" "$src" "root@10.50.0.2:$work/sshdst" --rsh "$rsh" \
  --barge-path "$barge" || fail "send over ssh: exit $? ($(tail -5 "$sshd_dir/sshd.log"))"
same "$src/" "$work/sshdst/" "over ssh"
echo stray > "$work/sshdst/stray"
h1 "$barge" send -q --sync --delete --insecure-no-encryption --report "$work/ssh-sync.json" "$src" "root@10.50.0.2:$work/sshdst" \
  --rsh "$rsh" --barge-path "$barge" || fail "send --sync over ssh: exit $?"
same "$src/" "$work/sshdst/" "--sync --delete over ssh"
[ "$(field "$work/ssh-sync.json" 'r["bytes_transferred"]')" = 0 ] || fail "--sync over ssh re-sent files"
set +e
out=$(h1 "$barge" send -q "$src" "root@10.50.0.2:$work/sshdst2" --rsh "$rsh" --barge-path /nonexistent 2>&1); rc=$?
set -e
[ "$rc" = 2 ] && grep -q "did not start" <<<"$out" || fail "over ssh, no barge there: exit $rc ($out)"
[ ! -e "$work/sshdst2" ] || fail "a failed start wrote into DST"
echo "over ssh: exact"

# --- certificates instead of a key (a CA of the test's own, openssl req/x509) ---
pki=$work/pki; mkdir -p "$pki"; cd "$pki"
mkcert() {  # NAME CA [SAN]: NAME.key, NAME.crt signed by CA (self-signed when CA is "")
  local name=$1 ca=$2 san=${3:-}
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$name.key" -out "$name.csr" \
    -subj "/CN=$name" 2>/dev/null
  if [ -z "$ca" ]; then
    openssl x509 -req -in "$name.csr" -signkey "$name.key" -out "$name.crt" -days 2 \
      -extfile <(printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign') 2>/dev/null
  else
    openssl x509 -req -in "$name.csr" -CA "$ca.crt" -CAkey "$ca.key" -CAcreateserial -out "$name.crt" \
      -days 2 ${san:+-extfile <(printf 'subjectAltName=%s' "$san")} 2>/dev/null
  fi
  chmod 600 "$name.key"
}
mkcert ca ""; mkcert other ""
mkcert recv ca IP:10.50.0.2; mkcert send ca; mkcert stranger other
cd "$work"
start_recv "${prefix}h2" "$work/certdst" --cert "$pki/recv.crt" --key "$pki/recv.key" --ca "$pki/ca.crt"
set +e
out=$(h1 "$barge" send -q "$src" "10.50.0.2:$port" --cert "$pki/stranger.crt" --key "$pki/stranger.key" \
  --ca "$pki/ca.crt" 2>&1); rc=$?
set -e
[ "$rc" = 2 ] || fail "a certificate of another CA: exit $rc ($out)"
[ ! -e "$work/certdst" ] || fail "a refused sender wrote into DST"
h1 "$barge" send -q "$src" "10.50.0.2:$port" --cert "$pki/send.crt" --key "$pki/send.key" \
  --ca "$pki/ca.crt" || fail "send with certificates: exit $?"
same "$src/" "$work/certdst/" "certificates"
stop_recv
echo "certificates: ok"

# --- --bwlimit paces the transfer: a 20 MiB file at 40 MiB/s ---
start_recv "" "$work/slow" --once
t0=$(date +%s%N)
"$barge" send -q --bwlimit 40M --compress none "$src/big" "127.0.0.1:$port" --psk-file "$work/key" \
  || fail "send --bwlimit: exit $?"
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
wait "$recv_pid"; recv_pid=
[ "$ms" -ge 380 ] || fail "--bwlimit 40M sent 20 MiB in $ms ms (at least 400 ms: five 4 MiB units paced 100 ms apart)"
cmp "$src/big" "$work/slow" || fail "--bwlimit: file differs"
echo "bwlimit: 20 MiB in $ms ms"

# --- --insecure-no-encryption at both ends: exact; a TLS sender at such a receiver, or a
#     plaintext one at a TLS receiver, is refused and the listener goes on ---
start_recv "${prefix}h2" "$work/plaindst" --insecure-no-encryption
set +e
out=$(h1 "$barge" send -q "$src" "10.50.0.2:$port" --psk-file "$work/key" 2>&1); rc=$?
set -e
[ "$rc" = 2 ] || fail "a TLS sender at a plaintext receiver: exit $rc ($out)"
[ ! -e "$work/plaindst" ] || fail "a refused sender wrote into DST"
h1 "$barge" send -q --insecure-no-encryption "$src" "10.50.0.2:$port" --psk-file "$work/key" ||
  fail "send --insecure-no-encryption: exit $?"
same "$src/" "$work/plaindst/" "plaintext"
grep -q "in the clear" "$work/recv.log" || fail "recv did not warn about --insecure-no-encryption"
stop_recv
start_recv "" "$work/tlsdst"
set +e
out=$("$barge" send -q --insecure-no-encryption "$src" "127.0.0.1:$port" --psk-file "$work/key" 2>&1); rc=$?
set -e
[ "$rc" = 2 ] && [ ! -e "$work/tlsdst" ] || fail "a plaintext sender at a TLS receiver: exit $rc ($out)"
set +e
out=$("$barge" send -q --insecure-no-encryption "$src" "127.0.0.1:$port" --cert "$pki/send.crt" \
  --key "$pki/send.key" --ca "$pki/ca.crt" 2>&1); rc=$?
set -e
[ "$rc" = 2 ] && grep -q "not certificates" <<<"$out" || fail "plaintext with certificates: exit $rc ($out)"
stop_recv
echo "insecure-no-encryption: exact, mismatches refused"

# --- bad input: one line naming the argument, exit 2 ---
set +e
out=$("$barge" send "$src" "nohost" --psk-file "$work/key" 2>&1); rc=$?
set -e
[ "$rc" = 2 ] && grep -q "destination" <<<"$out" || fail "bad HOST:PORT: exit $rc ($out)"
set +e
out=$("$barge" send "$work/missing" "127.0.0.1:$port" --psk-file "$work/key" 2>&1); rc=$?
set -e
[ "$rc" = 2 ] && grep -q "missing" <<<"$out" || fail "missing source: exit $rc ($out)"
echo "PASS"
