// The streams of barge bench net: one Link per stream, over MPI messages or a TCP connection
// (raw, TLS 1.3 with a pre-shared key, or the authenticated plaintext channel), and how the
// receiving ranks publish where they listen. Internal to pipeline/bench.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "io/result.hpp"
#include "io/unique_fd.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline::bench::detail {

// One stream's two directions. send and recv move exactly the span's bytes or throw
// std::runtime_error naming the peer.
class Link {
 public:
  virtual ~Link() = default;
  virtual void send(std::span<const std::byte> bytes) = 0;
  virtual void recv(std::span<std::byte> into) = 0;
  // Breaks the connection so that a peer blocked on it fails at once (after an error here).
  virtual void abort() {}
};

std::unique_ptr<Link> mpi_link(transport::Comm& comm, int peer, int tag);

// IPv4 "a.b.c.d/n": true when `address` lies in it. validate_cidr names the flag.
io::Status validate_cidr(const std::string& cidr);
bool in_cidr(const std::string& address, const std::string& cidr);

// Where a receiving rank listens: its host name, a port, and its IPv4 addresses (only those
// in `cidr` when it is set; loopback last).
struct ListenInfo {
  std::string host;
  uint16_t port = 0;
  std::vector<std::string> addresses;
  std::string encode() const;
  static ListenInfo decode(const std::string& bytes);  // throws on malformed bytes
};

struct Listener {
  io::UniqueFd fd;
  ListenInfo info;
};
io::Result<Listener> listen_for_streams(const std::string& cidr);

// What both ends of a TCP stream agree on before any data: the transport ("tcp", "tls",
// "plain"), the key (TLS and plain), the sender's rank and the run, checked by the receiver.
struct StreamSetup {
  std::string transport;
  std::string key;
  uint32_t sender_rank = 0;
  uint32_t run_id = 0;
  int timeout_ms = 10000;
};

// The sender's end: the first of the peer's addresses that answers (loopback only when the
// peer is on this host), the hello, the handshake.
std::unique_ptr<Link> connect_stream(const ListenInfo& peer, const StreamSetup& s);
// The receiver's end: one connection from `listen_fd` within the timeout, checked.
std::unique_ptr<Link> accept_stream(int listen_fd, const StreamSetup& s);

}  // namespace barge::pipeline::bench::detail
