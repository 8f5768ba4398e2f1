// UringQueue: an io_uring ring kept at a constant depth, for instruments that time every
// operation (barge bench disk). The caller owns `depth` slots; start() submits an operation in
// a free slot at once, wait() waits for completions (or a deadline) and returns the slots
// whose operation is finished. Short transfers and -EAGAIN/-EINTR are
// requeued inside, so a finished slot is either done in full or failed with an errno
// (a read that meets end of file ends done with fewer bytes).
//
// Not thread-safe: one ring per thread. Move-only through unique_ptr; the ring (and its
// registered buffers) is released by the destructor.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "io/io_backend.hpp"

namespace barge::io {

class BufferPool;

struct UringQueueOptions {
  unsigned queue_depth = 32;
  bool sqpoll = false;                        // a kernel thread polls the submission queue
  const BufferPool* register_pool = nullptr;  // READ/WRITE_FIXED on the pool's buffers
};

class UringQueue {
 public:
  // Throws std::runtime_error naming the reason when io_uring (or SQPOLL) is unavailable.
  explicit UringQueue(const UringQueueOptions& opts);
  ~UringQueue();
  UringQueue(const UringQueue&) = delete;
  UringQueue& operator=(const UringQueue&) = delete;

  unsigned depth() const { return static_cast<unsigned>(slots_.size()); }
  bool buffers_registered() const { return registered_; }
  bool sqpoll() const { return sqpoll_; }

  // Starts `op` in `slot` (< depth, not in flight): submitted at once.
  void start(unsigned slot, const IoOp& op);
  const IoOp& op(unsigned slot) const { return slots_[slot]; }
  unsigned in_flight() const { return in_flight_; }

  // Submits, then waits until at least one operation finishes or `deadline` passes. Returns
  // the finished slots (valid until the next call); empty on a timeout.
  std::span<const unsigned> wait(std::chrono::steady_clock::time_point deadline);

 private:
  void prep(unsigned slot);
  void reap();

  struct Ring;
  std::unique_ptr<Ring> ring_;
  std::vector<IoOp> slots_;
  std::vector<unsigned> finished_;
  unsigned in_flight_ = 0;
  unsigned unsubmitted_ = 0;
  bool registered_ = false;
  bool sqpoll_ = false;
};

}  // namespace barge::io
