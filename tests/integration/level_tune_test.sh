#!/usr/bin/env bash
# send --tune and backup --tune: the zstd level tuned on the job itself.
#  - send between two network namespaces over a 40 Mbit/s link, of source code (a copy of
#    /usr/include): the link is the bound, so a level that shrinks more must be chosen (and
#    measured 10% faster than level 1); the tree arrives exact;
#  - send of incompressible data over the bare link: never a level above the start;
#  - backup --tune alone and under mpirun -np 2: the report's tune object, the snapshot's
#    level is the chosen one, the restore is exact;
#  - bad --tune-seconds: one line, exit 2.
set -euo pipefail
BARGE=$(realpath "$1")
repo=$(cd "$(dirname "$0")/../.." && pwd)
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d /tmp/barge-level-tune.XXXXXX)
netns_up=0
cleanup() {
  [ "$netns_up" = 0 ] || "$repo/scripts/netns-cluster.sh" down || true
  rm -rf "$T"
}
trap cleanup EXIT
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR

[ -d /usr/include ] || fail "no /usr/include to use as source code"
cp -r /usr/include "$T/src"
chmod -R u+rw "$T/src"
head -c 32 /dev/urandom > "$T/key"
chmod 600 "$T/key"

check_tune() {  # REPORT MIN_LEVEL MAX_LEVEL START
  python3 - "$@" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
lo, hi, start = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
assert j["exit_code"] == 0, j
t = j["tune"]
assert t["method"].startswith("live"), t
level = t["chosen"]["compression_level"]
assert lo <= level <= hi, (level, t["note"], t["probes"])
p = t["probes"]
if p:
    assert p[0]["change"] == "level %d (start)" % start, p[0]
    assert p[0]["compression_level"] == start, p[0]
for q in p:
    assert q["bytes"] > 0 and q["seconds"] > 0, q
if level != start:
    # Kept only when measured 10% faster than the start.
    chosen = [q for q in p if q["compression_level"] == level]
    assert chosen and chosen[-1]["bytes_per_second"] > 1.1 * p[0]["bytes_per_second"], p
print("tune: level %d; %s" % (level, "; ".join("%s %.1f MB/s" % (q["change"], q["bytes_per_second"] / 1e6) for q in p)))
PY
}

# --- bad input ---
rc=0
out=$("$BARGE" send --tune --tune-seconds 0 --psk-file "$T/key" "$T/src" 127.0.0.1:1 2>&1) || rc=$?
[ "$rc" = 2 ] || fail "--tune-seconds 0: exit $rc"
[ "$(echo "$out" | wc -l)" = 1 ] && echo "$out" | grep -q -- "--tune-seconds" ||
  fail "--tune-seconds 0 said: $out"

# --- backup --tune, alone and across two ranks ---
"$BARGE" backup --tune --tune-seconds 2 --progress none --report "$T/b1.json" "$T/src" "$T/repo" \
  2> "$T/b1.err" || fail "backup --tune: $(cat "$T/b1.err")"
grep -q "barge: tune: .*zstd level" "$T/b1.err" || fail "backup --tune printed no choice"
check_tune "$T/b1.json" 1 9 3
python3 - "$T/b1.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
assert j["snapshot"]["level"] == j["tune"]["chosen"]["compression_level"], j["snapshot"]
PY
# One thread at level 9: the thread is the bound, and a cheaper level is measured faster.
mkdir "$T/src9"
cp -r "$T/src" "$T/src9/a"
cp -r "$T/src" "$T/src9/b"
"$BARGE" backup --tune --tune-seconds 2 --level 9 --threads 1 --progress none \
  --report "$T/b9.json" "$T/src9" "$T/repo9" 2> "$T/b9.err" || fail "backup --level 9: $(cat "$T/b9.err")"
check_tune "$T/b9.json" 1 6 9
rm -rf "$T/src9" "$T/repo9"
timeout -s KILL 120 mpirun -np 2 "$BARGE" backup --tune=true --tune-seconds 2 --mode full \
  --progress none --report "$T/b2.json" "$T/src" "$T/repo" 2> "$T/b2.err" ||
  fail "mpirun backup --tune: $(cat "$T/b2.err")"
check_tune "$T/b2.json" 1 9 3
"$BARGE" restore --progress none "$T/repo" "$T/restored" 2> "$T/r.err" || fail "restore: $(cat "$T/r.err")"
same_tree "$T/src" "$T/restored" "restore of a tuned backup"

# --- send --tune across two namespaces ---
if [ "$(id -u)" != 0 ] || ! ip netns add "t-probe$$" 2> /dev/null; then
  echo "level_tune: no network namespaces here: the send part was not run" >&2
  exit 77
fi
ip netns del "t-probe$$"
exec 9> /run/lock/barge-netns-t-lock  # one user of the t- cluster at a time
flock -w 60 9 || fail "another netns test holds the t- cluster"
netns_up=1
"$repo/scripts/netns-cluster.sh" up 2 > /dev/null

send_one() {  # NAME SRC [SEND FLAGS...]: a --once receiver in t-h2, the sender in t-h1
  local name=$1 src=$2
  shift 2
  mkdir -p "$T/$name"
  ip netns exec t-h2 "$BARGE" recv --listen 10.50.0.2:7790 --psk-file "$T/key" --once \
    --progress none "$T/$name" 2> "$T/$name.recv.err" &
  local rpid=$!
  sleep 0.3
  timeout -s KILL 120 ip netns exec t-h1 "$BARGE" send --psk-file "$T/key" --progress none \
    --report "$T/$name.json" "$@" "$src" 10.50.0.2:7790 2> "$T/$name.err" ||
    fail "send $name: $(cat "$T/$name.err")"
  wait "$rpid" || fail "recv $name: $(cat "$T/$name.recv.err")"
}

# A 40 Mbit/s link: level 1 sends source code at about 4x, a higher level at 4.4x or more.
ip netns exec t-h1 tc qdisc add dev eth0 root tbf rate 40mbit burst 256kb latency 100ms
send_one slow "$T/src" --tune --tune-seconds 3
check_tune "$T/slow.json" 3 9 1
same_tree "$T/src" "$T/slow/src" "send --tune over the slow link"
grep -q "barge:   probe level 1 (start)" "$T/slow.err" || fail "send --tune printed no probes"

# Incompressible data on the bare link: no level above the start can help.
ip netns exec t-h1 tc qdisc del dev eth0 root
"$BARGE" gen --profile large --size 384M --files 3 -q "$T/noise"
send_one fast "$T/noise" --tune --tune-seconds 2
check_tune "$T/fast.json" 0 1 1
same_tree "$T/noise" "$T/fast/noise" "send --tune of incompressible data"
echo "level_tune: PASS"
