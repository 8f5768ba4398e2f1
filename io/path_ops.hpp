// Path helpers that keep working past PATH_MAX: deep trees are opened one component at a
// time relative to their parent, so only the final operation uses a short name.
#pragma once

#include <string>
#include <string_view>

#include "io/result.hpp"
#include "io/unique_fd.hpp"

namespace barge::io {

enum class DirOpen {
  kParent,  // O_PATH: enough for *at() calls, needs no read permission (drop-box directories)
  kList,    // O_RDONLY: for getdents
};

// Opens a directory by path (absolute or relative to the cwd). The last component is not
// followed if it is a symlink unless follow_last (for paths the user named, such as the
// parent of DST). Paths longer than the kernel's limit are walked component by component.
Result<UniqueFd> open_dir_path(const std::string& path, DirOpen how = DirOpen::kParent,
                               bool follow_last = false);

// "a/b/c" -> "a/b"; "c" -> ""; "/c" -> "/".
std::string_view parent_of(std::string_view path);
// "a/b/c" -> "c"; "a/b/" -> "b".
std::string_view base_name(std::string_view path);
// Joins with exactly one '/', treating an empty part as absent.
std::string join_path(std::string_view a, std::string_view b);

}  // namespace barge::io
