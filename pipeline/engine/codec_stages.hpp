// The codec stages of the engine (compress, decompress+check) over whole work units.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "pipeline/core/compress.hpp"
#include "pipeline/engine/work_unit.hpp"

namespace barge::pipeline {

// The codec stages of the graph, over whole units (backup, restore, verify REPO, and later
// send/recv). An item's stored form lives in the unit's aux buffer at
// stored.aux_offset_bytes when it is compressed; a raw one stays in (or is read into) the
// main buffer, so incompressible data is never copied twice.

// compress: every item with stored.present gets its stored form: zstd into aux when that is
// smaller, after `prefix_bytes` left free before it for the container's header (a blob
// header), or raw. Failed items and items without a stored form (reused, holes) are passed over.
class CompressUnitStage {
 public:
  // probe_bytes (send's --compress auto): an item larger than this is first compressed on
  // its first probe_bytes; if that sample does not shrink by 1/32, the item is stored raw
  // without compressing the rest (incompressible data costs a sample, not a whole pass).
  CompressUnitStage(int level, size_t prefix_bytes, size_t probe_bytes = 0)
      : level_(level), prefix_(prefix_bytes), probe_(probe_bytes) {}
  // --tune: each unit takes the level `live` holds when it starts (0: every item raw); the
  // unit records it (WorkUnit::level).
  void follow(const std::atomic<int>* live) { live_ = live; }
  // The prefix of an item is the `prefix_bytes` before its stored.aux_offset_bytes, raw or
  // not; aux always has room for every item's prefix.
  void operator()(WorkUnit& unit) const;

 private:
  bool worth_compressing(std::span<const std::byte> raw, std::span<std::byte> scratch,
                         int level) const;
  int level_;
  const std::atomic<int>* live_ = nullptr;
  size_t prefix_;
  size_t probe_;
};

// decompress+check: compressed items are decompressed from aux into their place in the main
// buffer; then every item's raw bytes must have the XXH3-128 the item carries (it.hash)
// before any later stage may write them. A failure fails the item through `fail`.
class DecompressCheckStage {
 public:
  using Fail = std::function<void(Item&, const std::string&)>;
  explicit DecompressCheckStage(Fail fail) : fail_(std::move(fail)) {}
  void operator()(WorkUnit& unit) const;

 private:
  Fail fail_;
};

}  // namespace barge::pipeline
