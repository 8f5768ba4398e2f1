#pragma once
// One send/recv connection: a TCP socket, its TLS stream, and frames (frame.hpp) on it. One
// thread at a time (an SSL object is not safe for a read and a write at once); abort() from
// any thread. The socket is owned.
#include <cstddef>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/unique_fd.hpp"
#include "transport/net/frame.hpp"
#include "transport/net/tls.hpp"

namespace barge::transport {

class FrameStream {
 public:
  FrameStream(io::UniqueFd fd, TlsStream tls) : fd_(std::move(fd)), tls_(std::move(tls)) {}

  // One frame: the header, then each part in order (payload = the parts joined). Throws
  // TlsError.
  void send(FrameType type, std::initializer_list<std::span<const std::byte>> parts,
            uint8_t flags = 0);
  void send(FrameType type, std::span<const std::span<const std::byte>> parts, uint8_t flags = 0);
  void send(FrameType type, std::string_view payload, uint8_t flags = 0);
  // The next frame's header, checked against `max_payload_bytes`; throws TlsError (a cut
  // stream, a refused header: the error names the peer).
  FrameHeader read_header(uint32_t max_payload_bytes);
  // Exactly into.size() bytes of the current frame's payload.
  void read(std::span<std::byte> into) { tls_.read_exact(into); }
  // A whole payload of `h.payload_bytes` as a string (control frames).
  std::string read_payload(const FrameHeader& h);
  // The next frame, which must be of type `want` (an error frame's line is thrown as such).
  std::string expect(FrameType want, uint32_t max_payload_bytes);

  // Whether a read would find bytes now (buffered in TLS, or waiting on the socket).
  bool readable_now() const;
  int fd() const { return fd_.get(); }
  const std::string& peer() const { return tls_.peer(); }
  void close() { tls_.close(); }
  // Ends the connection at once: blocked reads and writes on it (other threads) fail.
  void abort();

 private:
  io::UniqueFd fd_;
  TlsStream tls_;
};

}  // namespace barge::transport
