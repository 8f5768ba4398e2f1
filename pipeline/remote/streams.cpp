#include "pipeline/remote/streams.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "io/log.hpp"

namespace barge::pipeline::remote {

void tune_socket(int fd, const std::string& congestion) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  if (congestion.empty()) return;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, congestion.data(),
                   static_cast<socklen_t>(congestion.size())) != 0) {
    static std::atomic<bool> said{false};
    if (!said.exchange(true))
      io::log_warn("--congestion " + congestion + ": not available here (" + std::strerror(errno) +
                   "); the system's default is used");
  }
}

std::unique_ptr<transport::FrameStream> open_stream(const ConnectOptions& c, const Hello& hello,
                                                    Welcome& welcome) {
  auto fd = transport::connect_tcp(c.to, c.timeout_ms);
  if (!fd) throw std::runtime_error(fd.error().message);
  tune_socket(fd->get(), c.congestion);
  auto tls = transport::TlsStream::handshake_psk(fd->get(), transport::TlsRole::kClient, c.key,
                                                 c.to.text());
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
