#!/usr/bin/env bash
# The two-cluster templates under a real single-node Slurm: recv.sbatch serves into DST
# (PORT=0, its HOST:PORT written to ENDPOINT_FILE), send.sbatch sends a tree there; DST must
# equal SRC (rsync as the oracle), the send job complete with exit code 0 and its report say
# so; then the recv job is cancelled and ends cleanly. Both jobs ask for one CPU here.
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
echo "PASS: send.sbatch → recv.sbatch, $(find "$T/dst" -type f | wc -l) files exact"
