// io_uring backend: fills the submission queue up to queue_depth, submits in one call,
// reaps completions in batches and requeues short transfers and -EAGAIN/-EINTR.
#include <liburing.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/buffer_pool.hpp"
#include "io/io_backend.hpp"
#include "io/log.hpp"
#include "io/uring_prep.hpp"

namespace barge::io {
namespace {

class UringBackend final : public IoBackend {
 public:
  UringBackend() = default;
  UringBackend(const UringBackend&) = delete;
  UringBackend& operator=(const UringBackend&) = delete;
  ~UringBackend() override {
    if (initialised_) io_uring_queue_exit(&ring_);
  }

  int init(const BackendOptions& opts) {
    depth_ = opts.queue_depth ? opts.queue_depth : 64;
    int rc = io_uring_queue_init(depth_, &ring_, 0);
    if (rc < 0) return -rc;
    initialised_ = true;
    if (opts.register_pool) register_buffers(*opts.register_pool);
    return 0;
  }

  std::string_view name() const override { return "io_uring"; }
  bool buffers_registered() const override { return registered_; }

  void run(std::span<IoOp> ops) override {
    queue_.clear();
    for (size_t i = 0; i < ops.size(); ++i) {
      ops[i].done_bytes = 0;
      ops[i].error = 0;
      if (ops[i].length_bytes > 0) queue_.push_back(i);
    }
    size_t head = 0;
    unsigned inflight = 0;
    while (head < queue_.size() || inflight > 0) {
      while (head < queue_.size() && inflight < depth_) {
        io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
        if (!sqe) break;
        prep(sqe, ops[queue_[head]], queue_[head]);
        ++head;
        ++inflight;
      }
      int rc = io_uring_submit_and_wait(&ring_, 1);
      if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
        throw std::runtime_error(std::string("io_uring_submit: ") + std::strerror(-rc));
      }
      io_uring_cqe* cqe;
      unsigned head_idx;
      unsigned seen = 0;
      io_uring_for_each_cqe(&ring_, head_idx, cqe) {
        ++seen;
        --inflight;
        size_t i = static_cast<size_t>(io_uring_cqe_get_data64(cqe));
        if (detail::account_completion(ops[i], cqe->res)) queue_.push_back(i);
      }
      io_uring_cq_advance(&ring_, seen);
    }
  }

 private:
  void prep(io_uring_sqe* sqe, const IoOp& op, size_t index) {
    detail::prep_rest(sqe, op, registered_, index);
  }

  void register_buffers(const BufferPool& pool) {
    std::vector<iovec> iov(pool.buffer_count());
    for (size_t i = 0; i < iov.size(); ++i) {
      iov[i].iov_base = pool.arena() + i * pool.buffer_bytes();
      iov[i].iov_len = pool.buffer_bytes();
    }
    int rc = io_uring_register_buffers(&ring_, iov.data(), static_cast<unsigned>(iov.size()));
    if (rc == 0) {
      registered_ = true;
      return;
    }
    log_once(LogLevel::kInfo, "uring-register",
             std::string("io_uring buffer registration refused (") + std::strerror(-rc) +
                 "); using unregistered buffers");
  }

  io_uring ring_{};
  bool initialised_ = false;
  bool registered_ = false;
  unsigned depth_ = 64;
  std::vector<size_t> queue_;
};

}  // namespace

std::optional<BackendKind> parse_backend_kind(std::string_view name) {
  if (name == "auto") return BackendKind::kAuto;
  if (name == "uring" || name == "io_uring") return BackendKind::kUring;
  if (name == "sync" || name == "pread") return BackendKind::kSync;
  return std::nullopt;
}

std::unique_ptr<IoBackend> make_uring_backend(const BackendOptions& opts, int* errno_out) {
  auto backend = std::make_unique<UringBackend>();
  int err = backend->init(opts);
  if (err != 0) {
    if (errno_out) *errno_out = err;
    return nullptr;
  }
  return backend;
}

std::unique_ptr<IoBackend> make_backend(const BackendOptions& opts) {
  BackendKind kind = opts.kind;
  if (kind == BackendKind::kAuto) {
    if (const char* env = std::getenv("BARGE_IO_BACKEND")) {
      if (auto k = parse_backend_kind(env)) kind = *k;
    }
  }
  if (kind == BackendKind::kSync) return make_sync_backend();
  int err = 0;
  if (auto uring = make_uring_backend(opts, &err)) return uring;
  if (kind == BackendKind::kUring) {
    throw std::runtime_error(std::string("io_uring unavailable: ") + std::strerror(err));
  }
  log_once(LogLevel::kInfo, "uring-fallback",
           std::string("io_uring unavailable (") + std::strerror(err) +
               "); using the pread/pwrite backend");
  return make_sync_backend();
}

}  // namespace barge::io
