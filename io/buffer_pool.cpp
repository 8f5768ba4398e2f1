#include "io/buffer_pool.hpp"

#include <cstdlib>
#include <new>
#include <utility>

namespace barge::io {

Buffer::Buffer(Buffer&& o) noexcept
    : pool_(std::exchange(o.pool_, nullptr)),
      data_(std::exchange(o.data_, nullptr)),
      capacity_bytes_(std::exchange(o.capacity_bytes_, 0)),
      index_(std::exchange(o.index_, -1)) {}

Buffer& Buffer::operator=(Buffer&& o) noexcept {
  if (this != &o) {
    release();
    pool_ = std::exchange(o.pool_, nullptr);
    data_ = std::exchange(o.data_, nullptr);
    capacity_bytes_ = std::exchange(o.capacity_bytes_, 0);
    index_ = std::exchange(o.index_, -1);
  }
  return *this;
}

void Buffer::release() {
  if (pool_) pool_->give_back(index_);
  pool_ = nullptr;
  data_ = nullptr;
  capacity_bytes_ = 0;
  index_ = -1;
}

BufferPool::BufferPool(size_t buffer_bytes, size_t buffer_count)
    : buffer_bytes_((buffer_bytes + kAlignment - 1) / kAlignment * kAlignment),
      buffer_count_(buffer_count) {
  if (buffer_bytes_ == 0 || buffer_count_ == 0) throw std::bad_alloc();
  // Pages are not touched here: resident memory grows only as buffers are first used.
  arena_ = static_cast<std::byte*>(std::aligned_alloc(kAlignment, buffer_bytes_ * buffer_count_));
  if (!arena_) throw std::bad_alloc();
  free_.reserve(buffer_count_);
  // Hand out low indices first so a small run touches little memory.
  for (size_t i = buffer_count_; i-- > 0;) free_.push_back(static_cast<int>(i));
}

BufferPool::~BufferPool() { std::free(arena_); }

Buffer BufferPool::acquire() {
  std::unique_lock lock(mu_);
  cv_.wait(lock, [&] { return !free_.empty(); });
  int index = free_.back();
  free_.pop_back();
  return Buffer(this, arena_ + static_cast<size_t>(index) * buffer_bytes_, buffer_bytes_, index);
}

Buffer BufferPool::try_acquire() {
  std::lock_guard lock(mu_);
  if (free_.empty()) return Buffer();
  int index = free_.back();
  free_.pop_back();
  return Buffer(this, arena_ + static_cast<size_t>(index) * buffer_bytes_, buffer_bytes_, index);
}

size_t BufferPool::free_count() const {
  std::lock_guard lock(mu_);
  return free_.size();
}

void BufferPool::give_back(int index) {
  {
    std::lock_guard lock(mu_);
    free_.push_back(index);
  }
  cv_.notify_one();
}

}  // namespace barge::io
