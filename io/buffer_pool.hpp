// BufferPool: a fixed set of equally sized, 4 KiB-aligned buffers carved from one arena.
// The pool is the memory budget of a run: a stage that needs a buffer waits until one is
// returned, so memory stays bounded whatever the dataset size.
//
// Thread-safety: acquire()/try_acquire() and Buffer destruction may race freely.
// Lifetime: every Buffer must be destroyed before its pool.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <mutex>
#include <span>
#include <vector>

namespace barge::io {

class BufferPool;

// One owning, move-only buffer; returns itself to the pool on destruction.
class Buffer {
 public:
  Buffer() = default;
  Buffer(Buffer&& o) noexcept;
  Buffer& operator=(Buffer&& o) noexcept;
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { release(); }

  std::byte* data() const { return data_; }
  size_t capacity_bytes() const { return capacity_bytes_; }
  std::span<std::byte> span() const { return {data_, capacity_bytes_}; }
  // Index of this buffer in the pool, which is also its registered-buffer index.
  int index() const { return index_; }
  bool valid() const { return data_ != nullptr; }
  void release();

 private:
  friend class BufferPool;
  Buffer(BufferPool* pool, std::byte* data, size_t capacity_bytes, int index)
      : pool_(pool), data_(data), capacity_bytes_(capacity_bytes), index_(index) {}
  BufferPool* pool_ = nullptr;
  std::byte* data_ = nullptr;
  size_t capacity_bytes_ = 0;
  int index_ = -1;
};

class BufferPool {
 public:
  static constexpr size_t kAlignment = 4096;

  // buffer_bytes is rounded up to kAlignment. Throws std::bad_alloc if the arena cannot be had.
  BufferPool(size_t buffer_bytes, size_t buffer_count);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  Buffer acquire();      // blocks until a buffer is free
  Buffer try_acquire();  // invalid Buffer when none is free

  size_t buffer_bytes() const { return buffer_bytes_; }
  size_t buffer_count() const { return buffer_count_; }
  size_t free_count() const;
  // The whole arena, for registering with io_uring (one iovec per buffer).
  std::byte* arena() const { return arena_; }

 private:
  friend class Buffer;
  void give_back(int index);

  size_t buffer_bytes_;
  size_t buffer_count_;
  std::byte* arena_ = nullptr;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<int> free_;
};

}  // namespace barge::io
