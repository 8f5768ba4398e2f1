#include "io/buffer_pool.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

namespace barge::io {
namespace {

TEST(BufferPool, HandsOutAlignedDistinctBuffersAndTakesThemBack) {
  BufferPool pool(10000, 3);  // rounded up to 12288
  EXPECT_EQ(pool.buffer_bytes(), 12288u);
  Buffer a = pool.acquire(), b = pool.acquire(), c = pool.acquire();
  for (const Buffer* x : {&a, &b, &c}) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(x->data()) % BufferPool::kAlignment, 0u);
    EXPECT_EQ(x->capacity_bytes(), 12288u);
  }
  EXPECT_NE(a.data(), b.data());
  EXPECT_NE(b.data(), c.data());
  EXPECT_FALSE(pool.try_acquire().valid());
  EXPECT_EQ(pool.free_count(), 0u);
  b.release();
  EXPECT_EQ(pool.free_count(), 1u);
  Buffer d = pool.try_acquire();
  EXPECT_TRUE(d.valid());
}

TEST(BufferPool, MovedBufferReturnsOnce) {
  BufferPool pool(4096, 1);
  {
    Buffer a = pool.acquire();
    Buffer b = std::move(a);
    EXPECT_FALSE(a.valid());  // NOLINT(bugprone-use-after-move): checking the moved-from state
    EXPECT_TRUE(b.valid());
  }
  EXPECT_EQ(pool.free_count(), 1u);
}

TEST(BufferPool, AcquireBlocksUntilABufferComesBack) {
  BufferPool pool(4096, 1);
  Buffer held = pool.acquire();
  std::atomic<bool> got{false};
  std::thread waiter([&] {
    Buffer b = pool.acquire();
    got = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  EXPECT_FALSE(got.load());
  held.release();
  waiter.join();
  EXPECT_TRUE(got.load());
}

TEST(BufferPool, NeverMoreThanItsBuffersInUseUnderContention) {
  BufferPool pool(4096, 4);
  std::atomic<int> in_use{0}, peak{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) {
        Buffer b = pool.acquire();
        int now = ++in_use;
        int p = peak.load();
        while (now > p && !peak.compare_exchange_weak(p, now)) {
        }
        --in_use;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_LE(peak.load(), 4);
  EXPECT_EQ(pool.free_count(), 4u);
}

}  // namespace
}  // namespace barge::io
