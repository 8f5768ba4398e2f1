#include "io/metadata.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <vector>

#ifndef STATX_DIOALIGN
#define STATX_DIOALIGN 0x00002000U
#endif

namespace barge::io {

const char* file_type_name(FileType t) {
  switch (t) {
    case FileType::kRegular:
      return "file";
    case FileType::kDirectory:
      return "directory";
    case FileType::kSymlink:
      return "symlink";
    case FileType::kFifo:
      return "fifo";
    case FileType::kCharDevice:
      return "char device";
    case FileType::kBlockDevice:
      return "block device";
    case FileType::kSocket:
      return "socket";
    case FileType::kUnknown:
      break;
  }
  return "unknown";
}

bool is_sparse(const FileMeta& m) {
  return m.type == FileType::kRegular && m.blocks_512 * 512 < m.size_bytes;
}

FileMeta meta_from_stat(const struct stat& st) {
  FileMeta m;
  switch (st.st_mode & S_IFMT) {
    case S_IFREG:
      m.type = FileType::kRegular;
      break;
    case S_IFDIR:
      m.type = FileType::kDirectory;
      break;
    case S_IFLNK:
      m.type = FileType::kSymlink;
      break;
    case S_IFIFO:
      m.type = FileType::kFifo;
      break;
    case S_IFCHR:
      m.type = FileType::kCharDevice;
      break;
    case S_IFBLK:
      m.type = FileType::kBlockDevice;
      break;
    case S_IFSOCK:
      m.type = FileType::kSocket;
      break;
    default:
      m.type = FileType::kUnknown;
      break;
  }
  m.mode = st.st_mode & 07777;
  m.uid = st.st_uid;
  m.gid = st.st_gid;
  m.nlink = static_cast<uint32_t>(st.st_nlink);
  m.size_bytes = static_cast<uint64_t>(st.st_size);
  m.blocks_512 = static_cast<uint64_t>(st.st_blocks);
  m.inode = st.st_ino;
  m.device = st.st_dev;
  m.rdev = st.st_rdev;
  m.atime = st.st_atim;
  m.mtime = st.st_mtim;
  m.ctime = st.st_ctim;
  return m;
}

Result<FileMeta> stat_entry(int dirfd, const char* path) {
  struct stat st;
  if (::fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) != 0) {
    return Error::from_errno(errno, std::string("stat ") + path);
  }
  return meta_from_stat(st);
}

Status apply_meta_fd(int fd, const FileMeta& meta, bool apply_owner, const std::string& path,
                     bool apply_mode) {
  if (apply_owner && ::fchown(fd, meta.uid, meta.gid) != 0) {
    return Error::from_errno(errno, "chown " + path);
  }
  if ((apply_mode || (apply_owner && (meta.mode & 06000))) && ::fchmod(fd, meta.mode) != 0) {
    return Error::from_errno(errno, "chmod " + path);
  }
  timespec times[2] = {meta.atime, meta.mtime};
  if (::futimens(fd, times) != 0) return Error::from_errno(errno, "set times of " + path);
  return Status::success();
}

Status apply_meta_path(int dirfd, const char* path, const FileMeta& meta, bool apply_owner) {
  if (apply_owner && ::fchownat(dirfd, path, meta.uid, meta.gid, AT_SYMLINK_NOFOLLOW) != 0) {
    return Error::from_errno(errno, std::string("chown ") + path);
  }
  if (meta.type != FileType::kSymlink && ::fchmodat(dirfd, path, meta.mode, 0) != 0) {
    return Error::from_errno(errno, std::string("chmod ") + path);
  }
  timespec times[2] = {meta.atime, meta.mtime};
  if (::utimensat(dirfd, path, times, AT_SYMLINK_NOFOLLOW) != 0) {
    return Error::from_errno(errno, std::string("set times of ") + path);
  }
  return Status::success();
}

Result<std::string> read_link(int dirfd, const char* path) {
  std::string target(256, '\0');
  for (;;) {
    ssize_t n = ::readlinkat(dirfd, path, target.data(), target.size());
    if (n < 0) return Error::from_errno(errno, std::string("readlink ") + path);
    if (static_cast<size_t>(n) < target.size()) {
      target.resize(static_cast<size_t>(n));
      return target;
    }
    if (target.size() > PATH_MAX * 2)
      return Error::plain(std::string("readlink ") + path + ": target too long");
    target.resize(target.size() * 2);
  }
}

bool can_chown() { return ::geteuid() == 0; }

uint32_t dio_alignment(int fd) {
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) != 0) return 0;
  if (!(stx.stx_mask & STATX_DIOALIGN)) return 0;
  return stx.stx_dio_offset_align > stx.stx_dio_mem_align ? stx.stx_dio_offset_align
                                                          : stx.stx_dio_mem_align;
}

}  // namespace barge::io
