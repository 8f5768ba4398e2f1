#include "transport/net/endpoint.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <memory>

namespace barge::transport {
namespace {

struct AddrFree {
  void operator()(addrinfo* a) const { freeaddrinfo(a); }
};

io::Result<std::unique_ptr<addrinfo, AddrFree>> resolve(const Endpoint& e, bool passive,
                                                        int socktype = SOCK_STREAM) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = socktype;
  hints.ai_flags = passive ? AI_PASSIVE : 0;
  addrinfo* res = nullptr;
  const std::string port = std::to_string(e.port);
  const int rc =
      ::getaddrinfo(e.host.empty() ? nullptr : e.host.c_str(), port.c_str(), &hints, &res);
  if (rc != 0) return io::Error::plain("resolve " + e.text() + ": " + gai_strerror(rc));
  return std::unique_ptr<addrinfo, AddrFree>(res);
}

std::string address_text(const sockaddr_storage& ss) {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    ::inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    ::inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(port);
  }
  return "unknown peer";
}

// connect() bounded by timeout_ms: non-blocking connect, poll, then blocking again.
int connect_within(int fd, const sockaddr* addr, socklen_t len, int timeout_ms) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) return errno;
  int err = 0;
  if (::connect(fd, addr, len) != 0) {
    err = errno;
    if (err == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      int n;
      do n = ::poll(&p, 1, timeout_ms);
      while (n < 0 && errno == EINTR);
      if (n == 0) return ETIMEDOUT;
      if (n < 0) return errno;
      socklen_t l = sizeof err;
      if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l) != 0) return errno;
    }
  }
  if (err == 0 && ::fcntl(fd, F_SETFL, flags) < 0) return errno;
  return err;
}

}  // namespace

std::string Endpoint::text() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

io::Result<Endpoint> parse_endpoint(const std::string& text, const std::string& what) {
  auto bad = [&](const std::string& why) {
    return io::Error::plain(what + " " + text + ": " + why + " (want HOST:PORT or [IPV6]:PORT)");
  };
  Endpoint e;
  std::string port;
  if (!text.empty() && text[0] == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return bad("unclosed [ or no port after ]");
    e.host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string::npos) return bad("no port");
    e.host = text.substr(0, colon);
    if (e.host.find(':') != std::string::npos) return bad("an IPv6 address needs brackets");
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535)
    return bad("port must be a number from 0 to 65535");
  e.port = static_cast<uint16_t>(value);
  return e;
}

namespace {

// A socket for each of `at`'s addresses in turn, handed to `use` (errno, 0 when it worked)
// until one works; the error names `what`.
template <class Use>
io::Result<io::UniqueFd> first_socket(const Endpoint& at, bool passive, const std::string& what,
                                      Use use) {
  auto addrs = resolve(at, passive);
  if (!addrs) return addrs.error();
  int last = EADDRNOTAVAIL;
  for (addrinfo* a = addrs->get(); a != nullptr; a = a->ai_next) {
    io::UniqueFd fd(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
    last = fd.valid() ? use(fd.get(), *a) : errno;
    if (last == 0) return fd;
  }
  return io::Error::from_errno(last, what + " " + at.text());
}

}  // namespace

io::Result<io::UniqueFd> listen_tcp(const Endpoint& at, int backlog) {
  return first_socket(at, true, "listen on", [&](int fd, const addrinfo& a) {
    const int one = 1;
    (void)::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    return ::bind(fd, a.ai_addr, a.ai_addrlen) == 0 && ::listen(fd, backlog) == 0 ? 0 : errno;
  });
}

io::Result<io::UniqueFd> connect_tcp(const Endpoint& to, int timeout_ms) {
  return first_socket(to, false, "connect to", [&](int fd, const addrinfo& a) {
    const int err = connect_within(fd, a.ai_addr, a.ai_addrlen, timeout_ms);
    const int one = 1;
    if (err == 0) (void)::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return err;
  });
}

uint16_t local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

std::string peer_name(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "unknown peer";
  return address_text(ss);
}

namespace {
// The host part of address_text: "10.0.0.2", "::1".
std::string host_text(const sockaddr_storage& ss) {
  auto ep = parse_endpoint(address_text(ss), "address");
  return ep ? ep->host : "";
}
}  // namespace

std::string local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "";
  return host_text(ss);
}

io::Result<std::string> route_source(const std::string& host) {
  auto ai = resolve(Endpoint{host, 9}, false, SOCK_DGRAM);
  if (!ai) return ai.error();
  for (addrinfo* a = ai->get(); a; a = a->ai_next) {
    io::UniqueFd fd(::socket(a->ai_family, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    // A datagram socket's connect sends nothing: it only picks the route and its source.
    if (!fd.valid() || ::connect(fd.get(), a->ai_addr, a->ai_addrlen) != 0) continue;
    std::string src = local_address(fd.get());
    if (!src.empty()) return src;
  }
  return io::Error::plain("no route toward " + host);
}

}  // namespace barge::transport
