// send's network stages: the data streams (a unit goes out whole on a free one), --bwlimit
// pacing, and net-send, which frames a unit's table and bytes.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "pipeline/engine/work_unit.hpp"
#include "transport/net/frame_stream.hpp"

namespace barge::pipeline::remote {

using Clock = std::chrono::steady_clock;
using transport::FrameStream;
using transport::FrameType;

// The data streams of the sender: a unit goes out whole on whichever stream is free.
class StreamSet {
 public:
  void add(std::unique_ptr<FrameStream> s) {
    slots_.push_back(std::make_unique<Slot>(std::move(s)));
  }
  template <class F>
  void with_one(F&& f) {
    const size_t n = slots_.size();
    const size_t start = next_.fetch_add(1, std::memory_order_relaxed);
    for (size_t k = 0; k < n; ++k) {
      Slot& s = *slots_[(start + k) % n];
      std::unique_lock lock(s.mu, std::try_to_lock);
      if (lock.owns_lock()) return f(*s.stream);
    }
    Slot& s = *slots_[start % n];
    std::lock_guard lock(s.mu);
    f(*s.stream);
  }
  void finish() {
    for (auto& s : slots_) {
      std::lock_guard lock(s->mu);
      s->stream->send(FrameType::kDone, std::string_view());
      s->stream->close();
    }
  }
  void abort() {
    for (auto& s : slots_) s->stream->abort();
  }
  // Bytes the receiver's TCP acknowledged, over every stream (TCP_INFO): what the link
  // delivered, less what waits in the socket buffers.
  uint64_t bytes_acked() const;
  // How full the streams' send buffers are, 0..1 (SIOCOUTQ against SO_SNDBUF, whose half the
  // kernel keeps for its own accounting): data waiting there waits for the link.
  double send_buffer_fill() const;
  // A send failed on a broken connection (not after abort): the link was lost.
  void mark_lost() { lost_ = true; }
  bool lost() const { return lost_.load(); }

 private:
  struct Slot {
    explicit Slot(std::unique_ptr<FrameStream> s) : stream(std::move(s)) {}
    std::mutex mu;
    std::unique_ptr<FrameStream> stream;
  };
  std::vector<std::unique_ptr<Slot>> slots_;
  std::atomic<size_t> next_{0};
  std::atomic<bool> lost_{false};
};

// --bwlimit: units leave no faster than `rate` bytes per second over all streams together
// (each waits for its turn; a unit is the grain).
class RateLimit {
 public:
  explicit RateLimit(uint64_t bytes_per_second) : rate_(bytes_per_second) {}
  void take(uint64_t bytes) {
    if (rate_ == 0) return;
    Clock::time_point start;
    {
      std::lock_guard lock(mu_);
      start = std::max(Clock::now(), next_);
      next_ = start + std::chrono::nanoseconds(bytes * 1000000000ull / rate_);
    }
    std::this_thread::sleep_until(start);
  }

 private:
  const uint64_t rate_;
  std::mutex mu_;
  Clock::time_point next_{};
};

// net-send: the unit's table, then each item's bytes as they are (stored form, raw, or a
// sparse extent's data ranges), as one frame on a free stream.
class NetSendStage {
 public:
  NetSendStage(StreamSet& streams, RateLimit& limit) : streams_(streams), limit_(limit) {}
  void operator()(WorkUnit& u) const;

 private:
  StreamSet& streams_;
  RateLimit& limit_;
};

}  // namespace barge::pipeline::remote
