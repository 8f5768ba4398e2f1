# Helpers shared by the scripted integration tests (sourced, not run).
fail() { echo "FAIL: $*" >&2; exit 1; }
# same_tree A B WHAT: B equals A in content and metadata (rsync -aHAX as the oracle, ns mtimes).
same_tree() {
  local out
  out=$(rsync -aHAXn --delete --itemize-changes --modify-window=-1 --checksum "$1/" "$2/")
  [ -z "$out" ] || fail "$3: trees differ: $(echo "$out" | head -5)"
}
