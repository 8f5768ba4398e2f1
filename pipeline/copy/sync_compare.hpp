// What sync (local, and send --sync on the receiver) decides about one entry against what DST
// holds under its name, and the removal of what stands in the way or what SRC lacks.
#pragma once

#include <ctime>
#include <string>

#include "io/dir_reader.hpp"
#include "io/result.hpp"
#include "pipeline/core/hash.hpp"
#include "pipeline/core/plan.hpp"

namespace barge::pipeline {

inline bool same_time(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

// Removes `name` in dirfd, recursively for a directory; never follows symlinks. `path` names
// it in errors.
io::Status remove_tree(int dirfd, const std::string& name, const std::string& path);

// The attribute columns of rsync's itemized line for an existing entry (c s t p o g, '.' when
// the same): content, size, time, permissions, owner, group.
std::string attr_diff(const io::FileMeta& src, const io::FileMeta& dst, bool owner,
                      bool content_differs);

// Whether the content of source entry `e` differs from `dst` (same type): a regular file by
// size, then by `src_sum` against the DST file's XXH3-128 when given (--checksum; `dst_path`
// is hashed) or else by mtime; a symlink by target; a device by number.
bool content_differs(const Entry& e, const io::DirChild& dst, const Hash128* src_sum,
                     const std::string& dst_path);

}  // namespace barge::pipeline
