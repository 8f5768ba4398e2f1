#pragma once
// Frames: every message on a send/recv stream is one frame, an 8-byte header and then the
// payload (docs/PROTOCOL.md):
//   u32 payload_bytes (little-endian) | u8 type | u8 flags | u16 reserved, zero
// A receiver checks a header before it reads or allocates the payload: an unknown type,
// non-zero reserved bytes or a payload over the limit it enforces end the stream.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "io/result.hpp"

namespace barge::transport {

enum class FrameType : uint8_t {
  kHello = 1,    // sender → receiver: protocol version, capabilities, the transfer asked for
  kWelcome = 2,  // receiver → sender: the version chosen, every rank's endpoint, DST's state
  kUnit = 3,     // a work unit: its extents, metadata and payload
  kAck = 4,      // receiver → sender: chunks committed
  kDone = 5,     // the sender has nothing more; the receiver's final report
  kError = 6,    // one line naming what failed; the stream ends after it
  kPlan = 7,     // sender → receiver: a batch of the transfer's entries, in pre-order
  kReady = 8,    // receiver → sender: the plan is placed and its directories made
};
inline constexpr uint8_t kMaxFrameType = 8;
inline constexpr size_t kFrameHeaderBytes = 8;

struct FrameHeader {
  FrameType type = FrameType::kHello;
  uint8_t flags = 0;
  uint32_t payload_bytes = 0;
};

void put_frame_header(std::span<std::byte, kFrameHeaderBytes> out, const FrameHeader& h);
// The header, or one line saying what is wrong with it.
io::Result<FrameHeader> parse_frame_header(std::span<const std::byte, kFrameHeaderBytes> in,
                                           uint32_t max_payload_bytes);

struct Frame {
  FrameHeader header;
  std::vector<std::byte> payload;
};

// Cuts a byte stream into frames as the bytes arrive, in any pieces.
class FrameDecoder {
 public:
  explicit FrameDecoder(uint32_t max_payload_bytes) : max_payload_bytes_(max_payload_bytes) {}
  // Appends bytes received; an error once a header is refused (the decoder then stays failed).
  io::Status feed(std::span<const std::byte> bytes);
  // The next whole frame, if one is in.
  std::optional<Frame> next();
  // Bytes received but not yet returned as a frame (a stream that ends here is truncated).
  size_t pending_bytes() const { return buf_.size() - pos_; }

 private:
  io::Status decode();
  uint32_t max_payload_bytes_;
  std::vector<std::byte> buf_;
  size_t pos_ = 0;
  std::vector<Frame> ready_;
  size_t ready_pos_ = 0;
  std::optional<io::Error> failed_;
};

}  // namespace barge::transport
