#include "io/path_ops.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

namespace barge::io {
namespace {
constexpr size_t kShortPathBytes = 3072;  // comfortably below PATH_MAX (4096)
}  // namespace

Result<UniqueFd> open_dir_path(const std::string& path, DirOpen how, bool follow_last) {
  const int kDirFlags = (how == DirOpen::kList ? O_RDONLY : O_PATH) | O_DIRECTORY | O_CLOEXEC;
  if (path.size() < kShortPathBytes) {
    int fd = ::open(path.empty() ? "." : path.c_str(), kDirFlags | (follow_last ? 0 : O_NOFOLLOW));
    if (fd < 0) return Error::from_errno(errno, "open directory " + path);
    return UniqueFd(fd);
  }
  // Long path: open a prefix that fits, then descend in slices.
  size_t pos = 0;
  UniqueFd cur;
  int base = AT_FDCWD;
  if (path[0] == '/') {
    cur.reset(::open("/", kDirFlags));
    if (!cur.valid()) return Error::from_errno(errno, "open directory /");
    base = cur.get();
    pos = 1;
  }
  while (pos < path.size()) {
    size_t end =
        pos + kShortPathBytes < path.size() ? path.rfind('/', pos + kShortPathBytes) : path.size();
    if (end == std::string::npos || end <= pos) {
      return Error::from_errno(ENAMETOOLONG, "open directory " + path.substr(0, 64) + "...");
    }
    std::string slice = path.substr(pos, end - pos);
    int fd = ::openat(base, slice.c_str(), kDirFlags | O_NOFOLLOW);
    if (fd < 0) return Error::from_errno(errno, "open directory " + path.substr(0, 64) + "...");
    cur.reset(fd);
    base = cur.get();
    pos = end + 1;
  }
  if (!cur.valid()) cur.reset(::open(".", kDirFlags));
  return cur;
}

std::string_view parent_of(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) return {};
  if (slash == 0) return path.substr(0, 1);
  return path.substr(0, slash);
}

std::string_view base_name(std::string_view path) {
  while (path.size() > 1 && path.back() == '/') path.remove_suffix(1);
  size_t slash = path.rfind('/');
  return slash == std::string_view::npos ? path : path.substr(slash + 1);
}

std::string join_path(std::string_view a, std::string_view b) {
  if (a.empty()) return std::string(b);
  if (b.empty()) return std::string(a);
  // "SRC/." (a root that merges into DST) + "x" is "SRC/x": the same file, and the name a
  // user expects in a message, not "SRC/./x".
  while (a.size() > 2 && a.substr(a.size() - 2) == "/.") a.remove_suffix(2);
  std::string out(a);
  if (out.back() != '/') out += '/';
  out += b;
  return out;
}

}  // namespace barge::io
