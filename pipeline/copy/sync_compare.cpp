#include "pipeline/copy/sync_compare.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include <vector>

#include "pipeline/core/manifest.hpp"

namespace barge::pipeline {

io::Status remove_tree(int dirfd, const std::string& name, const std::string& path) {
  if (::unlinkat(dirfd, name.c_str(), 0) == 0) return io::Status::success();
  if (errno != EISDIR && errno != EPERM) return io::Error::from_errno(errno, "delete " + path);
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return io::Error::from_errno(errno, "delete " + path);
  DIR* dir = ::fdopendir(fd);
  if (!dir) {
    ::close(fd);
    return io::Error::from_errno(errno, "delete " + path);
  }
  std::vector<std::string> names;
  while (dirent* de = ::readdir(dir)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") names.push_back(std::move(n));
  }
  io::Status result;
  for (const std::string& n : names) {
    auto st = remove_tree(::dirfd(dir), n, path + "/" + n);
    if (!st && result) result = st;
  }
  ::closedir(dir);
  if (!result) return result;
  if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0)
    return io::Error::from_errno(errno, "delete " + path);
  return io::Status::success();
}

std::string attr_diff(const io::FileMeta& src, const io::FileMeta& dst, bool owner,
                      bool content_differs) {
  std::string a = ".........";
  if (content_differs) a[0] = 'c';
  if (src.type == io::FileType::kRegular && src.size_bytes != dst.size_bytes) a[1] = 's';
  if (!same_time(src.mtime, dst.mtime)) a[2] = 't';
  if (src.type != io::FileType::kSymlink && src.mode != dst.mode) a[3] = 'p';
  if (owner && src.uid != dst.uid) a[4] = 'o';
  if (owner && src.gid != dst.gid) a[5] = 'g';
  return a;
}

bool content_differs(const Entry& e, const io::DirChild& dst, const Hash128* src_sum,
                     const std::string& dst_path) {
  switch (e.meta.type) {
    case io::FileType::kRegular: {
      if (e.meta.size_bytes != dst.meta.size_bytes) return true;
      if (!src_sum) return !same_time(e.meta.mtime, dst.meta.mtime);
      auto sum = hash_file(AT_FDCWD, dst_path);
      return !sum || !(sum.value() == *src_sum);
    }
    case io::FileType::kSymlink:
      return e.link_target != dst.link_target;
    case io::FileType::kDirectory:
      return false;
    default:
      return e.meta.rdev != dst.meta.rdev;
  }
}

}  // namespace barge::pipeline
