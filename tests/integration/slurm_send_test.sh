#!/usr/bin/env bash
# The two-cluster templates under a real single-node Slurm: recv.sbatch serves into DST
# (PORT=0, its HOST:PORT written to ENDPOINT_FILE), send.sbatch sends a tree there; DST must
# equal SRC (rsync as the oracle), the send job complete with exit code 0 and its report say
# so; then the recv job is cancelled and ends cleanly. Both jobs ask for one CPU here. Then
# recv.sbatch as two tasks (two ranks under srun) takes a send from outside Slurm, exact,
# both ranks receiving.
#   tests/integration/slurm_send_test.sh [BARGE]
# Exit 0 pass, 1 fail, 77 skip (no local Slurm can be started: see local-slurm.sh).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
barge=$(readlink -f "${1:-$root/build/barge}")
local_slurm="$root/scripts/slurm/local-slurm.sh"
T=$(mktemp -d "${TMPDIR:-/tmp}/barge-slurm-send.XXXXXX") || exit 1
chmod 0711 "$T"
cleanup() {
  local rc=$?
  "$local_slurm" stop "$T/slurm" >/dev/null 2>&1 || true
  rm -rf "$T"
  exit "$rc"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for f in "$T"/*.out "$T/slurm/slurmctld.log"; do [ -s "$f" ] && { echo "---- $f" >&2; tail -15 "$f" >&2; }; done
  exit 1
}
out=$("$local_slurm" start "$T/slurm" 2>"$T/start.err"); rc=$?
[ $rc = 3 ] && { echo "SKIP: no local Slurm: $(tail -n 1 "$T/start.err")"; exit 77; }
[ $rc = 0 ] || { cat "$T/start.err" >&2; fail "local-slurm.sh start exited $rc"; }
eval "$out"

# wait_job ID SECONDS: until the job has left the queue.
wait_job() {
  local t0=$SECONDS
  while [ -n "$(squeue -h --jobs="$1" -o %T 2>/dev/null)" ]; do
    ((SECONDS - t0 > $2)) && fail "job $1 still queued or running after $2 s"
    sleep 0.3
  done
}
job_field() { scontrol show job "$1" 2>/dev/null | sed -n "s/.* $2=\([^ ]*\).*/\1/p" | head -n 1; }

"$barge" gen "$T/src" --profile mixed --size 32M --seed 9 -q || fail "barge gen"
head -c 32 /dev/urandom > "$T/key"; chmod 600 "$T/key"
sub=(sbatch --parsable --chdir="$T" --cpus-per-task=1 --mem=512M --time=00:05:00)

recv_job=$("${sub[@]}" --output="$T/recv.out" \
  --export=ALL,DST="$T/dst",KEY="$T/key",PORT=0,ENDPOINT_FILE="$T/endpoint",BARGE="$barge",REPORT="$T/recv.json" \
  "$root/scripts/slurm/recv.sbatch") || fail "sbatch recv: $recv_job"
for _ in $(seq 600); do [ -s "$T/endpoint" ] && break; sleep 0.1; done
[ -s "$T/endpoint" ] || fail "recv.sbatch wrote no endpoint"
port=$(cut -d: -f2 < "$T/endpoint")   # the job runs on this machine: connect by loopback

send_job=$("${sub[@]}" --output="$T/send.out" \
  --export=ALL,SRC="$T/src",TO="127.0.0.1:$port",KEY="$T/key",BARGE="$barge",REPORT="$T/send.json" \
  "$root/scripts/slurm/send.sbatch") || fail "sbatch send: $send_job"
wait_job "$send_job" 120
[ "$(job_field "$send_job" JobState)" = COMPLETED ] || fail "send job state $(job_field "$send_job" JobState)"
[ "$(job_field "$send_job" ExitCode)" = 0:0 ] || fail "send job exit code $(job_field "$send_job" ExitCode)"
diffs=$(rsync -aHn --itemize-changes --checksum --modify-window=-1 "$T/src/" "$T/dst/") || fail "rsync"
[ -z "$diffs" ] || fail "DST differs from SRC: $(head -3 <<<"$diffs")"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(r['exit_code'] != 0 or r['files'] == 0)" \
  "$T/send.json" || fail "send report"
grep -q "listening on" "$T/recv.out" || fail "recv.sbatch did not say where it listens"

scancel "$recv_job"
wait_job "$recv_job" 60
grep -q "barge recv: exit code" "$T/recv.out" || fail "the recv job did not end cleanly"
[ -s "$T/recv.json" ] || fail "the recv job wrote no report"
echo "send.sbatch → recv.sbatch: $(find "$T/dst" -type f | wc -l) files exact"

# recv.sbatch with two tasks: two barge ranks under srun, each with its own streams. The
# node has 2 CPUs, all the job's, so the sender runs here, outside Slurm.
rm -f "$T/endpoint"
recv_job=$("${sub[@]}" --ntasks=2 --output="$T/recv2.out" \
  --export=ALL,DST="$T/dst2",KEY="$T/key",PORT=0,ONCE=1,ENDPOINT_FILE="$T/endpoint",BARGE="$barge",REPORT="$T/recv2.json" \
  "$root/scripts/slurm/recv.sbatch") || fail "sbatch recv (2 tasks): $recv_job"
for _ in $(seq 600); do [ -s "$T/endpoint" ] && break; sleep 0.1; done
[ -s "$T/endpoint" ] || { cat "$T/recv2.out" >&2; fail "recv.sbatch (2 tasks) wrote no endpoint"; }
port=$(cut -d: -f2 < "$T/endpoint")
"$barge" send -q --streams 2 "$T/src" "127.0.0.1:$port" --psk-file "$T/key" \
  || { cat "$T/recv2.out" >&2; fail "send to the 2-task recv: exit $?"; }
wait_job "$recv_job" 60
[ "$(job_field "$recv_job" ExitCode)" = 0:0 ] || fail "2-task recv job exit code $(job_field "$recv_job" ExitCode)"
diffs=$(rsync -aHn --itemize-changes --checksum --modify-window=-1 "$T/src/" "$T/dst2/") || fail "rsync"
[ -z "$diffs" ] || fail "DST (2 tasks) differs from SRC: $(head -3 <<<"$diffs")"
python3 -c "import json,sys; r=json.load(open(sys.argv[1])); sys.exit(len([k for k in r['ranks'] if k['bytes'] > 0]) != 2)" \
  "$T/recv2.json" || fail "the 2-task recv report does not show both ranks receiving"
echo "PASS: send.sbatch → recv.sbatch, and recv.sbatch as 2 srun tasks, exact"
