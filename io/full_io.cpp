#include "io/full_io.hpp"

#include <unistd.h>

#include <cerrno>

namespace barge::io {

Status write_full(int fd, const void* data, size_t n, int64_t offset, const std::string& what) {
  const char* p = static_cast<const char*>(data);
  size_t done = 0;
  while (done < n) {
    ssize_t w = offset == kAtPosition
                    ? ::write(fd, p + done, n - done)
                    : ::pwrite(fd, p + done, n - done, static_cast<off_t>(offset + done));
    if (w < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno(errno, what);
    }
    if (w == 0) return Error::plain(what + ": no progress");
    done += static_cast<size_t>(w);
  }
  return Status::success();
}

Result<size_t> read_full(int fd, void* data, size_t n, uint64_t offset, const std::string& what) {
  char* p = static_cast<char*>(data);
  size_t done = 0;
  while (done < n) {
    ssize_t r = ::pread(fd, p + done, n - done, static_cast<off_t>(offset + done));
    if (r < 0) {
      if (errno == EINTR) continue;
      return Error::from_errno(errno, what);
    }
    if (r == 0) break;
    done += static_cast<size_t>(r);
  }
  return done;
}

}  // namespace barge::io
