// The receiver's chunk ledger (pipeline/remote/protocol.hpp): what each unit item may be,
// and what arrived.
#include <mutex>

#include "pipeline/remote/protocol.hpp"

namespace barge::pipeline::remote {

ChunkLedger::ChunkLedger(const Plan& plan, const std::vector<uint8_t>& expected,
                         uint64_t chunk_bytes, uint64_t buffer_bytes)
    : plan_(plan), expected_(expected), chunk_bytes_(chunk_bytes), buffer_bytes_(buffer_bytes) {}

uint32_t ChunkLedger::chunk_count(uint32_t file) const {
  return chunk_count_for(plan_.entries[file].meta.size_bytes, chunk_bytes_, buffer_bytes_);
}

io::Status ChunkLedger::accept(const WireItem& it) {
  auto bad = [&](const std::string& why) {
    return io::Error::plain("unit: item of file " + std::to_string(it.file) + " chunk " +
                            std::to_string(it.chunk) + ": " + why);
  };
  if (it.file >= plan_.entries.size() || plan_.entries[it.file].meta.type != io::FileType::kRegular)
    return bad("not a file of the plan");
  if (!expected_[it.file]) return bad("a file this transfer does not expect bytes for");
  const uint64_t size = plan_.entries[it.file].meta.size_bytes;
  const uint32_t count = chunk_count(it.file);
  if (it.chunk >= count) return bad("no such chunk");
  const uint64_t offset = count == 1 ? 0 : uint64_t{it.chunk} * chunk_bytes_;
  const uint64_t length = count == 1 ? size : std::min(chunk_bytes_, size - offset);
  if (it.offset != offset || it.length != length) return bad("wrong offset or length");
  if (it.failed && (it.wire_bytes != 0 || it.compressed)) return bad("bytes for a failed item");
  uint64_t data_bytes = 0;
  uint64_t at = it.offset;
  for (const auto& [b, e] : it.data) {
    if (b < at || e <= b || e > it.offset + it.length) return bad("bad data range");
    data_bytes += e - b;
    at = e;
  }
  if (!it.failed && !it.compressed && it.wire_bytes != (it.sparse ? data_bytes : it.length))
    return bad("wrong byte count");
  if (it.compressed && (it.wire_bytes == 0 || it.wire_bytes > buffer_bytes_))
    return bad("wrong compressed size");
  std::lock_guard lock(mu_);
  auto [pos, fresh] = got_.try_emplace(it.file);
  if (fresh) {
    pos->second.assign(count, false);
    left_[it.file] = count;
  }
  if (pos->second[it.chunk]) return bad("it came twice");
  pos->second[it.chunk] = true;
  --left_[it.file];
  return io::Status::success();
}

void ChunkLedger::mark_done(uint32_t file, uint32_t chunk) {
  const uint32_t count = chunk_count(file);
  std::lock_guard lock(mu_);
  auto [pos, fresh] = got_.try_emplace(file);
  if (fresh) {
    pos->second.assign(count, false);
    left_[file] = count;
  }
  if (chunk >= count || pos->second[chunk]) return;
  pos->second[chunk] = true;
  --left_[file];
}

std::vector<uint32_t> ChunkLedger::incomplete() const {
  std::lock_guard lock(mu_);
  std::vector<uint32_t> out;
  for (uint32_t f : plan_.files) {
    if (!expected_[f]) continue;
    auto it = left_.find(f);
    if (it == left_.end() || it->second > 0) out.push_back(f);
  }
  return out;
}

std::vector<std::pair<uint32_t, uint32_t>> ChunkLedger::arrived() const {
  std::lock_guard lock(mu_);
  std::vector<std::pair<uint32_t, uint32_t>> out;
  for (const auto& [f, chunks] : got_) {
    for (uint32_t c = 0; c < chunks.size(); ++c)
      if (chunks[c]) out.emplace_back(f, c);
  }
  return out;
}

}  // namespace barge::pipeline::remote
