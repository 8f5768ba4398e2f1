#!/usr/bin/env bash
# WAN emulation between two network namespaces without netem (this kernel has none): a rate
# limit on the sender's egress (tc tbf) and a user-space delay line (build/delay_line, NFQUEUE)
# on each host's INPUT hook, so the round trip is twice the one-way delay; loss is dropped by
# the receiver's delay line, on the receiving side as it must be (see ../PLATFORM notes in
# docs). Needs root, iptables, and build/delay_line (libnetfilter-queue-dev).
#   scripts/ns-wan.sh up SEND_NS RECV_NS SEND_ADDR RECV_ADDR RATE ONE_WAY_MS [LOSS_PERMILLE]
#   scripts/ns-wan.sh down SEND_NS RECV_NS
# RATE as tc takes it (1gbit, 10gbit); the state (delay line pids) lives in /run/barge-wan-*.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
line=${BARGE_DELAY_LINE:-$here/build/delay_line}
state() { echo "/run/barge-wan-$1-$2"; }
case "${1:-}" in
  up)
    s=$2 r=$3 sa=$4 ra=$5 rate=$6 ms=$7 loss=${8:-0}
    [ -x "$line" ] || { echo "ns-wan: $line not built (libnetfilter-queue-dev)" >&2; exit 1; }
    st=$(state "$s" "$r"); mkdir -p "$st"
    ip netns exec "$s" tc qdisc replace dev eth0 root tbf rate "$rate" burst 256kb latency 100ms
    # One segment per packet from the sender, so a dropped packet is one lost segment.
    [ "$loss" != 0 ] && ip netns exec "$s" ip link set eth0 gso_max_segs 1
    ip netns exec "$r" iptables -A INPUT -s "$sa" -j NFQUEUE --queue-num 0 --queue-bypass
    ip netns exec "$s" iptables -A INPUT -s "$ra" -j NFQUEUE --queue-num 0 --queue-bypass
    ip netns exec "$r" "$line" 0 "$ms" "$loss" 2>"$st/recv.log" & echo $! > "$st/recv.pid"
    ip netns exec "$s" "$line" 0 "$ms" 0 2>"$st/send.log" & echo $! > "$st/send.pid"
    sleep 0.2
    ;;
  down)
    s=$2 r=$3 st=$(state "$2" "$3")
    for p in "$st"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
    sleep 0.1
    for ns in "$s" "$r"; do
      ip netns exec "$ns" iptables -F INPUT 2>/dev/null || true
      ip netns exec "$ns" tc qdisc del dev eth0 root 2>/dev/null || true
      ip netns exec "$ns" ip link set eth0 gso_max_segs 65535 2>/dev/null || true
    done
    cat "$st"/*.log 2>/dev/null || true
    rm -rf "$st"
    ;;
  *) echo "usage: ns-wan.sh up SEND_NS RECV_NS SEND_ADDR RECV_ADDR RATE ONE_WAY_MS [LOSS_PERMILLE] | down SEND_NS RECV_NS" >&2; exit 2 ;;
esac
