// Internal to io/: fills one io_uring submission entry for the rest of an IoOp (what is not
// done yet), fixed-buffer when the ring has the op's buffer registered. Shared by the batch
// backend and the constant-depth queue.
#pragma once

#include <liburing.h>

#include <cerrno>

#include "io/io_backend.hpp"

namespace barge::io::detail {

inline void prep_rest(io_uring_sqe* sqe, const IoOp& op, bool registered, uint64_t tag) {
  std::byte* p = op.buf + op.done_bytes;
  auto left = static_cast<unsigned>(op.length_bytes - op.done_bytes);
  uint64_t off = op.offset_bytes + op.done_bytes;
  bool fixed = registered && op.buf_index >= 0;
  if (op.kind == IoKind::kRead) {
    if (fixed) {
      io_uring_prep_read_fixed(sqe, op.fd, p, left, off, op.buf_index);
    } else {
      io_uring_prep_read(sqe, op.fd, p, left, off);
    }
  } else if (fixed) {
    io_uring_prep_write_fixed(sqe, op.fd, p, left, off, op.buf_index);
  } else {
    io_uring_prep_write(sqe, op.fd, p, left, off);
  }
  io_uring_sqe_set_data64(sqe, tag);
}

// Applies a completion's result to the op; true when the rest must be submitted again
// (a short transfer, -EAGAIN, -EINTR). A read returning 0 is end of file: done with what it
// has; a write returning 0 made no progress and fails with EIO rather than spin.
inline bool account_completion(IoOp& op, int res) {
  if (res == -EAGAIN || res == -EINTR) return true;
  if (res < 0) {
    op.error = -res;
    return false;
  }
  if (res == 0) {
    if (op.kind == IoKind::kWrite) op.error = EIO;
    return false;
  }
  op.done_bytes += static_cast<uint64_t>(res);
  return op.done_bytes < op.length_bytes;
}

}  // namespace barge::io::detail
