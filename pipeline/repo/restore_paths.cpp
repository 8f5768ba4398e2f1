#include "pipeline/repo/restore_paths.hpp"

#include <linux/openat2.h>
#include <sys/syscall.h>

#include <algorithm>

namespace barge::pipeline::restore {

std::string parent_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}
std::string name_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

int open_beneath(int root_fd, const std::string& rel) {
  if (rel.empty()) return ::fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
  open_how how{};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, root_fd, rel.c_str(), &how, sizeof how));
}

std::vector<std::pair<size_t, size_t>> write_ranges(std::span<const std::byte> raw, bool sparse) {
  if (!sparse) return {{0, raw.size()}};
  constexpr size_t kBlock = 4096;
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t b = 0; b < raw.size(); b += kBlock) {
    size_t e = std::min(raw.size(), b + kBlock);
    bool zero = std::all_of(raw.begin() + static_cast<long>(b), raw.begin() + static_cast<long>(e),
                            [](std::byte x) { return x == std::byte{0}; });
    if (zero) continue;
    if (!out.empty() && out.back().second == b)
      out.back().second = e;
    else
      out.emplace_back(b, e);
  }
  return out;
}

Destination destination_of(const std::string& given) {
  Destination d{given, false};
  while (d.path.size() > 1 && d.path.back() == '/') {
    d.path.pop_back();
    d.follow = true;
  }
  return d;
}

std::vector<std::string> wanted_paths(const std::vector<std::string>& given) {
  std::vector<std::string> wanted;
  for (std::string p : given) {
    while (!p.empty() && p.back() == '/') p.pop_back();
    while (!p.empty() && p.front() == '/') p.erase(0, 1);
    wanted.push_back(p);
  }
  return wanted;
}

bool selected_by(const std::string& path, const std::vector<std::string>& wanted) {
  if (wanted.empty()) return true;
  for (const std::string& w : wanted) {
    if (path == w) return true;
    if (path.size() > w.size() && path.compare(0, w.size(), w) == 0 && path[w.size()] == '/')
      return true;  // below w
    if (w.size() > path.size() &&
        (path.empty() || (w.compare(0, path.size(), path) == 0 && w[path.size()] == '/')))
      return true;  // an ancestor directory of w
  }
  return false;
}

}  // namespace barge::pipeline::restore
