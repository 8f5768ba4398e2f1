// zstd compress/decompress stage bodies, ready for backup (pack writer) and network
// transfer. Each call uses the calling thread's own zstd context, so the functors may run
// with unlimited concurrency on the TBB pool. Decompression checks the raw length and the
// XXH3-128 carried with the chunk before anyone may write the bytes.
#pragma once

#include <cstddef>
#include <span>
#include <string>

#include "io/result.hpp"
#include "pipeline/core/hash.hpp"

namespace barge::pipeline {

// Worst-case compressed size of `raw_bytes` input (ZSTD_compressBound).
size_t compress_bound(size_t raw_bytes);

class CompressStage {
 public:
  explicit CompressStage(int level = 3) : level_(level) {}
  // Compresses `raw` into `out` (sized at least compress_bound(raw.size())); returns the
  // stored length.
  io::Result<size_t> operator()(std::span<const std::byte> raw, std::span<std::byte> out) const {
    return compress(raw, out, level_);
  }
  static io::Result<size_t> compress(std::span<const std::byte> raw, std::span<std::byte> out,
                                     int level);
  int level() const { return level_; }

 private:
  int level_;
};

class DecompressStage {
 public:
  // Decompresses `stored` into `out`; fails unless exactly `raw_bytes` come out and their
  // XXH3-128 equals `expected`.
  io::Result<size_t> operator()(std::span<const std::byte> stored, std::span<std::byte> out,
                                size_t raw_bytes, const Hash128& expected) const;
};

}  // namespace barge::pipeline
