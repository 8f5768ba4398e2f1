#!/usr/bin/env bash
# barge send/recv against the tools users pick today, host 1 → host 2 (network namespaces
# b-h1 → b-h2 on a veth bridge, 10.50.0.1 → .2), same data, same run, tools interleaved per
# round: barge (TLS 1.3, checksums, 4 streams), rsync -e ssh, an rsync daemon, tar | zstd -1 |
# nc, and iperf3 -P 4 as the ceiling of the path. Destinations are on /dev/shm (the same for
# every tool) so the network path, TLS and CPU are measured, not this VM's disk. Prints every
# run, medians, MB/s, each peer's time over barge's, and barge's peak RSS and CPU per side.
#
# Usage: perf/bench_net.sh [--rounds N] [--only file|dir] [--streams N] [--shape SHAPE]
#        [--peers "rsync_ssh rsync_daemon tar_zstd_nc barge_plain gridftp xrdcp"]
#   barge_plain: barge again with --insecure-no-encryption at both ends (AES-GMAC records).
#   barge_sN: barge again with --streams N (e.g. barge_s4 barge_s16: the stream count).
#   gridftp: globus-url-copy -p 4 (file) / -r -cc 4 -p 4 (directory) to an anonymous
#            globus-gridftp-server on host 2 (no GSI: no encryption, no checksums);
#            gridftp8: the same with -p 8.
#   xrdcp: xrdcp --streams 4 (file) / -r --streams 4 (directory) to an xrootd on host 2.
# SHAPE (scripts/ns-wan.sh: tc tbf on the sender, the NFQUEUE delay line on both hosts):
#   none (the bare veth path), wan (1 Gbit/s, 25 ms each way), wan-loss (the same, 0.1% of
#   packets to the receiver dropped), 10g (10 Gbit/s, 10 ms each way).
# Data (one 2 GiB incompressible file; a directory of 2000 files of 64-512 KiB plus
# 4 x 384 MiB) is made once under data/net (git-ignored) and kept.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
rounds=3 only="" streams=8 shape=none peers="rsync_ssh rsync_daemon tar_zstd_nc"
while [ $# -gt 0 ]; do
  case "$1" in
    --shape) shape=$2; shift 2 ;;
    --peers) peers=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --only) only=$2; shift 2 ;;
    --streams) streams=$2; shift 2 ;;
    *) echo "bench_net: unknown argument $1" >&2; exit 2 ;;
  esac
done
barge=$here/build/barge
. "$here/perf/lib.sh"
export BARGE_NETNS_PREFIX=b-
work=$here/data/net
shm=/dev/shm/barge-bench-net
mkdir -p "$work" "$shm"
h1() { ip netns exec b-h1 "$@"; }
h2() { ip netns exec b-h2 "$@"; }
cleanup() {
  [ "$shape" != none ] && "$here/scripts/ns-wan.sh" down b-h1 b-h2 >/dev/null 2>&1
  "$here/scripts/ns-sshd.sh" stop "$shm/ssh" || true
  [ -f "$shm/rsyncd.pid" ] && kill "$(cat "$shm/rsyncd.pid")" 2>/dev/null
  pkill -f "iperf3 -s -B 10.50.0.2" 2>/dev/null || true
  pkill -f "globus-gridftp-server -aa -anonymous-user nobody -p 2811" 2>/dev/null || true
  pkill -f "xrootd -p 1094 -R nobody" 2>/dev/null || true
  "$here/scripts/netns-cluster.sh" down >/dev/null 2>&1 || true
  rm -rf "$shm"
}
trap cleanup EXIT

# --- data ---
if [ ! -f "$work/file/big" ]; then
  mkdir -p "$work/file"
  openssl enc -aes-128-ctr -pass pass:barge -nosalt -pbkdf2 </dev/zero 2>/dev/null | head -c 2G > "$work/file/big"
fi
if [ ! -f "$work/dir/.done" ]; then
  rm -rf "$work/dir"; mkdir -p "$work/dir/small"
  python3 - "$work/dir" <<'PY'
