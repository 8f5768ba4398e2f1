// IoBackend: batched positional reads and writes. run() takes a batch of operations and
// returns when every one is done or failed: short transfers, -EAGAIN and -EINTR are requeued
// inside the backend, so callers never see them.
//
// Two implementations share the interface: io_uring (the default) and a pread/pwrite
// fallback used when io_uring is unavailable or when forced (tests, --io-backend sync).
// A backend is not thread-safe: each I/O thread owns one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string_view>

namespace barge::io {

class BufferPool;

enum class IoKind : uint8_t { kRead, kWrite };

struct IoOp {
  IoKind kind = IoKind::kRead;
  int fd = -1;
  std::byte* buf = nullptr;
  uint64_t length_bytes = 0;
  uint64_t offset_bytes = 0;
  int buf_index = -1;  // registered-buffer index (BufferPool index), -1 when unregistered
  // Results. A read that meets end of file ends done with done_bytes < length_bytes.
  uint64_t done_bytes = 0;
  int error = 0;  // errno of the failure, 0 when done
};

enum class BackendKind { kAuto, kUring, kSync };

std::optional<BackendKind> parse_backend_kind(std::string_view name);  // auto|uring|sync

struct BackendOptions {
  BackendKind kind = BackendKind::kAuto;
  unsigned queue_depth = 64;
  // When set, the pool's buffers are registered with the ring (READ/WRITE_FIXED). If the
  // kernel refuses (memlock), the backend runs unregistered and says so once.
  const BufferPool* register_pool = nullptr;
};

class IoBackend {
 public:
  virtual ~IoBackend() = default;
  virtual void run(std::span<IoOp> ops) = 0;
  virtual std::string_view name() const = 0;
  virtual bool buffers_registered() const { return false; }
};

// kAuto tries io_uring and falls back to pread/pwrite (logged once). kUring throws
// std::runtime_error when io_uring is unavailable. The environment variable
// BARGE_IO_BACKEND=sync|uring overrides kAuto.
std::unique_ptr<IoBackend> make_backend(const BackendOptions& opts);

std::unique_ptr<IoBackend> make_sync_backend();
// nullptr when the kernel has no usable io_uring; errno_out receives the reason.
std::unique_ptr<IoBackend> make_uring_backend(const BackendOptions& opts, int* errno_out);

}  // namespace barge::io
