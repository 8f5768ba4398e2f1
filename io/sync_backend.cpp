// pread/pwrite fallback backend: the same contract as the ring, one syscall at a time.
#include <unistd.h>

#include <cerrno>

#include "io/io_backend.hpp"

namespace barge::io {
namespace {

class SyncBackend final : public IoBackend {
 public:
  void run(std::span<IoOp> ops) override {
    for (IoOp& op : ops) run_one(op);
  }
  std::string_view name() const override { return "pread/pwrite"; }

 private:
  static void run_one(IoOp& op) {
    op.done_bytes = 0;
    op.error = 0;
    while (op.done_bytes < op.length_bytes) {
      std::byte* p = op.buf + op.done_bytes;
      size_t left = op.length_bytes - op.done_bytes;
      off_t off = static_cast<off_t>(op.offset_bytes + op.done_bytes);
      ssize_t n =
          op.kind == IoKind::kRead ? ::pread(op.fd, p, left, off) : ::pwrite(op.fd, p, left, off);
      if (n < 0) {
        if (errno == EINTR || errno == EAGAIN) continue;
        op.error = errno;
        return;
      }
      if (n == 0) {
        if (op.kind == IoKind::kRead) return;  // end of file
        op.error = EIO;                        // a zero-byte write makes no progress
        return;
      }
      op.done_bytes += static_cast<uint64_t>(n);
    }
  }
};

}  // namespace

std::unique_ptr<IoBackend> make_sync_backend() { return std::make_unique<SyncBackend>(); }

}  // namespace barge::io
