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
  transport::TlsAuth auth;  // the key's bytes, or certificates
  std::string congestion;   // TCP_CONGESTION, "" for the system's
  int timeout_ms = 10000;
  int io_timeout_ms = 30000;  // see tune_socket
};

// --psk-file, or --cert/--key/--ca (all three, not with --psk-file). A key file that group or
// others can read is refused, as ssh does. `server_name`: what the client expects the
// server's certificate to name.
// `plaintext` (--insecure-no-encryption) needs the key: certificates are refused with it.
io::Result<transport::TlsAuth> load_auth(const std::string& psk_file, const std::string& cert,
                                         const std::string& key, const std::string& ca,
                                         const std::string& server_name, bool plaintext);

// Throws TlsError or std::runtime_error with one line naming the peer.
std::unique_ptr<transport::FrameStream> open_stream(const ConnectOptions& c, const Hello& hello,
                                                    Welcome& welcome);

// Socket options of every send/recv connection: TCP_NODELAY (frames are written whole), the
// congestion control asked for (a kernel that does not offer it is said once), and a dead
// link noticed within `io_timeout_ms` (--io-timeout): TCP_USER_TIMEOUT for unacknowledged
// data, keepalive probes from a third of it for an idle connection.
void tune_socket(int fd, const std::string& congestion, int io_timeout_ms);

}  // namespace barge::pipeline::remote
