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
  std::sort(out.children.begin(), out.children.end(),
            [](const DirChild& a, const DirChild& b) { return a.name < b.name; });
  return out;
}

}  // namespace barge::io
