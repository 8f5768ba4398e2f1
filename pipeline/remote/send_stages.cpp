#include "pipeline/remote/send_stages.hpp"

#include <string>

#include "pipeline/remote/protocol.hpp"

namespace barge::pipeline::remote {

void NetSendStage::operator()(WorkUnit& u) const {
  std::vector<WireItem> items;
  std::vector<std::span<const std::byte>> parts(2);
  uint64_t bytes = 0;
  for (Item& it : u.items) {
    WireItem& w = items.emplace_back();
    w.file = it.ext.file;
    w.chunk = it.ext.chunk;
    w.offset = it.ext.offset_bytes;
    w.length = it.ext.length_bytes;
    w.hash = it.hash;
    if (it.failed) {
      w.failed = true;
      continue;
    }
    w.sparse = it.sparse;
    if (it.sparse) w.data = it.data;
    if (it.stored.present && it.stored.compressed) {
      w.compressed = true;
      parts.push_back(u.stored_bytes(it));
      w.wire_bytes = it.stored.stored_bytes;
    } else if (it.sparse) {
      for (const auto& [b, e] : it.data) {
        parts.push_back(u.bytes(it).subspan(b - it.ext.offset_bytes, e - b));
        w.wire_bytes += static_cast<uint32_t>(e - b);
      }
    } else {
      parts.push_back(u.bytes(it));
      w.wire_bytes = static_cast<uint32_t>(it.ext.length_bytes);
    }
    bytes += w.wire_bytes;
  }
  std::string table = encode_unit_table(items);
  uint32_t table_bytes = static_cast<uint32_t>(table.size());
  parts[0] = std::as_bytes(std::span<const uint32_t>(&table_bytes, 1));
  parts[1] = std::as_bytes(std::span<const char>(table.data(), table.size()));
  limit_.take(bytes + table.size());
  try {
    streams_.with_one([&](FrameStream& s) { s.send(FrameType::kUnit, parts); });
  } catch (const transport::LinkLost&) {
    streams_.mark_lost();
    throw;
  }
}

}  // namespace barge::pipeline::remote