import os, random, sys
random.seed(7)
d = sys.argv[1]
src = open("/dev/urandom", "rb")
for i in range(2000):
    sub = os.path.join(d, "small", "d%02d" % (i % 40))
    os.makedirs(sub, exist_ok=True)
    with open(os.path.join(sub, "f%04d" % i), "wb") as f:
        f.write(src.read(random.randint(64, 512) * 1024))
for i in range(4):
    with open(os.path.join(d, "big%d" % i), "wb") as f:
        for _ in range(384):
            f.write(src.read(1 << 20))
PY
  touch "$work/dir/.done"
fi
rm -f "$work/dir/.done.x"

# --- the hosts and the peers' servers ---
"$here/scripts/netns-cluster.sh" up 2 >/dev/null
head -c 32 /dev/urandom > "$shm/key"; chmod 600 "$shm/key"
rsh=$("$here/scripts/ns-sshd.sh" start b-h2 10.50.0.2 "$shm/ssh")
for _ in $(seq 50); do h1 $rsh root@10.50.0.2 true 2>/dev/null && break; sleep 0.1; done
cat > "$shm/rsyncd.conf" <<CFG
pid file = $shm/rsyncd.pid
use chroot = no
[shm]
path = $shm
read only = no
uid = root
gid = root
CFG
h2 rsync --daemon --config="$shm/rsyncd.conf" --address=10.50.0.2 --port=8730
h2 iperf3 -s -B 10.50.0.2 -D
if [[ " $peers " == *" gridftp"* ]]; then
  h2 globus-gridftp-server -aa -anonymous-user nobody -p 2811 -S -data-interface 10.50.0.2
fi
if [[ " $peers " == *" xrdcp "* ]]; then
  echo "all.export $shm/dst" > "$shm/xrootd.cfg"
  h2 xrootd -p 1094 -R nobody -c "$shm/xrootd.cfg" >"$shm/xrootd.log" 2>&1 &
fi
sleep 0.5
case "$shape" in
  none) link_mb=0 ;;
  wan) "$here/scripts/ns-wan.sh" up b-h1 b-h2 10.50.0.1 10.50.0.2 1gbit 25; link_mb=125 ;;
  wan-loss) "$here/scripts/ns-wan.sh" up b-h1 b-h2 10.50.0.1 10.50.0.2 1gbit 25 1; link_mb=125 ;;
  10g) "$here/scripts/ns-wan.sh" up b-h1 b-h2 10.50.0.1 10.50.0.2 10gbit 10; link_mb=1250 ;;
  *) echo "bench_net: unknown --shape $shape" >&2; exit 2 ;;
esac

declare -A t
record() { t[$1]+="$2 "; }
fresh() { rm -rf "$shm/dst"; mkdir -p "$shm/dst"; chmod 777 "$shm/dst"; }  # gridftp, xrootd: nobody

run_barge() {  # SRC [NAME ARGS...]: recv --once on h2, send on h1, both with ARGS; CPU per side
  local src=$1 name=${2:-barge} t0 t1
  shift; shift || true
  fresh
  rm -f "$shm/port"
  h2 /usr/bin/time -f "%e %U %S %M" -o "$shm/recv.time" "$barge" recv -q --once --listen 10.50.0.2:0 \
    --psk-file "$shm/key" --port-file "$shm/port" "$@" "$shm/dst" &
  local rpid=$!
  for _ in $(seq 100); do [ -s "$shm/port" ] && break; sleep 0.02; done
  t0=$(date +%s%N)
  h1 /usr/bin/time -f "%e %U %S %M" -o "$shm/send.time" "$barge" send -q --streams "${send_streams:-$streams}" \
    "$@" "$src" "10.50.0.2:$(cat "$shm/port")" --psk-file "$shm/key" || { echo "barge send failed" >&2; exit 1; }
  t1=$(date +%s%N)
  wait "$rpid"
  record "$name" "$(awk -v d=$((t1 - t0)) 'BEGIN {printf "%.3f", d / 1e9}')"
  read -r _ su ss sm < "$shm/send.time"; read -r _ ru rs rm_ < "$shm/recv.time"
  cpu+="$name: send $(awk -v a="$su" -v b="$ss" 'BEGIN{print a+b}')s/$((sm / 1024))MiB recv $(awk -v a="$ru" -v b="$rs" 'BEGIN{print a+b}')s/$((rm_ / 1024))MiB; "
}
filebytes() { find "$1" -type f ! -name '.done*' -printf '%s\n' | awk '{s += $1} END {printf "%d", s}'; }
run_peer() {  # NAME CMD...: CMD run on h1 into a fresh $shm/dst; a run that lands less is FAILED
  local name=$1 s; shift
  fresh
  s=$(secs h1 "$@")
  [ "$(filebytes "$shm/dst")" -ge "$(filebytes "$src")" ] || s=FAILED
  record "$name" "$s"
}
run_tar_nc() {
  local src=$1
  fresh
  h2 sh -c "nc -l -N 10.50.0.2 9000 | zstd -dq | tar -x -C $shm/dst" &
  local lpid=$!
  sleep 0.2
  record tar_zstd_nc "$(secs h1 sh -c "tar -c -C $src . | zstd -1 -T0 -q | nc -N 10.50.0.2 9000")"
  wait "$lpid"
}

