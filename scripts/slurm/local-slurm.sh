#!/usr/bin/env bash
# Starts and stops a real single-node Slurm (munged + slurmctld + slurmd) whose whole state
# lives under one directory, for tests and for trying the job templates on one machine.
#
#   eval "$(scripts/slurm/local-slurm.sh start DIR)"   # prints: export SLURM_CONF=DIR/slurm.conf
#   sinfo; sbatch ...; srun --mpi=pmix -n 2 hostname
#   scripts/slurm/local-slurm.sh stop DIR               # cancels jobs, stops the daemons, removes DIR's files
#   scripts/slurm/local-slurm.sh status DIR             # exit 0 when all three daemons run
#
# Needs root (slurmd launches jobs, munged runs as the munge user). On Debian 12 `start`
# installs what is missing (slurm-wlm munge slurmctld slurmd slurm-client, and for
# `srun --mpi=pmix`: openmpi-bin, libpmix2 and libpmix-dev; Slurm's pmix plugin dlopens
# the unversioned pmix2/lib/libpmix.so that only libpmix-dev ships).
#
# Nothing global is touched besides the packages: munged gets a private socket under DIR
# (slurm.conf points AuthInfo at it), all pid files, logs, spool and state are under DIR,
# the node talks over 127.0.0.1 only, and the ports are the defaults 6817/6818 unless they
# are taken, then the next free pair. `start` twice on the same DIR is a no-op that prints
# the export line again; `stop` on a stopped or missing DIR does nothing. Only stdout's
# last line is meant for eval; progress and errors go to stderr.
#
# Environment: LOCAL_SLURM_KEEP=1 makes `stop` keep DIR's logs and state.
# Exit codes: 0 ok, 1 failure (the logs' tails are printed), 2 usage,
#             3 the packages are missing and cannot be installed (not root, or apt failed).
set -euo pipefail

PKGS=(slurm-wlm munge slurmctld slurmd slurm-client openmpi-bin libpmix2 libpmix-dev)

log() { echo "local-slurm: $*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }

[ $# -eq 2 ] || usage
cmd=$1
[ -n "$2" ] || usage
mkdir_abs() { mkdir -p "$1" && (cd "$1" && pwd -P); }

# --- daemons by pid file ----------------------------------------------------------------
# pid_alive FILE NAME: the pid in FILE runs a live process whose name starts with NAME
# (guards against a recycled pid after a crash).
pid_alive() {
  local f=$1 name=$2 pid comm
  pid=$(tr -dc '0-9' 2>/dev/null < "$f") || return 1
  [ -n "$pid" ] && [ -r "/proc/$pid/comm" ] || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  [[ $comm == "$name"* ]] || return 1
  # An exited daemon stays a zombie until init reaps it: that counts as stopped.
  local st
  st=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null) || return 1
  [[ ${st%% *} != [ZX] ]]
}

# stop_pid FILE NAME: TERM, wait up to 10 s, then KILL.
stop_pid() {
  local f=$1 name=$2 pid i
  pid_alive "$f" "$name" || { rm -f "$f"; return 0; }
  pid=$(tr -dc '0-9' 2>/dev/null < "$f") || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 100; i++)); do
    pid_alive "$f" "$name" || break
    sleep 0.1
  done
  if pid_alive "$f" "$name"; then
    log "$name (pid $pid) ignored TERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
    sleep 0.2
  fi
  rm -f "$f"
}

show_logs() {
  local f
  for f in "$D/munge/munged.log" "$D/slurmctld.log" "$D/slurmd.log"; do
    [ -s "$f" ] || continue
    echo "---- tail of $f" >&2
    tail -n 20 "$f" >&2
  done
}

all_running() {
  pid_alive "$D/munge/munged.pid" munged &&
    pid_alive "$D/slurmctld.pid" slurmctld &&
    pid_alive "$D/slurmd.pid" slurmd
}

# --- packages -----------------------------------------------------------------------------
pkg_installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }

