// Reading one directory: its children's names, metadata and (for symlinks) targets.
// Never follows symlinks. Used by the parallel tree walk in pipeline/.
#pragma once

#include <string>
#include <vector>

#include "io/metadata.hpp"
#include "io/result.hpp"

namespace barge::io {

struct DirChild {
  std::string name;  // one path component, raw bytes
  FileMeta meta;
  std::string link_target;  // symlinks only
};

struct DirListing {
  std::vector<DirChild> children;  // sorted by name (bytewise) for a deterministic order
  std::vector<Error> errors;       // children that could not be stat'ed or read
};

// Opens `path` as a directory (O_NOFOLLOW) and lists it.
Result<DirListing> read_directory(const std::string& path);

}  // namespace barge::io
