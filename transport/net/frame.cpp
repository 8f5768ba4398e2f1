#include "transport/net/frame.hpp"

#include <cstring>

namespace barge::transport {

void put_frame_header(std::span<std::byte, kFrameHeaderBytes> out, const FrameHeader& h) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<std::byte>(h.payload_bytes >> (8 * i));
  out[4] = static_cast<std::byte>(h.type);
  out[5] = static_cast<std::byte>(h.flags);
  out[6] = out[7] = std::byte{0};
}

io::Result<FrameHeader> parse_frame_header(std::span<const std::byte, kFrameHeaderBytes> in,
                                           uint32_t max_payload_bytes) {
  FrameHeader h;
  for (int i = 0; i < 4; ++i) h.payload_bytes |= std::to_integer<uint32_t>(in[i]) << (8 * i);
  const uint8_t type = std::to_integer<uint8_t>(in[4]);
  if (type == 0 || type > kMaxFrameType)
    return io::Error::plain("frame of unknown type " + std::to_string(type));
  if (in[6] != std::byte{0} || in[7] != std::byte{0})
    return io::Error::plain("frame header with non-zero reserved bytes");
  if (h.payload_bytes > max_payload_bytes) {
    return io::Error::plain("frame of " + std::to_string(h.payload_bytes) +
                            " bytes, over the limit of " + std::to_string(max_payload_bytes));
  }
  h.type = static_cast<FrameType>(type);
  h.flags = std::to_integer<uint8_t>(in[5]);
  return h;
}

io::Status FrameDecoder::feed(std::span<const std::byte> bytes) {
  if (failed_) return *failed_;
  buf_.insert(buf_.end(), bytes.begin(), bytes.end());
  io::Status st = decode();
  if (!st) failed_ = st.error();
  return st;
}

io::Status FrameDecoder::decode() {
  for (;;) {
    if (buf_.size() - pos_ < kFrameHeaderBytes) break;
    auto h = parse_frame_header(
        std::span<const std::byte, kFrameHeaderBytes>(buf_.data() + pos_, kFrameHeaderBytes),
        max_payload_bytes_);
    if (!h) return h.error();
    if (buf_.size() - pos_ - kFrameHeaderBytes < h->payload_bytes) break;
    const std::byte* p = buf_.data() + pos_ + kFrameHeaderBytes;
    ready_.push_back(Frame{*h, std::vector<std::byte>(p, p + h->payload_bytes)});
    pos_ += kFrameHeaderBytes + h->payload_bytes;
  }
  // Drop what was consumed once it is most of the buffer (amortised moves).
  if (pos_ > 0 && pos_ >= buf_.size() / 2) {
    buf_.erase(buf_.begin(), buf_.begin() + static_cast<std::ptrdiff_t>(pos_));
    pos_ = 0;
  }
  return io::Status::success();
}

std::optional<Frame> FrameDecoder::next() {
  if (ready_pos_ == ready_.size()) {
    ready_.clear();
    ready_pos_ = 0;
    return std::nullopt;
  }
  return std::move(ready_[ready_pos_++]);
}

}  // namespace barge::transport
