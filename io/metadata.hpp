// File metadata as barge reads it from a source and applies it to a destination.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <cstdint>
#include <string>
#include <vector>

#include "io/result.hpp"

namespace barge::io {

enum class FileType : uint8_t {
  kRegular,
  kDirectory,
  kSymlink,
  kFifo,
  kCharDevice,
  kBlockDevice,
  kSocket,
  kUnknown
};

const char* file_type_name(FileType t);
struct FileMeta;
// A regular file with holes: fewer blocks allocated than its size needs.
bool is_sparse(const FileMeta& m);

struct FileMeta {
  FileType type = FileType::kUnknown;
  uint32_t mode = 0;  // permission bits including setuid/setgid/sticky (st_mode & 07777)
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 0;
  uint64_t size_bytes = 0;
  uint64_t blocks_512 =
      0;  // allocated 512-byte blocks (st_blocks): fewer than the size means holes
  uint64_t inode = 0;
  uint64_t device = 0;
  uint64_t rdev = 0;
  timespec atime{};
  timespec mtime{};
  timespec ctime{};  // change detection (backup); never applied
};

// lstat-like: never follows a final symlink. dirfd may be AT_FDCWD.
Result<FileMeta> stat_entry(int dirfd, const char* path);
FileMeta meta_from_stat(const struct stat& st);

// Applies ownership (when apply_owner), mode and times to an open regular file or directory.
// Ownership first: chown clears setuid/setgid bits, which the later chmod restores.
// apply_mode=false skips the chmod for a file already created with its final mode.
Status apply_meta_fd(int fd, const FileMeta& meta, bool apply_owner,
                     const std::string& path_for_errors, bool apply_mode = true);
// Same through a path, never following a final symlink (symlinks get owner and times only).
Status apply_meta_path(int dirfd, const char* path, const FileMeta& meta, bool apply_owner);

// The link target of a symlink, verbatim (arbitrary bytes, any length up to PATH_MAX).
Result<std::string> read_link(int dirfd, const char* path);

// True when this process may give files away (root or CAP_CHOWN): then ownership is copied.
bool can_chown();

// Direct-I/O alignment of an open file (statx STATX_DIOALIGN), 0 when unsupported.
uint32_t dio_alignment(int fd);

// Sets the process umask for a scope and puts the old one back however the scope is left
// (the engine creates files with their final permission bits under umask 0). Not
// thread-safe: the umask is per process; one command's main thread owns it.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : old_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(old_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  mode_t old_;
};

}  // namespace barge::io
