#include "transport/net/frame.hpp"

#include <gtest/gtest.h>

#include <array>

namespace barge::transport {
namespace {

std::vector<std::byte> frame_bytes(FrameType type, uint8_t flags, const std::string& payload) {
  std::vector<std::byte> out(kFrameHeaderBytes);
  put_frame_header(std::span<std::byte, kFrameHeaderBytes>(out.data(), kFrameHeaderBytes),
                   {type, flags, static_cast<uint32_t>(payload.size())});
  for (char c : payload) out.push_back(static_cast<std::byte>(c));
  return out;
}

TEST(Frame, HeaderRoundTripsAndIsLittleEndian) {
  std::array<std::byte, kFrameHeaderBytes> h{};
  put_frame_header(h, {FrameType::kUnit, 0x81, 0x01020304});
  EXPECT_EQ(h[0], std::byte{0x04});
  EXPECT_EQ(h[3], std::byte{0x01});
  auto back = parse_frame_header(h, UINT32_MAX);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->type, FrameType::kUnit);
  EXPECT_EQ(back->flags, 0x81);
  EXPECT_EQ(back->payload_bytes, 0x01020304u);
}

TEST(Frame, BadHeadersAreRefusedWithAReason) {
  std::array<std::byte, kFrameHeaderBytes> h{};
  put_frame_header(h, {FrameType::kAck, 0, 100});
  EXPECT_FALSE(parse_frame_header(h, 99));  // over the limit
  EXPECT_NE(parse_frame_header(h, 99).error().message.find("limit of 99"), std::string::npos);
  EXPECT_TRUE(parse_frame_header(h, 100));
  for (uint8_t type : {0, kMaxFrameType + 1, 255}) {
    auto bad = h;
    bad[4] = std::byte{type};
    EXPECT_FALSE(parse_frame_header(bad, 1000)) << int(type);
  }
  auto reserved = h;
  reserved[7] = std::byte{1};
  EXPECT_FALSE(parse_frame_header(reserved, 1000));
}

TEST(Frame, DecoderCutsAStreamFedInAnyPieces) {
  std::vector<std::byte> stream;
  const std::vector<std::string> payloads = {"", "hello", std::string(70000, 'x'), "z"};
  for (size_t i = 0; i < payloads.size(); ++i) {
    auto f = frame_bytes(FrameType::kUnit, static_cast<uint8_t>(i), payloads[i]);
    stream.insert(stream.end(), f.begin(), f.end());
  }
  for (size_t piece : {size_t{1}, size_t{7}, size_t{8}, size_t{4096}, stream.size()}) {
    SCOPED_TRACE(piece);
    FrameDecoder d(1 << 20);
    std::vector<Frame> got;
    for (size_t at = 0; at < stream.size(); at += piece) {
      ASSERT_TRUE(d.feed(std::span(stream).subspan(at, std::min(piece, stream.size() - at))));
      while (auto f = d.next()) got.push_back(std::move(*f));
    }
    ASSERT_EQ(got.size(), payloads.size());
    for (size_t i = 0; i < got.size(); ++i) {
      EXPECT_EQ(got[i].header.flags, i);
      EXPECT_EQ(
          std::string(reinterpret_cast<const char*>(got[i].payload.data()), got[i].payload.size()),
          payloads[i]);
    }
    EXPECT_EQ(d.pending_bytes(), 0u);
  }
}

TEST(Frame, DecoderStopsAtABadHeaderAndAtTheLimitBeforeTheyArrive) {
  FrameDecoder d(1000);
  auto big = frame_bytes(FrameType::kUnit, 0, std::string(1001, 'b'));
  // Refused from the header alone, before the payload is received or allocated.
  EXPECT_FALSE(d.feed(std::span(big).first(kFrameHeaderBytes)));
  EXPECT_FALSE(d.feed(std::span(big).subspan(kFrameHeaderBytes, 10)));  // stays failed
  EXPECT_FALSE(d.next());
  // A truncated frame is pending, never returned.
  FrameDecoder t(1000);
  auto f = frame_bytes(FrameType::kDone, 0, "abcdef");
  ASSERT_TRUE(t.feed(std::span(f).first(f.size() - 1)));
  EXPECT_FALSE(t.next());
  EXPECT_EQ(t.pending_bytes(), f.size() - 1);
}

}  // namespace
}  // namespace barge::transport
