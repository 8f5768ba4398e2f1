#include "io/io_backend.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "io/buffer_pool.hpp"
#include "tests/test_tmpdir.hpp"

namespace barge::io {
namespace {

class BackendTest : public ::testing::TestWithParam<BackendKind> {
 protected:
  std::unique_ptr<IoBackend> make(const BufferPool* pool = nullptr) {
    BackendOptions o{GetParam(), 8, pool};
    return make_backend(o);
  }
  test::TempDir dir_;
};

std::vector<std::byte> pattern(size_t n, unsigned seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<std::byte>((i * 131 + seed * 7) & 0xFF);
  return v;
}

TEST_P(BackendTest, WritesThenReadsManyOpsInOneBatch) {
  auto backend = make();
  int fd = ::open((dir_.path() + "/f").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  constexpr size_t kOps = 40;  // more than the queue depth of 8: the backend must refill
  constexpr size_t kLen = 10000;
  auto data = pattern(kOps * kLen, 3);
  std::vector<IoOp> ops;
  for (size_t i = 0; i < kOps; ++i) {
    ops.push_back(IoOp{IoKind::kWrite, fd, data.data() + i * kLen, kLen, i * kLen});
  }
  backend->run(ops);
  for (const auto& op : ops) {
    EXPECT_EQ(op.error, 0);
    EXPECT_EQ(op.done_bytes, kLen);
  }
  std::vector<std::byte> back(data.size());
  std::vector<IoOp> reads;
  for (size_t i = 0; i < kOps; ++i) {
    reads.push_back(IoOp{IoKind::kRead, fd, back.data() + i * kLen, kLen, i * kLen});
  }
  backend->run(reads);
  for (const auto& op : reads) EXPECT_EQ(op.done_bytes, kLen);
  EXPECT_EQ(0, std::memcmp(back.data(), data.data(), data.size()));
  ::close(fd);
}

TEST_P(BackendTest, ReadPastEndOfFileEndsDoneAndShort) {
  auto backend = make();
  int fd = ::open((dir_.path() + "/f").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  auto data = pattern(5000, 1);
  ASSERT_EQ(::write(fd, data.data(), data.size()), 5000);
  std::vector<std::byte> buf(16384);
  IoOp op{IoKind::kRead, fd, buf.data(), buf.size(), 1000};
  backend->run(std::span<IoOp>(&op, 1));
  EXPECT_EQ(op.error, 0);
  EXPECT_EQ(op.done_bytes, 4000u);
  EXPECT_EQ(0, std::memcmp(buf.data(), data.data() + 1000, 4000));
  ::close(fd);
}

TEST(UringBackend, ShortReadsFromAPipeAreCompletedInsideTheBackend) {
  // A pipe hands out what has arrived so far: each read comes back short and the ring must
  // requeue the rest until all bytes are in. (pread cannot read a pipe, so this is ring-only.)
  auto backend = make_backend(BackendOptions{BackendKind::kUring, 8, nullptr});
  int p[2];
  ASSERT_EQ(::pipe(p), 0);
  auto data = pattern(30000, 9);
  std::thread writer([&] {
    for (size_t off = 0; off < data.size(); off += 7000) {
      size_t n = std::min<size_t>(7000, data.size() - off);
      ASSERT_EQ(::write(p[1], data.data() + off, n), static_cast<ssize_t>(n));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ::close(p[1]);
  });
  std::vector<std::byte> buf(data.size());
  IoOp op{IoKind::kRead, p[0], buf.data(), buf.size(), 0};
  backend->run(std::span<IoOp>(&op, 1));
  writer.join();
  EXPECT_EQ(op.error, 0);
  EXPECT_EQ(op.done_bytes, data.size());
  EXPECT_EQ(0, std::memcmp(buf.data(), data.data(), data.size()));
  ::close(p[0]);
}

TEST_P(BackendTest, ErrorsComeBackAsErrnoPerOp) {
  auto backend = make();
  int fd = ::open((dir_.path() + "/ro").c_str(), O_RDONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  std::vector<std::byte> buf(4096);
  IoOp ops[2] = {IoOp{IoKind::kWrite, fd, buf.data(), buf.size(), 0},
                 IoOp{IoKind::kRead, -1, buf.data(), buf.size(), 0}};
  backend->run(ops);
  EXPECT_EQ(ops[0].error, EBADF);
  EXPECT_EQ(ops[1].error, EBADF);
  ::close(fd);
}

TEST_P(BackendTest, RegisteredPoolBuffersWork) {
  BufferPool pool(64 * 1024, 4);
  auto backend = make(&pool);
  if (GetParam() == BackendKind::kUring && ::geteuid() == 0) {
    EXPECT_TRUE(backend->buffers_registered());
  }
  int fd = ::open((dir_.path() + "/f").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0644);
  ASSERT_GE(fd, 0);
  Buffer a = pool.acquire();
  Buffer b = pool.acquire();
  auto data = pattern(a.capacity_bytes(), 5);
  std::memcpy(a.data(), data.data(), data.size());
  IoOp w{IoKind::kWrite, fd, a.data(), a.capacity_bytes(), 0, a.index()};
  backend->run(std::span<IoOp>(&w, 1));
  ASSERT_EQ(w.error, 0);
  IoOp r{IoKind::kRead, fd, b.data() + 100, 1000, 500, b.index()};  // inside a registered buffer
  backend->run(std::span<IoOp>(&r, 1));
  EXPECT_EQ(r.done_bytes, 1000u);
  EXPECT_EQ(0, std::memcmp(b.data() + 100, data.data() + 500, 1000));
  ::close(fd);
}

INSTANTIATE_TEST_SUITE_P(Backends, BackendTest,
                         ::testing::Values(BackendKind::kUring, BackendKind::kSync),
                         [](const auto& info) {
                           return info.param == BackendKind::kUring ? "uring" : "sync";
                         });

TEST(BackendSelection, EnvironmentForcesTheFallback) {
  ::setenv("BARGE_IO_BACKEND", "sync", 1);
  auto b = make_backend(BackendOptions{});
  ::unsetenv("BARGE_IO_BACKEND");
  EXPECT_EQ(b->name(), "pread/pwrite");
  auto u = make_backend(BackendOptions{});
  EXPECT_EQ(u->name(), "io_uring");
}

TEST(BackendSelection, ParsesNames) {
  EXPECT_EQ(parse_backend_kind("sync"), BackendKind::kSync);
  EXPECT_EQ(parse_backend_kind("uring"), BackendKind::kUring);
  EXPECT_EQ(parse_backend_kind("auto"), BackendKind::kAuto);
  EXPECT_FALSE(parse_backend_kind("aio").has_value());
}

}  // namespace
}  // namespace barge::io