for what in file dir; do
  [ -n "$only" ] && [ "$only" != "$what" ] && continue
  src=$work/$what
  warm "$src"
  t=(); cpu=""
  for r in $(seq "$rounds"); do
    run_barge "$src"
    for p in $peers; do
      case "$p" in
        rsync_ssh) run_peer rsync_ssh rsync -a -e "$rsh" "$src/" "root@10.50.0.2:$shm/dst/" ;;
        rsync_daemon) run_peer rsync_daemon rsync -a "$src/" "rsync://10.50.0.2:8730/shm/dst/" ;;
        tar_zstd_nc) run_tar_nc "$src" ;;
        barge_plain) run_barge "$src" barge_plain --insecure-no-encryption ;;
        barge_s[0-9]*) send_streams=${p#barge_s} run_barge "$src" "$p" ;;
        gridftp|gridftp8)
          par=4; [ "$p" = gridftp8 ] && par=8
          if [ "$what" = file ]; then
            run_peer "$p" globus-url-copy -p "$par" "file://$src/big" "ftp://10.50.0.2:2811$shm/dst/big"
          else
            run_peer "$p" globus-url-copy -r -cc 4 -p "$par" -cd "file://$src/" "ftp://10.50.0.2:2811$shm/dst/"
          fi ;;
        xrdcp)
          if [ "$what" = file ]; then
            run_peer xrdcp xrdcp -f -s --streams 4 "$src/big" "root://10.50.0.2:1094/$shm/dst/big"
          else
            run_peer xrdcp xrdcp -r -f -s --streams 4 "$src/" "root://10.50.0.2:1094/$shm/dst/"
          fi ;;
      esac
    done
  done
  rm -rf "$shm/dst"
  bytes=$(du -sb --exclude=.done "$src" | cut -f1)
  iperf=$(h1 iperf3 -c 10.50.0.2 -P 4 -t 8 -J | python3 -c 'import json,sys; print("%.0f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 8e6))')
  echo "== $what, shape $shape: $((bytes >> 20)) MiB, $rounds rounds (iperf3 -P 4: $iperf MB/s) =="
  mb=$(median <<<"${t[barge]}")
  for name in barge $peers; do
    m=$(median <<<"${t[$name]}")
    rate=$(awk -v b="$bytes" -v s="$m" 'BEGIN{print b / s / 1e6}')
    link=""
    [ "$link_mb" != 0 ] && link=$(awk -v r="$rate" -v l="$link_mb" 'BEGIN{printf "  %3.0f%% of the link", 100 * r / l}')
    printf '%-14s runs: %-26s median %6.2f s  %7.0f MB/s  time/barge %.2fx%s\n' "$name" "${t[$name]}" "$m" \
      "$rate" "$(awk -v a="$m" -v b="$mb" 'BEGIN{print a / b}')" "$link"
  done
  echo "CPU (user+sys) / peak RSS per run: $cpu"
done
