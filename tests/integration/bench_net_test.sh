#!/usr/bin/env bash
# barge bench net end to end: MPI, TCP and TLS streams between two ranks (the JSON contract,
# the pairs summed, the timeline adding up, a plot); across two hosts (network namespaces)
# on a link shaped to 200 Mbit/s, where every transport must measure the link's rate; a
# killed rank ends the job; bad input gets one line and exit 2.
set -euo pipefail
BARGE=$(realpath "$1")
repo=$(cd "$(dirname "$(readlink -f "$0")")/../.." && pwd)
source "$(dirname "$0")/lib.sh"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
T=$(mktemp -d /tmp/barge-net-test.XXXXXX)
netns_up=0
cleanup() {
  [ "$netns_up" = 0 ] || "$repo/scripts/netns-cluster.sh" down || true
  rm -rf "$T"
}
trap cleanup EXIT
trap 'echo "FAIL: line $LINENO: $BASH_COMMAND" >&2' ERR

# --- two ranks on this host: every transport, the contract, the sums ---
timeout -s KILL 120 mpirun -np 2 "$BARGE" bench net --streams 1,2 --runtime 0.6 --interval 0.2 \
  --ping-count 200 --json "$T/n.json" --plot "$T/n.svg" > "$T/n.out" 2> "$T/n.err"
grep -q "fastest" "$T/n.out" || fail "no summary: $(cat "$T/n.out")"
python3 - "$T/n.json" "$T/n.svg" <<'PY'
import json, sys, xml.etree.ElementTree as ET
j = json.load(open(sys.argv[1]))
assert j["exit_code"] == 0 and j["pairs"] == 1 and j["ranks_total"] == 2, j.get("failure")
runs = j["runs"]
assert [(r["transport"], r["streams"]) for r in runs] == [
    ("mpi", 1), ("mpi", 2), ("tcp", 1), ("tcp", 2), ("tls", 1), ("tls", 2)], runs
for r in runs:
    name = (r["transport"], r["streams"])
    assert r["errors"] == {}, (name, r["errors"])
    assert r["bytes"] > 0 and r["ops"] == r["latency_ns"]["count"], name
    assert len(r["ranks"]) == 1 and r["ranks"][0]["rank"] == 1, (name, r["ranks"])
    assert r["ranks"][0]["bytes"] == r["bytes"], name
    assert sum(i["bytes"] for i in r["intervals"]) == r["bytes"], name
    assert 0.5 < r["seconds"] < 3, (name, r["seconds"])
    l = r["latency_ns"]
    assert 0 < l["min"] <= l["p50"] <= l["p99"] <= l["max"], (name, l)
    assert abs(r["bandwidth_bytes_per_second"] - r["bytes"] / r["seconds"]) < 1e-6 * r["bytes"]
best = max(runs, key=lambda r: r["bandwidth_bytes_per_second"])
assert (j["transport"], j["streams"]) == (best["transport"], best["streams"])
assert j["bandwidth_bytes_per_second"] == best["bandwidth_bytes_per_second"]
for t in ("mpi", "tcp", "tls"):
    rt = j["round_trip"][t]
    assert rt["count"] == 200 and 0 < rt["p50"] <= rt["max"], (t, rt)
