#include "pipeline/core/compress.hpp"

#include <zstd.h>

#include <algorithm>
#include <memory>
#include <stdexcept>
#include <string>

namespace barge::pipeline {
namespace {

struct CCtxDeleter {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxDeleter {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

ZSTD_CCtx* thread_cctx() {
  thread_local std::unique_ptr<ZSTD_CCtx, CCtxDeleter> ctx(ZSTD_createCCtx());
  return ctx.get();
}
ZSTD_DCtx* thread_dctx() {
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxDeleter> ctx(ZSTD_createDCtx());
  return ctx.get();
}

}  // namespace

size_t compress_bound(size_t raw_bytes) { return ZSTD_compressBound(raw_bytes); }

io::Result<size_t> CompressStage::compress(std::span<const std::byte> raw, std::span<std::byte> out,
                                           int level) {
  size_t n =
      ZSTD_compressCCtx(thread_cctx(), out.data(), out.size(), raw.data(), raw.size(), level);
  if (ZSTD_isError(n))
    return io::Error::plain(std::string("zstd compress: ") + ZSTD_getErrorName(n));
  return n;
}

io::Result<size_t> DecompressStage::operator()(std::span<const std::byte> stored,
                                               std::span<std::byte> out, size_t raw_bytes,
                                               const Hash128& expected) const {
  if (out.size() < raw_bytes) return io::Error::plain("zstd decompress: output buffer too small");
  size_t n =
      ZSTD_decompressDCtx(thread_dctx(), out.data(), raw_bytes, stored.data(), stored.size());
  if (ZSTD_isError(n))
    return io::Error::plain(std::string("zstd decompress: ") + ZSTD_getErrorName(n));
  if (n != raw_bytes) {
    return io::Error::plain("zstd decompress: " + std::to_string(n) + " bytes, expected " +
                            std::to_string(raw_bytes));
  }
  if (!(hash_bytes(out.first(n)) == expected))
    return io::Error::plain("checksum mismatch after decompression");
  return n;
}

}  // namespace barge::pipeline
