// The pieces of barge bench disk below the rank level: the order of blocks, the per-rank
// interval collector, and one worker (a thread with its own ring at the queue depth).
// Internal to pipeline/bench.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "io/buffer_pool.hpp"
#include "io/uring_queue.hpp"
#include "pipeline/bench/disk.hpp"

namespace barge::pipeline::bench::detail {

using Clock = std::chrono::steady_clock;

// A pseudo-random permutation of [0, n): every block once per pass, in a random order
// (fio's random map), without a table. A 4-round Feistel network on the next even bit width,
// cycle-walking past values >= n.
class BlockPermutation {
 public:
  BlockPermutation(uint64_t n, uint64_t seed);
  uint64_t at(uint64_t i) const;  // i < n

 private:
  uint64_t n_;
  unsigned half_bits_;
  uint64_t keys_[4];
};

// Per rank: what the workers finished of each interval, merged, until the rank's main
// thread takes it. Thread-safe.
class IntervalCollector {
 public:
  void add(uint64_t index, const Figures& f);  // late parts of a taken interval go to the next
  Figures take(uint64_t index);
  bool has_after(uint64_t index);  // parts of later intervals are waiting

 private:
  std::mutex mu_;
  std::map<uint64_t, Figures> open_;
  uint64_t next_ = 0;
};

// What every worker of a rank shares. `measure_start` is the start plus the ramp: the
// timeline, the runtime and the stonewall count from there.
struct RunShared {
  const DiskBenchOptions* opts = nullptr;
  Clock::time_point measure_start;
  Clock::duration interval{};
  std::atomic<bool> stop{false};  // steady state reached, or a fatal error on this rank
  IntervalCollector intervals;
  std::mutex fatal_mu;
  std::string fatal;  // the first error that ends the run (a full file system)
};

// When a phase stops issuing.
struct PhaseLimit {
  Clock::time_point deadline = Clock::time_point::max();
  uint64_t counted_ops = UINT64_MAX;  // wear-out: stop once this many are counted
  bool once = false;                  // size-based: stop after one pass over the region
};

class DiskWorker {
 public:
  DiskWorker(RunShared& shared, int fd, uint64_t base_bytes, uint64_t length_bytes,
             unsigned queue_depth, uint64_t seed);

  // Issues until the limit, then drains what is in flight. Not thread-safe; one thread.
  void run_phase(const PhaseLimit& limit);

  const Figures& counted() const { return counted_; }  // seconds: last completion - start
  const std::map<std::string, uint64_t>& errors() const { return errors_; }
  uint64_t counted_ops() const { return counted_.ops; }
  bool buffers_registered() const { return registered_; }
  bool pass_done() const { return issued_ >= blocks_; }

 private:
  void next_op(io::IoOp& op, unsigned slot);
  void complete(unsigned slot, Clock::time_point now);
  void flush_interval();
  void stamp(std::byte* buf, uint64_t offset);
  void fail(const io::IoOp& op);

  RunShared& shared_;
  const DiskBenchOptions& o_;
  int fd_;
  uint64_t base_, blocks_;
  io::BufferPool pool_;
  std::vector<io::Buffer> buffers_;
  // Made on the thread that runs the phase: the ring has a single issuer (io/uring_queue.hpp),
  // and a wear-out phase runs on a new thread.
  std::unique_ptr<io::UringQueue> queue_;
  std::thread::id queue_owner_;
  unsigned depth_;
  bool registered_ = false;
  BlockPermutation order_;
  uint64_t rng_;
  uint64_t issued_ = 0;  // blocks issued so far, across passes
  uint64_t stamp_seq_ = 0;
  std::vector<Clock::time_point> issued_at_;
  Figures counted_;
  Figures current_;  // the open interval
  uint64_t current_index_ = 0;
  std::map<std::string, uint64_t> errors_;
};

}  // namespace barge::pipeline::bench::detail
