#include "transport/net/endpoint.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>

namespace barge::transport {
namespace {

TEST(Endpoint, ParsesNamesAddressesAndBracketedIpv6) {
  auto a = parse_endpoint("data-mover-3:7000", "--listen");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "data-mover-3");
  EXPECT_EQ(a->port, 7000);
  auto b = parse_endpoint("[fe80::1]:65535", "--listen");
  ASSERT_TRUE(b);
  EXPECT_EQ(b->host, "fe80::1");
  EXPECT_EQ(b->text(), "[fe80::1]:65535");
  auto any = parse_endpoint(":0", "--listen");
  ASSERT_TRUE(any);
  EXPECT_EQ(any->host, "");
}

TEST(Endpoint, RefusesBadTextNamingTheArgument) {
  for (const char* bad :
       {"host", "host:", "host:65536", "host:12x", "::1:80", "[::1]80", "[::1", "host:-1"}) {
    auto e = parse_endpoint(bad, "--listen");
    ASSERT_FALSE(e) << bad;
    EXPECT_NE(e.error().message.find("--listen " + std::string(bad)), std::string::npos)
        << e.error().message;
  }
}

TEST(Endpoint, ListenConnectAndNameThePeer) {
  auto lst = listen_tcp({"127.0.0.1", 0}, 4);
  ASSERT_TRUE(lst) << lst.error().message;
  const uint16_t port = local_port(lst->get());
  ASSERT_NE(port, 0);
  auto c = connect_tcp({"127.0.0.1", port}, 5000);
  ASSERT_TRUE(c) << c.error().message;
  io::UniqueFd s(::accept4(lst->get(), nullptr, nullptr, SOCK_CLOEXEC));
  ASSERT_TRUE(s.valid());
  EXPECT_EQ(peer_name(c->get()), "127.0.0.1:" + std::to_string(port));
  EXPECT_EQ(peer_name(s.get()), "127.0.0.1:" + std::to_string(local_port(c->get())));
}

TEST(Endpoint, ARefusedConnectionNamesTheEndpoint) {
  uint16_t port = 0;
  {
    auto lst = listen_tcp({"127.0.0.1", 0}, 1);
    ASSERT_TRUE(lst);
    port = local_port(lst->get());
  }  // closed: nothing listens there now
  auto c = connect_tcp({"127.0.0.1", port}, 5000);
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("connect to 127.0.0.1:" + std::to_string(port)),
            std::string::npos)
      << c.error().message;
}

}  // namespace
}  // namespace barge::transport
