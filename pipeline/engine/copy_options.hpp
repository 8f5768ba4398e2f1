// The options of a copy (copy, sync, the MPI copy), read by the engine's copy stages.
#pragma once

#include <string>
#include <vector>

#include "io/result.hpp"
#include "pipeline/core/engine_options.hpp"
#include "pipeline/core/progress.hpp"

namespace barge::pipeline {

// --reflink: clone the source's extents (FICLONERANGE) instead of writing its bytes where
// source and destination share a file system that can (XFS with reflink, btrfs); the source
// is still read and hashed once. auto: clone when it works, write otherwise; always: a file
// that cannot be cloned fails; never: always write.
enum class Reflink { kAuto, kNever, kAlways };

struct CopyOptions : EngineOptions {
  std::vector<std::string> sources;
  std::string destination;
  bool verify = false;        // re-read what was written, compare checksums
  bool direct_read = false;   // O_DIRECT reads (bypass the source's page cache)
  bool direct_write = false;  // O_DIRECT writes
  bool fsync = false;         // fsync each file before it is renamed
  bool xattrs = false;        // copy extended attributes (--xattrs)
  bool resume = false;        // skip files in place and chunks the journal lists (--resume)
  Reflink reflink = Reflink::kAuto;
  // --exclude / --include globs: an entry is left out when it matches an exclude and no
  // include. A pattern with '/' matches the path below SRC, one without matches the name.
  std::vector<std::string> excludes;
  std::vector<std::string> includes;
  // Before a file is put in place, its source is looked at again (size, mtime, ctime,
  // inode): one changed while it was read fails with "changed while being copied" and
  // is not put in place (migrate's passes, over a live source).
  bool recheck_source = false;
  std::string manifest_path;  // --checksum-manifest
  std::string report_path;    // --report
  ProgressMode progress = ProgressMode::kAuto;
  double progress_interval_s = 0;  // 0: 0.5 s on a terminal, 5 s otherwise
};

// Checks option values; an error here is a usage error (exit 2).
io::Status validate(const CopyOptions& opts);

}  // namespace barge::pipeline
