#include "pipeline/bench/net_links.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "io/host_name.hpp"
#include "pipeline/core/wire.hpp"
#include "transport/net/endpoint.hpp"
#include "transport/net/tls.hpp"

namespace barge::pipeline::bench::detail {
namespace {

constexpr uint64_t kHelloMagic = 0x54454e4547524142ull;  // "BARGENET"

class MpiLink final : public Link {
 public:
  MpiLink(transport::Comm& comm, int peer, int tag) : comm_(comm), peer_(peer), tag_(tag) {}
  void send(std::span<const std::byte> b) override { comm_.send_bytes(peer_, tag_, b); }
  void recv(std::span<std::byte> b) override { comm_.recv_bytes(peer_, tag_, b); }

 private:
  transport::Comm& comm_;
  int peer_, tag_;
};

// A raw TCP connection: the network's and the kernel's ceiling, without barge's layers.
class TcpLink : public Link {
 public:
  explicit TcpLink(io::UniqueFd fd) : fd_(std::move(fd)), peer_(transport::peer_name(fd_.get())) {}
  void send(std::span<const std::byte> b) override {
    while (!b.empty()) {
      ssize_t n = ::send(fd_.get(), b.data(), b.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) fail("send to");
      b = b.subspan(static_cast<size_t>(n));
    }
  }
  void recv(std::span<std::byte> b) override {
    while (!b.empty()) {
      ssize_t n = ::recv(fd_.get(), b.data(), b.size(), 0);
      if (n < 0 && errno == EINTR) continue;
      if (n == 0) throw std::runtime_error(peer_ + " closed the stream");
      if (n < 0) fail("receive from");
      b = b.subspan(static_cast<size_t>(n));
    }
  }
  void abort() override { ::shutdown(fd_.get(), SHUT_RDWR); }
  int fd() const { return fd_.get(); }
  const std::string& peer() const { return peer_; }

 private:
  [[noreturn]] void fail(const char* what) {
    int e = errno;
    throw std::runtime_error(std::string(what) + " " + peer_ + ": " +
                             (e == EAGAIN ? "timed out" : std::strerror(e)));
  }
  io::UniqueFd fd_;
  std::string peer_;
};

// TLS 1.3 or the plaintext channel on a connection that was set up as a TcpLink.
class SecureLink final : public Link {
 public:
  SecureLink(std::unique_ptr<TcpLink> tcp, transport::TlsStream stream)
      : tcp_(std::move(tcp)), stream_(std::move(stream)) {}
  ~SecureLink() override = default;  // the stream goes before the socket it runs on
  void send(std::span<const std::byte> b) override { stream_.write_all(b); }
  void recv(std::span<std::byte> b) override { stream_.read_exact(b); }
  void abort() override { tcp_->abort(); }

