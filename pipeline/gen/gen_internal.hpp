// The generator's shared pieces (pipeline/gen): sizes and limits, the stream domains, and the
// PRNG every stream draws from. gen.cpp plans the tree, gen_write.cpp writes it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace barge::pipeline::detail {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;

constexpr uint64_t kBlockBytes = 64 * kKiB;     // unit of content generation and compressibility
constexpr uint64_t kTagStrideBytes = 4 * kKiB;  // dedup granularity we keep unique
constexpr uint64_t kWriteBytes = 1 * kMiB;      // one pwrite, one buffer
// Files above this are split into independently written segments so that one big file still
// keeps every core busy generating; a multiple of kWriteBytes and kBlockBytes.
constexpr uint64_t kSegmentBytes = 64 * kMiB;
constexpr uint64_t kMaxFilesPerDir = 1000;
constexpr uint64_t kMaxLeavesPerTop = 32;
constexpr uint64_t kLargeFileBytes = 2 * kGiB;
constexpr size_t kPhraseBytes = 384;

// Mtimes land in [2020-01-01, 2024-01-01) UTC so they look like real data, not "now".
constexpr int64_t kMtimeBaseSec = 1577836800;
constexpr uint64_t kMtimeSpanSec = 4ull * 365 * 86400;

// Stream domains keep the planning, content and metadata streams independent of each other.
enum Domain : uint64_t {
  kDomainPlan = 1,
  kDomainData = 2,
  kDomainPool = 3,
  kDomainPoolPick = 4,
  kDomainFileTime = 5,
  kDomainDirTime = 6,
  kDomainLinkTime = 7,
  kDomainRootTime = 8,
};

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
inline uint64_t combine(uint64_t h, uint64_t v) { return splitmix64(h ^ splitmix64(v)); }

// xoshiro256** (Blackman & Vigna): ~1 ns per 8 bytes, far ahead of the page cache.
class Xoshiro256 {
 public:
  explicit Xoshiro256(uint64_t key) {
    for (auto& word : s_) {
      key += 0x9E3779B97F4A7C15ull;
      word = splitmix64(key);
    }
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, n) by multiply-shift; the bias (< n / 2^64) does not matter here.
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)

  // Fills [out, out + len) with raw output; unaligned destinations are fine.
  void fill(std::byte* out, size_t len) {
    uint64_t s0 = s_[0], s1 = s_[1], s2 = s_[2], s3 = s_[3];
    auto step = [&] {
      const uint64_t result = rotl(s1 * 5, 7) * 9;
      const uint64_t t = s1 << 17;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = rotl(s3, 45);
      return result;
    };
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
      const uint64_t v = step();
      std::memcpy(out + i, &v, 8);
    }
    if (i < len) {
      const uint64_t v = step();
      std::memcpy(out + i, &v, len - i);
    }
    s_ = {s0, s1, s2, s3};
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::array<uint64_t, 4> s_{};
};

}  // namespace barge::pipeline::detail
