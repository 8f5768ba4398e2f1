#include "transport/net/frame_stream.hpp"

#include <poll.h>
#include <sys/socket.h>

#include <array>
#include <vector>

namespace barge::transport {

namespace {
const char* type_name(FrameType t) {
  switch (t) {
    case FrameType::kHello:
      return "hello";
    case FrameType::kWelcome:
      return "welcome";
    case FrameType::kUnit:
      return "unit";
    case FrameType::kAck:
      return "ack";
    case FrameType::kDone:
      return "done";
    case FrameType::kError:
      return "error";
    case FrameType::kPlan:
      return "plan";
    case FrameType::kReady:
      return "ready";
  }
  return "unknown";
}
}  // namespace

void FrameStream::send(FrameType type, std::initializer_list<std::span<const std::byte>> parts,
                       uint8_t flags) {
  send(type, std::span<const std::span<const std::byte>>(parts.begin(), parts.size()), flags);
}

void FrameStream::send(FrameType type, std::span<const std::span<const std::byte>> parts,
                       uint8_t flags) {
  size_t total = 0;
  for (auto p : parts) total += p.size();
  if (total > UINT32_MAX) throw TlsError("send to " + peer() + ": frame too large");
  // The header and the small parts go out in one TLS record; large parts as they are.
  std::vector<std::byte> head(kFrameHeaderBytes);
  put_frame_header(std::span<std::byte, kFrameHeaderBytes>(head.data(), kFrameHeaderBytes),
                   FrameHeader{type, flags, static_cast<uint32_t>(total)});
  for (auto p : parts) {
    if (head.size() + p.size() <= 16384) {
      head.insert(head.end(), p.begin(), p.end());
      continue;
    }
    if (!head.empty()) tls_.write_all(head);
    head.clear();
    tls_.write_all(p);
  }
  if (!head.empty()) tls_.write_all(head);
}

void FrameStream::send(FrameType type, std::string_view payload, uint8_t flags) {
  send(type, {std::as_bytes(std::span<const char>(payload.data(), payload.size()))}, flags);
}

FrameHeader FrameStream::read_header(uint32_t max_payload_bytes) {
  std::array<std::byte, kFrameHeaderBytes> raw;
  tls_.read_exact(raw);
  auto h = parse_frame_header(raw, max_payload_bytes);
  if (!h) throw TlsError("from " + peer() + ": " + h.error().message);
  return *h;
}

std::string FrameStream::read_payload(const FrameHeader& h) {
  std::string out(h.payload_bytes, '\0');
  tls_.read_exact(std::as_writable_bytes(std::span<char>(out.data(), out.size())));
  return out;
}

std::string FrameStream::expect(FrameType want, uint32_t max_payload_bytes) {
  FrameHeader h = read_header(max_payload_bytes);
  std::string payload = read_payload(h);
  if (h.type == want) return payload;
  if (h.type == FrameType::kError) throw PeerRefusal(peer() + ": " + payload);
  throw TlsError("from " + peer() + ": a " + type_name(h.type) + " frame where a " +
                 type_name(want) + " frame belongs");
}

bool FrameStream::readable_now() const {
  if (tls_.pending() > 0) return true;
  pollfd p{fd_.get(), POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

void FrameStream::abort() { ::shutdown(fd_.get(), SHUT_RDWR); }

}  // namespace barge::transport
