// A connected pair of loopback TCP sockets for the transport tests.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <utility>

#include "io/unique_fd.hpp"

namespace barge::transport {

// A connected pair of TCP sockets on 127.0.0.1, each with a 10 s receive timeout so that a
// broken test fails instead of hanging.
inline std::pair<io::UniqueFd, io::UniqueFd> tcp_pair() {
  io::UniqueFd lst(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  EXPECT_EQ(::bind(lst.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::listen(lst.get(), 1), 0);
  EXPECT_EQ(::getsockname(lst.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  io::UniqueFd c(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(c.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  io::UniqueFd s(::accept4(lst.get(), nullptr, nullptr, SOCK_CLOEXEC));
  timeval tv{10, 0};
  for (int fd : {c.get(), s.get()}) ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return {std::move(c), std::move(s)};
}

}  // namespace barge::transport
