// Internal to pipeline/bench: the names errors are counted under ("EIO", "ENOSPC"), and
// which of them end a run because nothing after them can succeed.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>

namespace barge::pipeline::bench::detail {

inline std::string error_kind(int err) {
  if (const char* name = ::strerrorname_np(err)) return name;
  return "errno " + std::to_string(err);
}

inline bool is_fatal_error(int err) {
  return err == ENOSPC || err == EDQUOT || err == EROFS || err == EBADF;
}

}  // namespace barge::pipeline::bench::detail
