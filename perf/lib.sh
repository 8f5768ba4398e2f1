# Helpers shared by the perf/ scripts (sourced, not run).
# median: the median of numbers given one per line or separated by spaces.
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# warm DIR: reads every file under DIR once, so runs start from the same warm page cache.
warm() { find "$1" -type f -print0 | xargs -0 -r cat >/dev/null; }
# secs CMD...: runs CMD quietly and prints its wall-clock seconds, or FAILED (and CMD's
# stderr) when it fails, so a failed run never passes for a fast one.
secs() {
  local t0 t1 err
  t0=$(date +%s%N)
  if ! err=$("$@" 2>&1 >/dev/null); then echo "secs: $*: $err" | head -3 >&2; echo FAILED; return; fi
  t1=$(date +%s%N)
  awk -v d=$((t1 - t0)) 'BEGIN {printf "%.3f", d / 1e9}'
}
