#include "pipeline/core/compress.hpp"

#include <gtest/gtest.h>

#include <random>
#include <vector>

namespace barge::pipeline {
namespace {

std::vector<std::byte> mixed_bytes(size_t n) {
  std::vector<std::byte> v(n);
  std::mt19937 rng(7);
  for (size_t i = 0; i < n; ++i)
    v[i] = static_cast<std::byte>(i % 3 == 0 ? rng() & 0xFF : 'a' + (i % 17));
  return v;
}

TEST(CompressStage, RoundTripsAndShrinksCompressibleData) {
  auto raw = mixed_bytes(1 << 20);
  std::vector<std::byte> stored(compress_bound(raw.size()));
  auto n = CompressStage(3)(raw, stored);
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_LT(*n, raw.size());
  std::vector<std::byte> back(raw.size());
  auto m = DecompressStage()(std::span(stored).first(*n), back, raw.size(), hash_bytes(raw));
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(back, raw);
}

TEST(CompressStage, EmptyInputRoundTrips) {
  std::vector<std::byte> raw;
  std::vector<std::byte> stored(compress_bound(0));
  auto n = CompressStage(1)(raw, stored);
  ASSERT_TRUE(n.ok());
  std::vector<std::byte> back(1);
  auto m = DecompressStage()(std::span(stored).first(*n), back, 0, hash_bytes(raw));
  EXPECT_TRUE(m.ok());
}

TEST(DecompressStage, RefusesAFlippedByteWrongLengthOrWrongChecksum) {
  auto raw = mixed_bytes(100000);
  std::vector<std::byte> stored(compress_bound(raw.size()));
  size_t n = CompressStage(3)(raw, stored).value();
  std::vector<std::byte> back(raw.size() + 10);
  Hash128 h = hash_bytes(raw);
  auto corrupt = stored;
  corrupt[n / 2] ^= std::byte{0x40};
  EXPECT_FALSE(DecompressStage()(std::span(corrupt).first(n), back, raw.size(), h).ok());
  EXPECT_FALSE(DecompressStage()(std::span(stored).first(n), back, raw.size() - 1, h).ok());
  EXPECT_FALSE(DecompressStage()(std::span(stored).first(n - 5), back, raw.size(), h).ok());
  Hash128 wrong = h;
  wrong.low ^= 1;
  auto r = DecompressStage()(std::span(stored).first(n), back, raw.size(), wrong);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("checksum"), std::string::npos);
}

}  // namespace
}  // namespace barge::pipeline
