#!/usr/bin/env bash
# Integration test: `barge copy` as a 2-rank MPI job step under a real single-node Slurm.
#
#   tests/integration/slurm_test.sh [BARGE]     # BARGE defaults to build/barge
#
# Starts a private Slurm (scripts/slurm/local-slurm.sh) in a temp dir, checks that
# `srun --mpi=pmix` starts two PMIx ranks, generates a 64 MiB mixed tree, submits an sbatch
# job running `srun --mpi=pmix -n 2 barge copy --report R.json SRC DST`, waits for it
# (at most 120 s), then checks the job state (scontrol; accounting is off, so no sacct),
# the job output (one summary line: only rank 0 prints it), the report JSON, and that DST
# equals SRC exactly (rsync --checksum dry run prints nothing, diff -r agrees).
# Slurm is stopped and the temp dir removed on exit, pass or fail.
#
# Needs root. Exit 0 pass, 1 fail, 77 skip: only when local-slurm.sh exits 3, i.e. the
# Slurm packages are missing and cannot be installed, or the test does not run as root.
# BARGE_TEST_KEEP=1 keeps the temp dir (and Slurm's logs) for a post-mortem.
set -uo pipefail

t_start=$(date +%s)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
barge=${1:-build/barge}
[ -x "$barge" ] || [ ! -x "$root/$barge" ] || barge="$root/$barge"
[ -x "$barge" ] || { echo "FAIL: no barge binary at '$barge'" >&2; exit 1; }
barge=$(cd "$(dirname "$barge")" && pwd)/$(basename "$barge")
local_slurm="$root/scripts/slurm/local-slurm.sh"

log() { echo "slurm_test: $*"; }
fail() { echo "FAIL: $*" >&2; failed=1; }
failed=0

for tool in rsync diff; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is needed (scripts/setup installs it)" >&2; exit 1; }
done

