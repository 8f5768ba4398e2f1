// Extended attributes (--xattrs): every namespace the process may read and write (user.*
// always; trusted.* and security.* as root). Symlinks are never followed.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "io/result.hpp"

namespace barge::io {

using Xattrs = std::vector<std::pair<std::string, std::string>>;  // sorted by name

// The attributes of `path` itself (llistxattr/lgetxattr). A file system without xattr
// support yields an empty list.
Result<Xattrs> read_xattrs(const std::string& path);

// Makes dst's attributes equal to `attrs`: sets each, removes the ones dst has beyond them.
// dst_fd >= 0 uses f*xattr on it; otherwise l*xattr on dst_path.
Status write_xattrs(const Xattrs& attrs, int dst_fd, const std::string& dst_path);

// read_xattrs(src) then write_xattrs(dst).
Status copy_xattrs(const std::string& src_path, int dst_fd, const std::string& dst_path);

}  // namespace barge::io
