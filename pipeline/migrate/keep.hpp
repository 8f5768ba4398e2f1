// Rollback's keep-aside (as rsync's --backup-dir, but whole): before pass N touches DST,
// DIR/keep/pass-N/ gets an index of DST (every entry's path, type, inode, mode, owner, times,
// symlink target) and a hard link to every regular file DST holds (one per inode, so hard
// links stay one file), plus the state's manifest as it was. A link costs no data, and the
// pass's renames and deletions leave the old inodes alive under keep/. After the pass, the
// links of files it left in place are dropped: what stays is exactly what the pass replaced
// or deleted. Rolling back pass N puts the index back: entries it lacks are removed, kept
// inodes linked back under their names, symlinks and special files made again, and every
// entry's metadata set as indexed (directories last).
//
// keep/ must be on DST's file system (hard links); the error says so and names --no-keep.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "io/metadata.hpp"
#include "io/result.hpp"
#include "pipeline/migrate/state.hpp"

namespace barge::pipeline::migrate {

struct KeptEntry {
  std::string rel;  // "" for DST itself
  io::FileMeta meta;
  std::string link_target;
};

std::string keep_dir(const State& s, unsigned pass);
bool kept(const State& s, unsigned pass);  // keep/pass-N is complete

// The index file's bytes and back (a parse error names what is wrong).
std::string encode_index(const std::vector<KeptEntry>& entries);
io::Result<std::vector<KeptEntry>> decode_index(std::string_view bytes);

// Before pass `pass`; a keep already complete (a resumed pass) is left as it is.
io::Status keep_before_pass(const State& s, unsigned pass, unsigned threads);
// After it: drops the links of the files it left in place.
io::Status prune_after_pass(const State& s, unsigned pass);

struct RollbackResult {
  unsigned to_pass = 0;
  std::vector<unsigned> undone;  // the passes rolled back, last first
  uint64_t removed = 0, restored = 0;
  std::vector<std::string> errors;
};

// DST as it was after pass `to_pass` (default: before the last pass). Rank 0's work.
io::Result<RollbackResult> rollback(State& s, std::optional<unsigned> to_pass, unsigned threads);

}  // namespace barge::pipeline::migrate
