// libFuzzer target: the send/recv frame decoder (transport/net/frame.cpp). Bytes fed in
// pieces (sizes from the input's first byte) must decode as they do fed whole; every frame
// returned re-encodes to its own bytes, within the limit.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "transport/net/frame.hpp"

using namespace barge::transport;

namespace {
constexpr uint32_t kLimit = 1 << 16;

std::vector<Frame> decode(const std::byte* data, size_t size, size_t piece, bool& ok) {
  FrameDecoder d(kLimit);
  std::vector<Frame> out;
  ok = true;
  for (size_t at = 0; at < size && ok; at += piece) {
    ok = static_cast<bool>(d.feed({data + at, std::min(piece, size - at)}));
    while (auto f = d.next()) out.push_back(std::move(*f));
  }
  return out;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t piece = 1 + data[0] % 17;
  const auto* bytes = reinterpret_cast<const std::byte*>(data + 1);
  bool ok_whole = false, ok_pieces = false;
  std::vector<Frame> whole = decode(bytes, size - 1, size, ok_whole);
  std::vector<Frame> pieces = decode(bytes, size - 1, piece, ok_pieces);
  if (ok_whole != ok_pieces || whole.size() != pieces.size()) std::abort();
  size_t at = 0;
  for (size_t i = 0; i < whole.size(); ++i) {
    const Frame& f = whole[i];
    if (f.payload != pieces[i].payload || f.header.payload_bytes > kLimit ||
        f.payload.size() != f.header.payload_bytes)
      std::abort();
    std::byte h[kFrameHeaderBytes];
    put_frame_header(h, f.header);
    if (std::memcmp(h, bytes + at, kFrameHeaderBytes) != 0) std::abort();
    at += kFrameHeaderBytes + f.payload.size();
  }
  return 0;
}
