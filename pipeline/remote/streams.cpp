#include "pipeline/remote/streams.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "io/log.hpp"
#include "transport/net/key_file.hpp"

namespace barge::pipeline::remote {

void tune_socket(int fd, const std::string& congestion, int io_timeout_ms) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  if (io_timeout_ms > 0) {
    unsigned user_timeout = static_cast<unsigned>(io_timeout_ms);
    int idle = std::max(1, io_timeout_ms / 3000), interval = std::max(1, io_timeout_ms / 6000);
    int count = 3;
    ::setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
    ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
  }
  if (congestion.empty()) return;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, congestion.data(),
                   static_cast<socklen_t>(congestion.size())) != 0) {
    static std::atomic<bool> said{false};
    if (!said.exchange(true))
      io::log_warn("--congestion " + congestion + ": not available here (" + std::strerror(errno) +
                   "); the system's default is used");
  }
}

io::Result<transport::TlsAuth> load_auth(const std::string& psk_file, const std::string& cert,
                                         const std::string& key, const std::string& ca,
                                         const std::string& server_name, bool plaintext) {
  transport::TlsAuth auth;
  auth.plaintext = plaintext;
  const bool any_cert = !cert.empty() || !key.empty() || !ca.empty();
  if (plaintext && any_cert)
    return io::Error::plain(
        "--insecure-no-encryption: authenticates with a key (--psk-file), not certificates");
  if (!psk_file.empty() && any_cert)
    return io::Error::plain("--psk-file and --cert/--key/--ca: give one or the other");
  if (!any_cert) {
    if (psk_file.empty()) return io::Error::plain("--psk-file or --cert/--key/--ca is required");
    auto bytes = transport::read_key_file(psk_file);
    if (!bytes) return bytes.error();
    auth.psk = std::move(*bytes);
    return auth;
  }
  if (cert.empty() || key.empty() || ca.empty())
    return io::Error::plain("--cert, --key and --ca go together");
  // The private key: private to its owner, like a PSK file.
  if (auto k = transport::read_key_file(key); !k) return k.error();
  for (const auto& [flag, path] : {std::pair{"--cert", &cert}, std::pair{"--ca", &ca}}) {
    if (::access(path->c_str(), R_OK) != 0)
      return io::Error::from_errno(errno, std::string(flag) + " " + *path);
  }
  auth.certs = transport::TlsCerts{cert, key, ca, server_name};
  return auth;
}

std::unique_ptr<transport::FrameStream> open_stream(const ConnectOptions& c, const Hello& hello,
                                                    Welcome& welcome) {
  auto fd = transport::connect_tcp(c.to, c.timeout_ms);
  if (!fd) throw transport::LinkLost(fd.error().message);  // no connection (yet): retried
  tune_socket(fd->get(), c.congestion, c.io_timeout_ms);
  auto tls =
      transport::TlsStream::handshake(fd->get(), transport::TlsRole::kClient, c.auth, c.to.text());
  auto s = std::make_unique<transport::FrameStream>(std::move(*fd), std::move(tls));
  s->send(transport::FrameType::kHello, encode_hello(hello));
  auto w = decode_welcome(s->expect(transport::FrameType::kWelcome, kMaxControlPayload));
  if (!w) throw std::runtime_error(c.to.text() + ": " + w.error().message);
  if (w->session != hello.session)
    throw std::runtime_error(c.to.text() + ": welcome for another session");
  welcome = std::move(*w);
  return s;
}

}  // namespace barge::pipeline::remote