svg = ET.parse(sys.argv[2]).getroot()
assert svg.tag == "{http://www.w3.org/2000/svg}svg", svg.tag
series = {p.get("data-series") for p in svg.iter("{http://www.w3.org/2000/svg}polyline")}
assert {"bandwidth", "p50", "p99"} <= series, series
PY
[ "$(grep -c "bench net: .* x[12] \[" "$T/n.err")" -ge 6 ] || fail "no timeline lines: $(cat "$T/n.err")"

# --- the timeline is printed while a run goes on, not after it: with 4 s of tcp, the first
# interval line must reach stderr at least 2 s before the job ends ---
python3 - "$BARGE" <<'PY'
import subprocess, sys, time
p = subprocess.Popen(["timeout", "-s", "KILL", "60", "mpirun", "-np", "2", sys.argv[1], "bench",
                      "net", "--transport", "tcp", "--streams", "1", "--runtime", "4",
                      "--interval", "0.5", "--ping-count", "0"],
                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
first = None
lines = []
for line in p.stderr:
    if first is None and " x1 [" in line:
        first = time.monotonic()
    lines.append(line)
assert p.wait() == 0, "".join(lines)
end = time.monotonic()
assert first is not None, "no interval line: " + "".join(lines)
assert end - first >= 2, f"first interval line only {end - first:.2f} s before the end"
n = sum(" x1 [" in l for l in lines)
assert 6 <= n <= 9, f"{n} interval lines for 4 s at 0.5 s: " + "".join(lines)
PY

# --- bad input: one line naming the argument, exit 2 ---
expect_usage() {  # PATTERN CMD...: exit 2 and one line of barge's on stderr matching PATTERN
  local pat=$1 rc=0
  shift
  "$@" > /dev/null 2> "$T/e" || rc=$?
  [ "$rc" = 2 ] && [ "$(grep -c "^barge" "$T/e")" = 1 ] && grep -q -- "$pat" "$T/e" \
    || fail "$*: want exit 2 and one line with '$pat', got $rc: $(cat "$T/e")"
  [ "$1" = timeout ] || [ "$(wc -l < "$T/e")" = 1 ] || fail "$*: more than one line: $(cat "$T/e")"
}
expect_usage "even number of ranks" timeout -s KILL 60 mpirun -np 3 "$BARGE" bench net
expect_usage "--transport mpi" "$BARGE" bench net --transport mpi
expect_usage "--transport udp" "$BARGE" bench net --transport udp
expect_usage "--streams 0" "$BARGE" bench net --streams 0
expect_usage "--size 100" "$BARGE" bench net --size 100
expect_usage "--net 10.0.0.0" "$BARGE" bench net --net 10.0.0.0
rc=0
"$BARGE" bench net --net 203.0.113.0/24 > /dev/null 2> "$T/e" || rc=$?
[ "$rc" != 0 ] && [ "$(wc -l < "$T/e")" = 1 ] && grep -q -- "--net 203.0.113.0/24" "$T/e" \
  || fail "a network with none of our addresses: $rc $(cat "$T/e")"

# --- a receiving rank killed in the middle: the job ends within seconds, non-zero ---
timeout -s KILL 60 mpirun -np 2 "$BARGE" bench net --transport tcp --streams 2 --runtime 30 \
  --ping-count 0 > /dev/null 2>&1 &
job=$!
for _ in $(seq 50); do
  victim=$(pgrep -f "barge bench net --transport tcp --streams 2 --runtime 30" | sort -n | tail -1 || true)
  [ -n "$victim" ] && [ "$(pgrep -f "barge bench net --transport tcp" | wc -l)" -ge 3 ] && break
  sleep 0.1
done
sleep 1
kill -9 "$victim"
t0=$(date +%s)
rc=0
wait "$job" || rc=$?
[ "$rc" != 0 ] || fail "a killed rank: the job exited 0"
[ $(($(date +%s) - t0)) -le 15 ] || fail "the job took $(($(date +%s) - t0)) s to end after a rank died"

# --- two hosts on a 200 Mbit/s link: every transport measures the link ---
if [ "$(id -u)" = 0 ] && ip netns add "t-probe$$" 2> /dev/null; then
  ip netns del "t-probe$$"
  exec 9> /run/lock/barge-netns-t-lock  # one user of the t- cluster at a time
  flock -w 60 9 || fail "another netns test holds the t- cluster"
  netns_up=1
  "$repo/scripts/netns-cluster.sh" up 2 > /dev/null
  ip netns exec t-h1 tc qdisc add dev eth0 root tbf rate 200mbit burst 256kb latency 100ms
  ip netns exec t-h2 tc qdisc add dev eth0 root tbf rate 200mbit burst 256kb latency 100ms
  timeout -k 5 120 "$repo/scripts/mpirun-netns.sh" 2 2 -- "$BARGE" bench net --net 10.50.0.0/24 \
    --transport mpi,tcp,tls --streams 1,4 --runtime 2 --ping-count 100 --json "$T/w.json" \
    > "$T/w.out" 2>&1 || fail "bench net across hosts: $(cat "$T/w.out")"
  python3 - "$T/w.json" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
link = 200e6 / 8
for r in j["runs"]:
    name = (r["transport"], r["streams"])
    assert r["errors"] == {} and r["ranks"][0]["host"] == "h2", (name, r["ranks"])
    share = r["bandwidth_bytes_per_second"] / link
    print("%s x%d: %.1f MB/s, %.0f%% of the link" % (r["transport"], r["streams"],
          r["bandwidth_bytes_per_second"] / 1e6, share * 100))
    assert 0.80 < share < 1.02, (name, share)
PY
else
  echo "bench_net: no network namespaces here: the two-host part was not run" >&2
  exit 77
fi
echo "bench_net: PASS"
