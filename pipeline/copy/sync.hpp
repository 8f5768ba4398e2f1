// barge sync SRC DST: makes DST a mirror of SRC's contents (as `rsync -a SRC/ DST/`, or
// dsync). Files are copied when missing or different by size or mtime (default; a no-op
// sync reads no file content) or by content (--checksum, both sides hashed in parallel);
// metadata-only differences are applied without copying; --delete removes what SRC lacks.
// Runs alone or across ranks: each rank compares the directories the walk coordinator
// hands it, then the copy's transfer phases move what changed.
#pragma once

#include <string>
#include <vector>

#include "pipeline/copy/copy.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline {

struct SyncOptions {
  CopyOptions copy;           // sources (exactly one directory), destination, engine knobs
  bool checksum = false;      // compare content instead of size + mtime
  bool delete_extra = false;  // remove entries DST has and SRC lacks
  bool dry_run = false;       // change nothing; list what would change
  bool itemize = false;       // one line per change (rsync --itemize-changes style)
};

struct SyncResult {
  RunResult run;
  std::vector<std::string> changes;  // itemized lines, sorted by path (rank 0)
};

SyncResult run_sync(const SyncOptions& opts, transport::Comm& comm);

}  // namespace barge::pipeline
