#!/usr/bin/env bash
# A throw-away sshd inside a network namespace, for tests and benchmarks of send over ssh
# and of rsync -e ssh (needs root and openssh-server, which scripts/setup installs).
#   scripts/ns-sshd.sh start NS ADDR DIR   keys and config in DIR, sshd on ADDR:2222 in NS;
#                                          prints the ssh command that logs in (for --rsh)
#   scripts/ns-sshd.sh stop DIR
set -euo pipefail
PATH=$PATH:/usr/sbin
case "${1:-}" in
  start)
    ns=$2 addr=$3 dir=$4
    command -v sshd >/dev/null || { echo "ns-sshd: sshd not found (openssh-server)" >&2; exit 1; }
    mkdir -p "$dir" /run/sshd; chmod 700 "$dir"
    ssh-keygen -q -t ed25519 -N '' -f "$dir/host_key" <<<y >/dev/null
    ssh-keygen -q -t ed25519 -N '' -f "$dir/user_key" <<<y >/dev/null
    cp "$dir/user_key.pub" "$dir/authorized_keys"
    cat > "$dir/sshd_config" <<CFG
Port 2222
ListenAddress $addr
HostKey $dir/host_key
AuthorizedKeysFile $dir/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile $dir/sshd.pid
CFG
    ip netns exec "$ns" "$(command -v sshd)" -f "$dir/sshd_config" -E "$dir/sshd.log"
    echo "ssh -F none -i $dir/user_key -p 2222 -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR"
    ;;
  stop)
    [ -f "$2/sshd.pid" ] && kill "$(cat "$2/sshd.pid")" 2>/dev/null || true
    ;;
  *) echo "usage: ns-sshd.sh start NS ADDR DIR | stop DIR" >&2; exit 2 ;;
esac