T=$(mktemp -d "${TMPDIR:-/tmp}/barge-slurm-test.XXXXXX") || exit 1
chmod 0711 "$T"          # munged runs as the munge user and must reach its socket under $T/slurm
# shellcheck disable=SC2317  # invoked by the EXIT trap
cleanup() {
  local rc=$?
  "$local_slurm" stop "$T/slurm" >/dev/null 2>&1 || true
  if [ "${BARGE_TEST_KEEP:-0}" = 1 ]; then
    echo "slurm_test: kept $T" >&2
  else
    rm -rf "$T"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Slurm's daemon logs and the job output, when something went wrong.
post_mortem() {
  local f
  for f in "$T/job.out" "$T/slurm/slurmctld.log" "$T/slurm/slurmd.log"; do
    [ -s "$f" ] || continue
    echo "---- tail of $f" >&2
    tail -n 25 "$f" >&2
  done
}

# --- 1. Slurm up ---------------------------------------------------------------------------
out=$("$local_slurm" start "$T/slurm" 2>"$T/start.err")
rc=$?
if [ $rc = 3 ]; then
  cat "$T/start.err" >&2
  echo "SKIP: no local Slurm: $(tail -n 1 "$T/start.err" | sed 's/^local-slurm: //')"
  exit 77
fi
if [ $rc != 0 ]; then
  cat "$T/start.err" >&2
  echo "FAIL: local-slurm.sh start exited $rc" >&2
  exit 1
fi
sed 's/^/  /' "$T/start.err"
eval "$out"
[ -n "${SLURM_CONF:-}" ] || { echo "FAIL: local-slurm.sh printed no SLURM_CONF" >&2; exit 1; }
log "slurm up in $(($(date +%s) - t_start)) s"

# --- 2. the harness: srun starts 2 tasks, and they are PMIx ranks 0 and 1 --------------------
hosts=$(timeout 60 srun --mpi=pmix -n 2 hostname 2>&1)
[ "$(grep -c . <<<"$hosts")" = 2 ] || { fail "srun --mpi=pmix -n 2 hostname printed: $hosts"; post_mortem; exit 1; }
ranks=$(timeout 60 srun --mpi=pmix -n 2 /usr/bin/env 2>&1 | sed -n 's/^PMIX_RANK=//p' | sort | tr '\n' ' ')
[ "$ranks" = "0 1 " ] || { fail "PMIX_RANK of the 2 tasks: '$ranks' (expected '0 1 ')"; post_mortem; exit 1; }
log "srun --mpi=pmix: 2 tasks, PMIX_RANK 0 and 1"

# --- 3. data and job -----------------------------------------------------------------------
"$barge" gen "$T/src" --profile mixed --size 64M --seed 5 >"$T/gen.out" 2>&1 ||
  { cat "$T/gen.out" >&2; echo "FAIL: barge gen" >&2; exit 1; }

cat >"$T/job.sh" <<EOF
#!/bin/bash
#SBATCH --job-name=barge-slurm-test
#SBATCH --nodes=1
#SBATCH --ntasks=2
#SBATCH --time=00:03:00
#SBATCH --output=$T/job.out
srun --mpi=pmix -n 2 "$barge" copy --report "$T/R.json" "$T/src" "$T/dst"
rc=\$?
echo "srun exit code \$rc"
exit \$rc
EOF
job=$(sbatch --parsable --chdir="$T" "$T/job.sh" 2>&1)
[[ $job =~ ^[0-9]+$ ]] || { fail "sbatch: $job"; post_mortem; exit 1; }
log "submitted job $job"

t_job=$(date +%s)
state=
while :; do
  # A finished job drops out of squeue's default listing (it stays visible to scontrol for MinJobAge).
  state=$(squeue -h --jobs="$job" -o %T 2>/dev/null)
  [ -z "$state" ] && break
  if (($(date +%s) - t_job > 120)); then
    fail "job $job still '$state' after 120 s"
    scancel "$job" 2>/dev/null
    post_mortem
    exit 1
  fi
  sleep 0.5
done
job_secs=$(($(date +%s) - t_job))
info=$(scontrol show job "$job" 2>&1)
job_state=$(sed -n 's/.*JobState=\([A-Z_]*\).*/\1/p' <<<"$info" | head -n 1)
exit_code=$(sed -n 's/.* ExitCode=\([0-9:]*\).*/\1/p' <<<"$info" | head -n 1)
log "job $job finished in ${job_secs} s: JobState=$job_state ExitCode=$exit_code"

# --- 4. checks -----------------------------------------------------------------------------
[ "$job_state" = COMPLETED ] || fail "job state $job_state (expected COMPLETED)"
[ "$exit_code" = 0:0 ] || fail "job exit code $exit_code (expected 0:0)"
[ -s "$T/job.out" ] || fail "no job output $T/job.out"
grep -qx 'srun exit code 0' "$T/job.out" || fail "job output lacks 'srun exit code 0'"
if grep -E '^srun: error|^slurmstepd: error' "$T/job.out" >&2; then fail "errors from srun/slurmstepd in the job output"; fi
summaries=$(grep -Ec '^barge: copy: [0-9]+ files' "$T/job.out")
[ "$summaries" = 1 ] || fail "$summaries summary lines in the job output (expected 1: only rank 0 prints it)"

src_files=$(find "$T/src" -type f | wc -l)
src_bytes=$(find "$T/src" -type f -printf '%s\n' | awk '{s += $1} END {printf "%d", s}')
src_links=$(find "$T/src" -type l | wc -l)
if [ ! -s "$T/R.json" ]; then
  fail "no report $T/R.json"
elif command -v python3 >/dev/null; then
  if ! msg=$(python3 - "$T/R.json" "$src_files" "$src_bytes" "$src_links" 2>&1 <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
want = {"exit_code": 0, "files": int(sys.argv[2]), "bytes": int(sys.argv[3]), "symlinks": int(sys.argv[4])}
bad = [f"{k}={r.get(k)!r} (expected {v})" for k, v in want.items() if r.get(k) != v]
if r.get("errors"):
    bad.append(f"errors={r['errors']!r}")
if bad:
    sys.exit("report: " + ", ".join(bad))
PY
  ); then fail "$msg"; fi
elif command -v jq >/dev/null; then
  jq -e --argjson f "$src_files" --argjson b "$src_bytes" --argjson l "$src_links" \
    '.exit_code == 0 and .files == $f and .bytes == $b and .symlinks == $l and (.errors | length) == 0' \
    "$T/R.json" >/dev/null || fail "report does not match the source: $(cat "$T/R.json")"
else
  grep -Eq '"exit_code": *0[,}[:space:]]' "$T/R.json" || fail "report: exit_code not 0"
  grep -Eq "\"files\": *${src_files}[,}[:space:]]" "$T/R.json" || fail "report: files not $src_files"
  grep -Eq "\"bytes\": *${src_bytes}[,}[:space:]]" "$T/R.json" || fail "report: bytes not $src_bytes"
fi

if [ -d "$T/dst" ]; then
  changes=$(rsync -aHAXn --delete --itemize-changes --modify-window=-1 --checksum "$T/src/" "$T/dst/" 2>&1)
  if [ -n "$changes" ]; then
    fail "rsync finds differences between SRC and DST ($(grep -c . <<<"$changes") lines):"
    head -n 20 <<<"$changes" >&2
  fi
  diff -r --no-dereference "$T/src" "$T/dst" >"$T/diff.out" 2>&1 ||
    { fail "diff -r SRC DST differs:"; head -n 20 "$T/diff.out" >&2; }
else
  fail "no destination $T/dst"
fi

if ((failed)); then
  post_mortem
  echo "FAIL: slurm_test ($(($(date +%s) - t_start)) s)" >&2
  exit 1
fi
log "PASS ($src_files files, $src_bytes bytes; job ${job_secs} s, total $(($(date +%s) - t_start)) s)"
exit 0
