#include "io/dir_reader.hpp"

#include "io/path_ops.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace barge::io {

Result<DirListing> read_directory(const std::string& path) {
  auto opened = open_dir_path(path, DirOpen::kList, path.size() > 1 && path.back() == '/');
  if (!opened) return opened.error();
  int fd = opened->release();
  DIR* dir = ::fdopendir(fd);
  if (!dir) {
    int err = errno;
    ::close(fd);
    return Error::from_errno(err, "open directory " + path);
  }
  DirListing out;
  for (;;) {
    errno = 0;
    dirent* de = ::readdir(dir);
    if (!de) {
      if (errno != 0) out.errors.push_back(Error::from_errno(errno, "read directory " + path));
      break;
    }
    const char* name = de->d_name;
    if (name[0] == '.' && (name[1] == '\0' || (name[1] == '.' && name[2] == '\0'))) continue;
    struct stat st;
    if (::fstatat(fd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      // A child that vanished between readdir and stat is simply gone: not an error.
      if (errno != ENOENT)
        out.errors.push_back(Error::from_errno(errno, "stat " + path + "/" + name));
      continue;
    }
    DirChild child{name, meta_from_stat(st), {}};
    if (child.meta.type == FileType::kSymlink) {
      auto target = read_link(fd, name);
      if (!target) {
        if (target.error().errnum != ENOENT) {
          out.errors.push_back(
              Error::from_errno(target.error().errnum, "readlink " + path + "/" + name));
        }
        continue;
      }
      child.link_target = std::move(target.value());
    }
    out.children.push_back(std::move(child));
  }
  ::closedir(dir);
  // Sort a permutation, then move each child once: a DirChild is large, and sorting the
  // children themselves moves each about log2(n) times (thousands of entries per directory).
  std::vector<uint32_t> order(out.children.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return out.children[a].name < out.children[b].name; });
  std::vector<DirChild> sorted;
  sorted.reserve(order.size());
  for (uint32_t i : order) sorted.push_back(std::move(out.children[i]));
  out.children = std::move(sorted);
  return out;
}

}  // namespace barge::io