install_packages() {
  local missing=() p
  command -v dpkg-query >/dev/null 2>&1 || {
    for p in slurmctld slurmd sinfo srun munged; do
      command -v "$p" >/dev/null 2>&1 || { log "not a Debian system and $p is missing"; exit 3; }
    done
    return 0
  }
  for p in "${PKGS[@]}"; do pkg_installed "$p" || missing+=("$p"); done
  ((${#missing[@]})) || return 0
  if [ "$(id -u)" != 0 ]; then
    log "missing packages ${missing[*]} and not root: cannot install them"
    exit 3
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  local apt=(apt-get -y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef
             -o Dpkg::Options::=--force-confold install --no-install-recommends)
  if ! "${apt[@]}" "${missing[@]}" >"${TMPDIR:-/tmp}/local-slurm-apt.$$.log" 2>&1; then
    log "apt-get install failed; running apt-get update and retrying"
    apt-get -q -o DPkg::Lock::Timeout=300 update >>"${TMPDIR:-/tmp}/local-slurm-apt.$$.log" 2>&1 || true
    if ! "${apt[@]}" "${missing[@]}" >>"${TMPDIR:-/tmp}/local-slurm-apt.$$.log" 2>&1; then
      tail -n 15 "${TMPDIR:-/tmp}/local-slurm-apt.$$.log" >&2
      rm -f "${TMPDIR:-/tmp}/local-slurm-apt.$$.log"
      log "cannot install ${missing[*]}"
      exit 3
    fi
  fi
  rm -f "${TMPDIR:-/tmp}/local-slurm-apt.$$.log"
  # On a systemd host the packages may have started their own munged/slurmd with the
  # system config; they do not disturb this instance (own socket, own ports when taken).
}

# --- ports --------------------------------------------------------------------------------
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pick_ports() {
  local p
  for p in 6817 $(seq 6901 2 7899); do
    if ! port_in_use "$p" && ! port_in_use "$((p + 1))"; then
      CTLD_PORT=$p
      SLURMD_PORT=$((p + 1))
      return 0
    fi
  done
  die "no free port pair for slurmctld/slurmd in 6817-7900"
}

# --- config -------------------------------------------------------------------------------
write_conf() {
  local host hw cpus boards sockets cores threads mem
  # The node's real hardware, so that slurmd never finds "less than configured" and drains it.
  hw=$(slurmd -C 2>/dev/null | head -n 1)
  host=$(sed -n 's/.*NodeName=\([^ ]*\).*/\1/p' <<<"$hw")
  [ -n "$host" ] || host=$(hostname -s)
  cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
  boards=$(sed -n 's/.* Boards=\([0-9]*\).*/\1/p' <<<"$hw")
  sockets=$(sed -n 's/.* SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$hw")
  cores=$(sed -n 's/.* CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$hw")
  threads=$(sed -n 's/.* ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$hw")
  mem=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$hw")
  [ -n "$cpus" ] || cpus=$(nproc)
  [ -n "$mem" ] || mem=1000
  local topo="CPUs=$cpus"
  [ -n "$cores" ] && [ -n "$threads" ] &&
    topo="CPUs=$cpus Boards=${boards:-1} SocketsPerBoard=${sockets:-1} CoresPerSocket=$cores ThreadsPerCore=$threads"
  pick_ports
  cat >"$D/slurm.conf.tmp" <<EOF
# Written by scripts/slurm/local-slurm.sh: single-node test cluster, state under $D
ClusterName=bargetest
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$D/munge/munge.socket
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmdSpoolDir=$D/spool
StateSaveLocation=$D/state
SlurmctldLogFile=$D/slurmctld.log
SlurmdLogFile=$D/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MailProg=/bin/true
ReturnToService=2
InactiveLimit=0
KillWait=5
MinJobAge=60
NodeName=$host NodeAddr=127.0.0.1 $topo RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  mv "$D/slurm.conf.tmp" "$D/slurm.conf"
}

node_state() {
  SLURM_CONF="$D/slurm.conf" timeout 10 sinfo -h -o '%t' 2>/dev/null | head -n 1
}

# --- start --------------------------------------------------------------------------------
start() {
  install_packages
  [ "$(id -u)" = 0 ] || { log "must run as root (slurmd launches the jobs, munged runs as munge)"; exit 3; }
  D=$(mkdir_abs "$D")
  export SLURM_CONF="$D/slurm.conf"

  if all_running && [ -s "$D/slurm.conf" ] && [[ $(node_state) == idle* || $(node_state) == mix* || $(node_state) == alloc* ]]; then
    log "already running under $D"
    echo "export SLURM_CONF=$D/slurm.conf"
    return 0
  fi

  # munged (as the munge user) must traverse DIR to reach its socket.
  chmod o+x "$D"
  mkdir -p "$D/spool" "$D/state" "$D/munge"
  chown munge:munge "$D/munge"
  chmod 0755 "$D/munge"
  runuser -u munge -- test -x "$D/munge" ||
    die "the munge user cannot reach $D/munge: make DIR's parent directories world-searchable (chmod o+x)"

  # A config is rewritten only when no daemon of this instance runs (a restart may pick
  # other ports); a half-running instance keeps its config and gets the missing daemons.
  if ! pid_alive "$D/slurmctld.pid" slurmctld && ! pid_alive "$D/slurmd.pid" slurmd; then
    write_conf
  fi

  if ! pid_alive "$D/munge/munged.pid" munged; then
    if [ ! -s /etc/munge/munge.key ]; then
      log "creating /etc/munge/munge.key"
      if command -v mungekey >/dev/null 2>&1; then
        runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
      else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
        chown munge:munge /etc/munge/munge.key
        chmod 0400 /etc/munge/munge.key
      fi
    fi
    rm -f "$D/munge/munge.socket" "$D/munge/munge.socket.lock"
    runuser -u munge -- /usr/sbin/munged --socket="$D/munge/munge.socket" \
      --pid-file="$D/munge/munged.pid" --log-file="$D/munge/munged.log" \
      --seed-file="$D/munge/munged.seed" --num-threads=2 ||
      { show_logs; die "munged did not start"; }
  fi
  munge -S "$D/munge/munge.socket" -n </dev/null | unmunge -S "$D/munge/munge.socket" >/dev/null ||
    { show_logs; die "munge round trip through $D/munge/munge.socket failed"; }

  if ! pid_alive "$D/slurmctld.pid" slurmctld; then
    slurmctld -f "$D/slurm.conf" || { show_logs; die "slurmctld did not start"; }
  fi
  # Ready = the node is usable and registered by a slurmd started now (slurmctld would still
  # report a killed slurmd's node idle for SlurmdTimeout).
  local t0=0
  if ! pid_alive "$D/slurmd.pid" slurmd; then
    t0=$(date +%s)
    slurmd -f "$D/slurm.conf" || { show_logs; die "slurmd did not start"; }
  fi

  local i st="" started
  for ((i = 0; i < 300; i++)); do  # 30 s
    st=$(node_state)
    case $st in
      idle*|mix*|alloc*)
        ((t0 == 0)) && break
        started=$(SLURM_CONF="$D/slurm.conf" timeout 10 scontrol show node 2>/dev/null |
                  sed -n 's/.*SlurmdStartTime=\([0-9T:-]*\).*/\1/p' | head -n 1)
        [ -n "$started" ] && (($(date -d "$started" +%s 2>/dev/null || echo 0) >= t0 - 1)) && break
        ;;
    esac
    sleep 0.1
  done
  ((i < 300)) || { show_logs; die "node not ready after 30 s (sinfo state: '${st:-no answer}')"; }
  log "up under $D (ports $(sed -n 's/^SlurmctldPort=//p' "$D/slurm.conf")/$(sed -n 's/^SlurmdPort=//p' "$D/slurm.conf"), node state $st)"
  echo "export SLURM_CONF=$D/slurm.conf"
}

# --- stop ---------------------------------------------------------------------------------
stop() {
  [ -d "$D" ] || return 0
  D=$(cd "$D" && pwd -P)
  export SLURM_CONF="$D/slurm.conf"
  local i
  if pid_alive "$D/slurmctld.pid" slurmctld && [ -s "$D/slurm.conf" ]; then
    # Cancel what still runs so slurmd ends its job steps before it goes.
    if [ -n "$(timeout 10 squeue -h -o %i 2>/dev/null)" ]; then
      timeout 10 scancel --partition=debug 2>/dev/null || true
      for ((i = 0; i < 150; i++)); do  # KillWait=5 s, plus margin
        [ -z "$(timeout 10 squeue -h -t PD,R,CG,S,CF -o %i 2>/dev/null)" ] && break
        sleep 0.1
      done
    fi
  fi
  stop_pid "$D/slurmd.pid" slurmd
  stop_pid "$D/slurmctld.pid" slurmctld
  # Step daemons of this instance (they log into DIR's slurmd.log) that outlived slurmd.
  local p
  for p in /proc/[0-9]*; do
    [ "$(cat "$p/comm" 2>/dev/null)" = slurmstepd ] || continue
    p=${p#/proc/}
    if find "/proc/$p/fd" -mindepth 1 -maxdepth 1 -lname "$D/*" 2>/dev/null | grep -q .; then
      log "killing leftover slurmstepd $p"
      kill -KILL "$p" 2>/dev/null || true
    fi
  done
  stop_pid "$D/munge/munged.pid" munged
  if [ "${LOCAL_SLURM_KEEP:-0}" = 1 ]; then
    log "stopped; kept $D"
    return 0
  fi
  rm -rf "$D/spool" "$D/state" "$D/munge" "$D/slurm.conf" "$D/slurm.conf.tmp" \
         "$D/slurmctld.log" "$D/slurmd.log"
  rmdir "$D" 2>/dev/null || true
  log "stopped"
}

status() {
  [ -d "$D" ] || { log "no $D"; return 1; }
  D=$(cd "$D" && pwd -P)
  local ok=0 n
  for n in munged:munge/munged.pid slurmctld:slurmctld.pid slurmd:slurmd.pid; do
    if pid_alive "$D/${n#*:}" "${n%%:*}"; then log "${n%%:*} running"; else log "${n%%:*} not running"; ok=1; fi
  done
  [ $ok = 0 ] && log "node state: $(node_state)"
  return $ok
}

D=$2
case $cmd in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
