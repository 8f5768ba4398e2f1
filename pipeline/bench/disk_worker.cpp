// One worker of barge bench disk: keeps its ring at the queue depth, times every operation
// from issue to completion, and files the figures in the run's timeline.
#include "pipeline/bench/disk_worker.hpp"

#include "pipeline/bench/error_kind.hpp"

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace barge::pipeline::bench::detail {
namespace {

uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace

BlockPermutation::BlockPermutation(uint64_t n, uint64_t seed) : n_(n ? n : 1) {
  unsigned bits = 1;
  while (bits < 64 && (uint64_t{1} << bits) < n_) ++bits;
  half_bits_ = (bits + 1) / 2;
  for (auto& k : keys_) k = splitmix(seed);
}

uint64_t BlockPermutation::at(uint64_t i) const {
  const uint64_t mask = (uint64_t{1} << half_bits_) - 1;
  uint64_t x = i;
  do {  // cycle-walk: the network is a bijection on [0, 4^half), so this ends in [0, n)
    uint64_t left = x >> half_bits_, right = x & mask;
    for (uint64_t key : keys_) {
      uint64_t s = right ^ key;
      uint64_t f = splitmix(s) & mask;
      uint64_t next = left ^ f;
      left = right;
      right = next;
    }
    x = (left << half_bits_) | right;
  } while (x >= n_);
  return x;
}

void IntervalCollector::add(uint64_t index, const Figures& f) {
  std::lock_guard lock(mu_);
  Figures& slot = open_[std::max(index, next_)];
  slot.bytes += f.bytes;
  slot.ops += f.ops;
  slot.latency.merge(f.latency);
}

bool IntervalCollector::has_after(uint64_t index) {
  std::lock_guard lock(mu_);
  return !open_.empty() && open_.rbegin()->first > index;
}

Figures IntervalCollector::take(uint64_t index) {
  std::lock_guard lock(mu_);
  Figures out;
  for (auto it = open_.begin(); it != open_.end() && it->first <= index;) {
    out.bytes += it->second.bytes;
    out.ops += it->second.ops;
    out.latency.merge(it->second.latency);
    it = open_.erase(it);
  }
  next_ = index + 1;
  return out;
}

DiskWorker::DiskWorker(RunShared& shared, int fd, uint64_t base_bytes, uint64_t length_bytes,
                       unsigned queue_depth, uint64_t seed)
    : shared_(shared),
      o_(*shared.opts),
      fd_(fd),
      base_(base_bytes),
      blocks_(length_bytes / shared.opts->block_bytes),
      pool_(shared.opts->block_bytes, queue_depth),
      depth_(queue_depth),
      order_(blocks_, seed),
      rng_(seed ^ 0x5DEECE66Dull),
      issued_at_(queue_depth) {
  // Incompressible contents; every write also stamps its offset and a sequence number into
  // each 4 KiB, so no two blocks written are alike (nothing to deduplicate).
  for (unsigned i = 0; i < queue_depth; ++i) {
    buffers_.push_back(pool_.acquire());
    auto* words = reinterpret_cast<uint64_t*>(buffers_.back().data());
    for (size_t w = 0; w < pool_.buffer_bytes() / 8; ++w) words[w] = splitmix(rng_);
  }
}

void DiskWorker::stamp(std::byte* buf, uint64_t offset) {
  if (o_.block_bytes < 16) return;
  for (uint64_t at = 0; at + 16 <= o_.block_bytes; at += 4096) {
    uint64_t words[2] = {offset + at, ++stamp_seq_ ^ rng_};
    std::memcpy(buf + at, words, sizeof words);
  }
}

void DiskWorker::next_op(io::IoOp& op, unsigned slot) {
  uint64_t i = issued_ % blocks_;
  uint64_t block = is_random(o_.rw) ? order_.at(i) : i;
  bool read = o_.rw == RwMode::kRead || o_.rw == RwMode::kRandRead;
  if (o_.rw == RwMode::kReadWrite || o_.rw == RwMode::kRandRw)
    read = splitmix(rng_) % 100 < o_.mix_read_percent;
  op = io::IoOp{};
  op.kind = read ? io::IoKind::kRead : io::IoKind::kWrite;
  op.fd = fd_;
  op.buf = buffers_[slot].data();
  op.buf_index = buffers_[slot].index();
  op.length_bytes = o_.block_bytes;
  op.offset_bytes = base_ + block * o_.block_bytes;
  if (!read) stamp(op.buf, op.offset_bytes);
  ++issued_;
}

void DiskWorker::fail(const io::IoOp& op) {
  ++errors_[error_kind(op.error)];
  if (!is_fatal_error(op.error)) return;
  std::lock_guard lock(shared_.fatal_mu);
  if (shared_.fatal.empty()) {
    shared_.fatal = std::string(op.kind == io::IoKind::kRead ? "read" : "write") + " at offset " +
                    std::to_string(op.offset_bytes) + ": " + std::strerror(op.error);
  }
  shared_.stop = true;
}

void DiskWorker::flush_interval() {
  if (current_.ops == 0) return;
  shared_.intervals.add(current_index_, current_);
  current_ = Figures{};
}

void DiskWorker::complete(unsigned slot, Clock::time_point now) {
  const io::IoOp& op = queue_->op(slot);
  if (op.error) return fail(op);
  if (op.done_bytes < op.length_bytes) {
    ++errors_[op.kind == io::IoKind::kRead ? "short read" : "short write"];
    return;
  }
  if (now < shared_.measure_start) return;  // ramp
  auto since_start = now - shared_.measure_start;
  auto index = static_cast<uint64_t>(since_start / shared_.interval);
  if (index != current_index_) {
    flush_interval();
    current_index_ = index;
  }
  auto latency_ns = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(now - issued_at_[slot]).count());
  for (Figures* f : {&counted_, &current_}) {
    f->bytes += op.length_bytes;
    ++f->ops;
    f->latency.record(latency_ns);
  }
  counted_.seconds = std::chrono::duration<double>(since_start).count();
}

void DiskWorker::run_phase(const PhaseLimit& limit) {
  if (!queue_ || queue_owner_ != std::this_thread::get_id()) {
    queue_.reset();
    queue_ = std::make_unique<io::UringQueue>(io::UringQueueOptions{depth_, o_.sqpoll, &pool_});
    queue_owner_ = std::this_thread::get_id();
    registered_ = queue_->buffers_registered();
  }
  io::UringQueue& queue = *queue_;
  std::vector<unsigned> free_slots;
  for (unsigned s = 0; s < queue.depth(); ++s) free_slots.push_back(s);
  auto refill = [&](Clock::time_point now) {
    while (!free_slots.empty() && !shared_.stop.load(std::memory_order_relaxed) &&
           now < limit.deadline && counted_.ops + queue.in_flight() < limit.counted_ops &&
           !(limit.once && issued_ >= blocks_)) {
      unsigned slot = free_slots.back();
      free_slots.pop_back();
      io::IoOp op;
      next_op(op, slot);
      issued_at_[slot] = now;
      queue.start(slot, op);
    }
  };
  refill(Clock::now());
  while (queue.in_flight() > 0) {
    // Wake at the next interval boundary even when nothing completes, so the timeline
    // gets this worker's part on time. Past the phase's deadline nothing new is issued: the
    // loop only drains.
    auto now = Clock::now();
    auto boundary = shared_.measure_start + shared_.interval * (current_index_ + 1);
    if (boundary <= now) boundary = now + shared_.interval;
    auto done = queue.wait(boundary);
    now = Clock::now();
    for (unsigned slot : done) {
      complete(slot, now);
      free_slots.push_back(slot);
    }
    if (now >= shared_.measure_start &&
        static_cast<uint64_t>((now - shared_.measure_start) / shared_.interval) != current_index_) {
      flush_interval();
      current_index_ = static_cast<uint64_t>((now - shared_.measure_start) / shared_.interval);
    }
    refill(now);
  }
  flush_interval();
}

}  // namespace barge::pipeline::bench::detail
