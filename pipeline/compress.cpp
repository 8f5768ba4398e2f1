#include "pipeline/compress.hpp"

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

io::Result<size_t> CompressStage::operator()(std::span<const std::byte> raw,
                                             std::span<std::byte> out) const {
  size_t n =
      ZSTD_compressCCtx(thread_cctx(), out.data(), out.size(), raw.data(), raw.size(), level_);
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

void CompressUnitStage::operator()(WorkUnit& unit) const {
  const size_t slot = (prefix_ + 7) / 8 * 8;  // one prefix, 8-byte aligned
  size_t left = 0;
  for (const Item& it : unit.items) left += !it.failed && it.stored.present;
  const size_t cap = unit.aux.capacity_bytes();
  if (left * slot > cap) throw std::length_error("compress: no room for the blob headers");
  size_t cursor = 0;
  for (Item& it : unit.items) {
    if (it.failed || !it.stored.present) continue;
    --left;
    std::span<const std::byte> raw = unit.bytes(it);
    const size_t at = cursor + slot;
    it.stored.aux_offset_bytes = at;
    it.stored.compressed = false;
    it.stored.stored_bytes = static_cast<uint32_t>(raw.size());
    cursor = at;
    // zstd gets the room left after the other items' prefixes, and no more than the raw
    // size less one: when its output would not fit, the item is stored raw.
    const size_t reserve = left * slot;
    if (cap < at + reserve + 8 || raw.size() < 2) continue;
    size_t room = std::min(cap - at - reserve, raw.size() - 1);
    auto n = compress_(raw, std::span<std::byte>(unit.aux.data() + at, room));
    if (!n) continue;
    it.stored.compressed = true;
    it.stored.stored_bytes = static_cast<uint32_t>(*n);
    cursor = (at + *n + 7) / 8 * 8;
  }
}

void DecompressCheckStage::operator()(WorkUnit& unit) const {
  for (Item& it : unit.items) {
    if (it.failed || !it.stored.present) continue;
    std::span<std::byte> raw = unit.bytes(it);
    if (it.stored.compressed) {
      auto n = DecompressStage{}(unit.stored_bytes(it), raw, raw.size(), it.hash);
      if (!n) fail_(it, n.error().message);
    } else if (!(hash_bytes(raw) == it.hash)) {
      fail_(it, "checksum mismatch");
    }
  }
}

}  // namespace barge::pipeline