 private:
  std::unique_ptr<TcpLink> tcp_;
  transport::TlsStream stream_;
};

void set_timeouts(int fd, int timeout_ms) {
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

std::unique_ptr<Link> secure(std::unique_ptr<TcpLink> tcp, const StreamSetup& s,
                             transport::TlsRole role) {
  if (s.transport == "tcp") return tcp;
  transport::TlsAuth auth;
  auth.psk = s.key;
  auth.plaintext = s.transport == "plain";
  int fd = tcp->fd();
  std::string peer = tcp->peer();
  auto stream = transport::TlsStream::handshake(fd, role, auth, peer);
  return std::make_unique<SecureLink>(std::move(tcp), std::move(stream));
}

bool parse_v4(const std::string& text, uint32_t* out) {
  in_addr a{};
  if (::inet_pton(AF_INET, text.c_str(), &a) != 1) return false;
  *out = ntohl(a.s_addr);
  return true;
}

}  // namespace

std::unique_ptr<Link> mpi_link(transport::Comm& comm, int peer, int tag) {
  return std::make_unique<MpiLink>(comm, peer, tag);
}

io::Status validate_cidr(const std::string& cidr) {
  size_t slash = cidr.find('/');
  uint32_t a = 0;
  int bits = -1;
  if (slash != std::string::npos) {
    try {
      size_t used = 0;
      bits = std::stoi(cidr.substr(slash + 1), &used);
      if (used != cidr.size() - slash - 1) bits = -1;
    } catch (const std::exception&) {
      bits = -1;
    }
  }
  if (slash == std::string::npos || bits < 0 || bits > 32 || !parse_v4(cidr.substr(0, slash), &a))
    return io::Error::plain("--net " + cidr + ": not an IPv4 network (example: 10.50.0.0/24)");
  return {};
}

bool in_cidr(const std::string& address, const std::string& cidr) {
  size_t slash = cidr.find('/');
  uint32_t net = 0, a = 0;
  if (slash == std::string::npos || !parse_v4(cidr.substr(0, slash), &net) ||
      !parse_v4(address, &a))
    return false;
  int bits = std::stoi(cidr.substr(slash + 1));
  uint32_t mask = bits == 0 ? 0 : ~uint32_t{0} << (32 - bits);
  return (a & mask) == (net & mask);
}

std::string ListenInfo::encode() const {
  WireWriter w;
  w.str(host);
  w.u32(port);
  w.u32(static_cast<uint32_t>(addresses.size()));
  for (const auto& a : addresses) w.str(a);
  return w.take();
}

ListenInfo ListenInfo::decode(const std::string& bytes) {
  WireReader r(bytes);
  ListenInfo info;
  info.host = r.str();
  info.port = static_cast<uint16_t>(r.u32());
  for (uint32_t n = r.u32(); n > 0; --n) info.addresses.push_back(r.str());
  return info;
}

io::Result<Listener> listen_for_streams(const std::string& cidr) {
  auto fd = transport::listen_tcp(transport::Endpoint{"0.0.0.0", 0}, 64);
  if (!fd) return fd.error();
  Listener l;
  l.info.host = io::host_name();
  l.info.port = transport::local_port(fd->get());
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return io::Error::from_errno(errno, "getifaddrs");
  std::vector<std::string> loopback;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || !(i->ifa_flags & IFF_UP)) continue;
    char text[INET_ADDRSTRLEN];
    ::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, text, sizeof text);
    if (!cidr.empty() && !in_cidr(text, cidr)) continue;
    (i->ifa_flags & IFF_LOOPBACK ? loopback : l.info.addresses).push_back(text);
  }
  ::freeifaddrs(list);
  l.info.addresses.insert(l.info.addresses.end(), loopback.begin(), loopback.end());
  if (l.info.addresses.empty())
    return io::Error::plain("--net " + cidr + ": no address of " + l.info.host + " is in it");
  l.fd = std::move(*fd);
  return l;
}

std::unique_ptr<Link> connect_stream(const ListenInfo& peer, const StreamSetup& s) {
  const bool same_host = peer.host == io::host_name();
  std::string tried;
  for (const auto& address : peer.addresses) {
    if (address.rfind("127.", 0) == 0 && !same_host) continue;
    auto fd = transport::connect_tcp(transport::Endpoint{address, peer.port},
                                     std::min(s.timeout_ms, 3000));
    if (!fd) {
      tried += (tried.empty() ? "" : "; ") + fd.error().message;
      continue;
    }
    set_timeouts(fd->get(), s.timeout_ms);
    auto tcp = std::make_unique<TcpLink>(std::move(*fd));
    WireWriter hello;
    hello.u64(kHelloMagic);
    hello.u32(s.sender_rank);
    hello.u32(s.run_id);
    tcp->send(std::as_bytes(std::span(hello.bytes())));
    return secure(std::move(tcp), s, transport::TlsRole::kClient);
  }
  throw std::runtime_error("no address of " + peer.host + " answers: " + tried);
}

std::unique_ptr<Link> accept_stream(int listen_fd, const StreamSetup& s) {
  set_timeouts(listen_fd, s.timeout_ms);  // accept() honours SO_RCVTIMEO
  for (;;) {
    int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0 && errno == EINTR) continue;
    if (fd < 0)
      throw std::runtime_error(std::string("accept: ") +
                               (errno == EAGAIN ? "no sender connected in time" : strerror(errno)));
    set_timeouts(fd, s.timeout_ms);
    auto tcp = std::make_unique<TcpLink>(io::UniqueFd(fd));
    std::string hello(16, '\0');
    try {
      tcp->recv(std::as_writable_bytes(std::span(hello)));
    } catch (const std::exception&) {
      continue;  // not one of ours
    }
    WireReader r(hello);
    uint64_t magic = r.u64();
    uint32_t rank = r.u32(), run = r.u32();
    if (magic != kHelloMagic || rank != s.sender_rank || run != s.run_id) continue;
    return secure(std::move(tcp), s, transport::TlsRole::kServer);
  }
}

}  // namespace barge::pipeline::bench::detail
