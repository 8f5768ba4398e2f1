#!/usr/bin/env bash
# The layout rule of docs/ARCHITECTURE.md: every folder of pipeline/ includes only itself and
# the folders below it; io/ and transport/ include nothing of pipeline/. Prints each upward
# include and fails if there is one (or if a pipeline/ file sits outside the folders).
set -euo pipefail
cd "$(dirname "$0")/.."
declare -A allowed=(
  [core]="core"
  [engine]="core engine"
  [dist]="core engine dist"
  [copy]="core engine dist copy"
  [repo]="core engine dist repo"
  [check]="core engine check"
  [gen]="core gen"
  [remote]="core engine dist copy remote"
  [bench]="core engine bench"
  [migrate]="core engine dist copy migrate"
)
bad=0
for f in pipeline/*.cpp pipeline/*.hpp; do
  [ -e "$f" ] || continue
  echo "layout: $f is outside the folders of pipeline/"; bad=1
done
for dir in pipeline/*/; do
  folder=$(basename "$dir")
  [ -n "${allowed[$folder]:-}" ] || { echo "layout: pipeline/$folder has no rule here"; bad=1; continue; }
  while IFS=: read -r file line inc; do
    dep=$(sed -E 's|.*"pipeline/([a-z_]+)/.*|\1|' <<< "$inc")
    if [[ " ${allowed[$folder]} " != *" $dep "* ]]; then
      echo "layout: $file:$line includes pipeline/$dep from pipeline/$folder (upward)"; bad=1
    fi
  done < <(grep -n '#include "pipeline/' "$dir"*.?pp || true)
done
if grep -n '#include "pipeline/' io/*.?pp transport/*.?pp; then
  echo "layout: io/ or transport/ includes pipeline/"; bad=1
fi
[ "$bad" = 0 ] && echo "layout: every include runs downward"
exit "$bad"
