#include "pipeline/remote/send_stages.hpp"

#include <linux/sockios.h>
#include <linux/tcp.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstddef>
#include <string>

#include "pipeline/remote/protocol.hpp"

namespace barge::pipeline::remote {

uint64_t StreamSet::bytes_acked() const {
  uint64_t sum = 0;
  for (const auto& s : slots_) {
    tcp_info info{};
    socklen_t len = sizeof info;
    if (::getsockopt(s->stream->fd(), IPPROTO_TCP, TCP_INFO, &info, &len) == 0 &&
        len >= offsetof(tcp_info, tcpi_bytes_acked) + sizeof info.tcpi_bytes_acked)
      sum += info.tcpi_bytes_acked;
  }
  return sum;
}

double StreamSet::send_buffer_fill() const {
  double queued = 0, room = 0;
  for (const auto& s : slots_) {
    int outq = 0, sndbuf = 0;
    socklen_t len = sizeof sndbuf;
    if (::ioctl(s->stream->fd(), SIOCOUTQ, &outq) != 0 ||
        ::getsockopt(s->stream->fd(), SOL_SOCKET, SO_SNDBUF, &sndbuf, &len) != 0)
      continue;
    queued += outq;
    room += sndbuf / 2.0;
  }
  return room > 0 ? std::min(1.0, queued / room) : 0;
}

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
