// Opening a send/recv connection from the sender's side: TCP connect, socket options, the
// TLS 1.3 handshake, then hello → welcome.
#pragma once

#include <memory>
#include <string>

#include "pipeline/remote/protocol.hpp"
#include "transport/net/endpoint.hpp"
#include "transport/net/frame_stream.hpp"

namespace barge::pipeline::remote {

struct ConnectOptions {
  transport::Endpoint to;
  std::string key;         // the key file's bytes
  std::string congestion;  // TCP_CONGESTION, "" for the system's
  int timeout_ms = 10000;
};

// Throws TlsError or std::runtime_error with one line naming the peer.
std::unique_ptr<transport::FrameStream> open_stream(const ConnectOptions& c, const Hello& hello,
                                                    Welcome& welcome);

// Socket options of every send/recv connection: TCP_NODELAY (frames are written whole),
// keepalive (a dead peer is noticed), and the congestion control asked for; a kernel that
// does not offer it is said once.
void tune_socket(int fd, const std::string& congestion);

}  // namespace barge::pipeline::remote
