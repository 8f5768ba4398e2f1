// XXH3-128 checksums: the one hash barge computes on bytes as read, carries with each chunk,
// and checks before bytes are written or after they are re-read.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace barge::pipeline {

struct Hash128 {
  uint64_t high = 0;
  uint64_t low = 0;
  friend bool operator==(const Hash128&, const Hash128&) = default;
};

// XXH3-128 of a byte range (seed 0), the same value `xxhsum -H2` prints.
Hash128 hash_bytes(std::span<const std::byte> bytes);

// XXH3-64 (seed 0): checksums of barge's own file structures.
uint64_t hash64_bytes(std::span<const std::byte> bytes);

// 32 lowercase hex digits, canonical (big-endian) order as xxhsum prints them.
std::string to_hex(const Hash128& h);
// Parses exactly 32 hex digits (either case); nullopt on anything else.
std::optional<Hash128> from_hex(std::string_view hex);

// Streaming XXH3-128 for a file whose chunks arrive in order. Move-only; not thread-safe.
class StreamHasher {
 public:
  StreamHasher();
  ~StreamHasher();
  StreamHasher(StreamHasher&&) noexcept;
  StreamHasher& operator=(StreamHasher&&) noexcept;
  StreamHasher(const StreamHasher&) = delete;
  StreamHasher& operator=(const StreamHasher&) = delete;

  void update(std::span<const std::byte> bytes);
  Hash128 digest() const;
  void reset();

 private:
  void* state_ = nullptr;  // XXH3_state_t*, kept opaque to keep xxhash.h out of headers
};

}  // namespace barge::pipeline
