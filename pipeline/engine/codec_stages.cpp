#include "pipeline/engine/codec_stages.hpp"

#include <cstring>

namespace barge::pipeline {

void CompressUnitStage::operator()(WorkUnit& unit) const {
  const size_t slot = (prefix_ + 7) / 8 * 8;  // one prefix, 8-byte aligned
  size_t left = 0;
  for (const Item& it : unit.items) left += !it.failed && it.stored.present;
  const size_t cap = unit.aux.capacity_bytes();
  if (left * slot > cap) throw std::length_error("compress: no room for the blob headers");
  size_t cursor = 0;
  const int level = live_ ? live_->load(std::memory_order_relaxed) : level_;
  unit.level = level;
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
    if (level == 0 || cap < at + reserve + 8 || raw.size() < 2) continue;
    size_t room = std::min(cap - at - reserve, raw.size() - 1);
    if (!worth_compressing(raw, std::span<std::byte>(unit.aux.data() + at, room), level)) continue;
    auto n = CompressStage::compress(raw, std::span<std::byte>(unit.aux.data() + at, room), level);
    if (!n) continue;
    it.stored.compressed = true;
    it.stored.stored_bytes = static_cast<uint32_t>(*n);
    cursor = (at + *n + 7) / 8 * 8;
  }
}

bool CompressUnitStage::worth_compressing(std::span<const std::byte> raw,
                                          std::span<std::byte> scratch, int level) const {
  if (probe_ == 0 || raw.size() <= 2 * probe_) return true;
  const size_t sample = probe_;
  auto n = CompressStage::compress(raw.first(sample),
                                   scratch.first(std::min(scratch.size(), sample)), level);
  return n && *n < sample - sample / 32;
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
