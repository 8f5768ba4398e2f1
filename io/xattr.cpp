#include "io/xattr.hpp"

#include <sys/xattr.h>

#include <algorithm>
#include <cerrno>

namespace barge::io {
namespace {

bool unsupported(int err) { return err == ENOTSUP || err == EOPNOTSUPP; }

// List of names from a list*xattr call, NUL-separated.
std::vector<std::string> split_names(const std::string& buf) {
  std::vector<std::string> names;
  size_t pos = 0;
  while (pos < buf.size()) {
    size_t end = buf.find('\0', pos);
    if (end == std::string::npos) end = buf.size();
    if (end > pos) names.emplace_back(buf, pos, end - pos);
    pos = end + 1;
  }
  return names;
}

template <class List>
Result<std::vector<std::string>> list_names(List list, const std::string& what) {
  for (;;) {
    ssize_t n = list(nullptr, 0);
    if (n < 0) {
      if (unsupported(errno)) return std::vector<std::string>{};
      return Error::from_errno(errno, "list xattrs of " + what);
    }
    std::string buf(static_cast<size_t>(n), '\0');
    ssize_t m = list(buf.data(), buf.size());
    if (m < 0 && errno == ERANGE) continue;  // grew in between: ask again
    if (m < 0) return Error::from_errno(errno, "list xattrs of " + what);
    buf.resize(static_cast<size_t>(m));
    return split_names(buf);
  }
}

}  // namespace

Result<Xattrs> read_xattrs(const std::string& path) {
  auto names =
      list_names([&](char* b, size_t n) { return ::llistxattr(path.c_str(), b, n); }, path);
  if (!names) return names.error();
  Xattrs out;
  for (const std::string& name : *names) {
    for (;;) {
      ssize_t n = ::lgetxattr(path.c_str(), name.c_str(), nullptr, 0);
      if (n < 0) {
        if (errno == ENODATA) break;  // removed in between
        return Error::from_errno(errno, "read xattr " + name + " of " + path);
      }
      std::string value(static_cast<size_t>(n), '\0');
      ssize_t m = ::lgetxattr(path.c_str(), name.c_str(), value.data(), value.size());
      if (m < 0 && errno == ERANGE) continue;
      if (m < 0) return Error::from_errno(errno, "read xattr " + name + " of " + path);
      value.resize(static_cast<size_t>(m));
      out.emplace_back(name, std::move(value));
      break;
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

Status write_xattrs(const Xattrs& attrs, int dst_fd, const std::string& dst_path) {
  auto names =
      dst_fd >= 0
          ? list_names([&](char* b, size_t n) { return ::flistxattr(dst_fd, b, n); }, dst_path)
          : list_names([&](char* b, size_t n) { return ::llistxattr(dst_path.c_str(), b, n); },
                       dst_path);
  if (!names) return names.error();
  for (const std::string& name : *names) {
    bool keep =
        std::any_of(attrs.begin(), attrs.end(), [&](const auto& a) { return a.first == name; });
    if (keep) continue;
    int rc = dst_fd >= 0 ? ::fremovexattr(dst_fd, name.c_str())
                         : ::lremovexattr(dst_path.c_str(), name.c_str());
    if (rc != 0 && errno != ENODATA)
      return Error::from_errno(errno, "remove xattr " + name + " of " + dst_path);
  }
  for (const auto& [name, value] : attrs) {
    int rc = dst_fd >= 0
                 ? ::fsetxattr(dst_fd, name.c_str(), value.data(), value.size(), 0)
                 : ::lsetxattr(dst_path.c_str(), name.c_str(), value.data(), value.size(), 0);
    if (rc != 0) return Error::from_errno(errno, "set xattr " + name + " on " + dst_path);
  }
  return Status::success();
}

Status copy_xattrs(const std::string& src_path, int dst_fd, const std::string& dst_path) {
  auto attrs = read_xattrs(src_path);
  if (!attrs) return attrs.error();
  return write_xattrs(*attrs, dst_fd, dst_path);
}

}  // namespace barge::io
