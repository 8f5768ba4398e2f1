#include "pipeline/core/hash.hpp"

#include <xxh_x86dispatch.h>
#include <xxhash.h>

#include <new>
#include <utility>

namespace barge::pipeline {

Hash128 hash_bytes(std::span<const std::byte> bytes) {
  // The dispatch entry points pick AVX2/AVX-512 at run time; the distro library's plain
  // entry points are built for baseline SSE2.
  XXH128_hash_t h = XXH3_128bits_dispatch(bytes.data(), bytes.size());
  return Hash128{h.high64, h.low64};
}

std::string to_hex(const Hash128& h) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out(32, '0');
  for (int i = 0; i < 16; ++i) {
    out[15 - i] = kDigits[(h.high >> (4 * i)) & 0xF];
    out[31 - i] = kDigits[(h.low >> (4 * i)) & 0xF];
  }
  return out;
}

std::optional<Hash128> from_hex(std::string_view hex) {
  if (hex.size() != 32) return std::nullopt;
  Hash128 h;
  for (size_t i = 0; i < 32; ++i) {
    char c = hex[i];
    uint64_t v;
    if (c >= '0' && c <= '9') {
      v = static_cast<uint64_t>(c - '0');
    } else if (c >= 'a' && c <= 'f') {
      v = static_cast<uint64_t>(c - 'a' + 10);
    } else if (c >= 'A' && c <= 'F') {
      v = static_cast<uint64_t>(c - 'A' + 10);
    } else {
      return std::nullopt;
    }
    uint64_t& word = i < 16 ? h.high : h.low;
    word = (word << 4) | v;
  }
  return h;
}

uint64_t hash64_bytes(std::span<const std::byte> bytes) {
  return XXH3_64bits_dispatch(bytes.data(), bytes.size());
}

StreamHasher::StreamHasher() : state_(XXH3_createState()) {
  if (!state_) throw std::bad_alloc();
  reset();
}
StreamHasher::~StreamHasher() {
  if (state_) XXH3_freeState(static_cast<XXH3_state_t*>(state_));
}
StreamHasher::StreamHasher(StreamHasher&& o) noexcept : state_(std::exchange(o.state_, nullptr)) {}
StreamHasher& StreamHasher::operator=(StreamHasher&& o) noexcept {
  std::swap(state_, o.state_);
  return *this;
}
void StreamHasher::update(std::span<const std::byte> bytes) {
  XXH3_128bits_update_dispatch(static_cast<XXH3_state_t*>(state_), bytes.data(), bytes.size());
}
Hash128 StreamHasher::digest() const {
  XXH128_hash_t h = XXH3_128bits_digest(static_cast<XXH3_state_t*>(state_));
  return Hash128{h.high64, h.low64};
}
void StreamHasher::reset() { XXH3_128bits_reset(static_cast<XXH3_state_t*>(state_)); }

}  // namespace barge::pipeline
