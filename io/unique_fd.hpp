// UniqueFd: move-only owner of one file descriptor. close() reports its error; the
// destructor closes silently (an error there has nowhere to go).
#pragma once

#include <unistd.h>

#include <utility>

#include "io/result.hpp"

namespace barge::io {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    if (this != &o) {
      reset();
      fd_ = std::exchange(o.fd_, -1);
    }
    return *this;
  }
  ~UniqueFd() { reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }
  // Closes and reports the kernel's verdict (close can surface deferred write errors).
  Status close() {
    if (fd_ < 0) return Status::success();
    int fd = std::exchange(fd_, -1);
    if (::close(fd) != 0) return Error::from_errno(errno, "close");
    return Status::success();
  }

 private:
  int fd_ = -1;
};

}  // namespace barge::io
