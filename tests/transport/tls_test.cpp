// TLS 1.3 with a pre-shared key over real TCP sockets on the loopback interface.
#include "transport/net/tls.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "io/unique_fd.hpp"
#include "tests/transport/tcp_pair.hpp"

namespace barge::transport {
namespace {

std::vector<std::byte> random_bytes(size_t n) {
  std::mt19937_64 rng(42);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

const std::string kKey(32, 'k');

TEST(Tls, SameKeyAuthenticatesAndCarriesBytesBothWays) {
  auto [c, s] = tcp_pair();
  const std::vector<std::byte> up = random_bytes(3 << 20), down = random_bytes(4097);
  std::string server_error;
  std::vector<std::byte> got_up(up.size());
  std::thread server([&, fd = s.get()] {
    try {
      TlsStream t = TlsStream::handshake_psk(fd, TlsRole::kServer, kKey, "client");
      t.read_exact(got_up);
      t.write_all(down);
      std::byte more[1];
      EXPECT_EQ(t.read_some(more), 0u);  // the client's close_notify
    } catch (const std::exception& e) {
      server_error = e.what();
    }
  });
  TlsStream t = TlsStream::handshake_psk(c.get(), TlsRole::kClient, kKey, "server");
  EXPECT_EQ(t.version(), "TLSv1.3");
  EXPECT_EQ(t.cipher(), "TLS_AES_128_GCM_SHA256");
  t.write_all(up);
  std::vector<std::byte> got_down(down.size());
  t.read_exact(got_down);
  t.close();
  server.join();
  EXPECT_EQ(server_error, "");
  EXPECT_EQ(got_up, up);
  EXPECT_EQ(got_down, down);
}

TEST(Tls, WrongKeyFailsBothSidesAndNothingIsDelivered) {
  auto [c, s] = tcp_pair();
  std::string server_error;
  bool server_got_stream = false;
  std::thread server([&, fd = s.get()] {
    try {
      TlsStream t = TlsStream::handshake_psk(fd, TlsRole::kServer, kKey, "10.0.0.2:4000");
      server_got_stream = true;
    } catch (const TlsError& e) {
      server_error = e.what();
    }
  });
  const std::string other(32, 'x');
  EXPECT_THROW(TlsStream::handshake_psk(c.get(), TlsRole::kClient, other, "server"), TlsError);
  c.reset();
  server.join();
  EXPECT_FALSE(server_got_stream);
  EXPECT_NE(server_error.find("10.0.0.2:4000"), std::string::npos) << server_error;
}

TEST(Tls, GarbageOrAnImmediateCloseIsRefusedByTheServer) {
  for (bool garbage : {true, false}) {
    SCOPED_TRACE(garbage);
    auto [c, s] = tcp_pair();
    if (garbage) {
      const auto junk = random_bytes(1000);
      ASSERT_EQ(::write(c.get(), junk.data(), junk.size()), 1000);
    }
    c.reset();
    try {
      TlsStream::handshake_psk(s.get(), TlsRole::kServer, kKey, "peer-x");
      ADD_FAILURE() << "handshake accepted";
    } catch (const TlsError& e) {
      EXPECT_NE(std::string(e.what()).find("peer-x"), std::string::npos) << e.what();
    }
  }
}

TEST(Tls, ACutConnectionIsAnErrorNotAnEndOfStream) {
  auto [c, s] = tcp_pair();
  std::thread server([&, fd = s.get()] {
    TlsStream t = TlsStream::handshake_psk(fd, TlsRole::kServer, kKey, "client");
    const auto some = random_bytes(100);
    t.write_all(some);
    ::shutdown(fd, SHUT_RDWR);  // no close_notify
  });
  TlsStream t = TlsStream::handshake_psk(c.get(), TlsRole::kClient, kKey, "server");
  std::vector<std::byte> buf(1000);
  server.join();
  EXPECT_THROW(t.read_exact(buf), TlsError);
}

TEST(Tls, KeyDerivationIsDeterministicAndKeyed) {
  EXPECT_EQ(derive_psk(kKey), derive_psk(kKey));
  EXPECT_EQ(derive_psk(kKey).size(), 32u);
  EXPECT_NE(derive_psk(kKey), derive_psk(std::string(32, 'j')));
}

}  // namespace
}  // namespace barge::transport
