#pragma once
// TCP endpoints for send/recv: "HOST:PORT" and "[IPv6]:PORT" parsed, listening and
// connecting sockets, and a peer's printable address for error lines.

#include <cstdint>
#include <string>

#include "io/result.hpp"
#include "io/unique_fd.hpp"

namespace barge::transport {

struct Endpoint {
  std::string host;  // a name or a literal address, without brackets
  uint16_t port = 0;
  std::string text() const;  // "host:port", "[::1]:port"
};

// "HOST:PORT", "[V6]:PORT"; the error names `what` (e.g. "--listen").
io::Result<Endpoint> parse_endpoint(const std::string& text, const std::string& what);
// A listening socket bound to `at` (port 0: any free port; see local_port).
io::Result<io::UniqueFd> listen_tcp(const Endpoint& at, int backlog);
// A socket connected to `to`, trying each of its addresses within `timeout_ms` each.
io::Result<io::UniqueFd> connect_tcp(const Endpoint& to, int timeout_ms);
uint16_t local_port(int fd);
std::string peer_name(int fd);
// The local address of socket `fd` ("10.0.0.1", "::1"; "" when it has none).
std::string local_address(int fd);
// The local address this host sends from toward `host` (the route's source), found without
// sending anything.
io::Result<std::string> route_source(
    const std::string& host);  // "10.0.0.2:40512", "[::1]:40512", or "unknown peer"

}  // namespace barge::transport
