// --insecure-no-encryption's channel (transport/net/plain.hpp) over real loopback sockets: the
// key proven both ways, bytes carried in authenticated records, and every altered, replayed,
// truncated or foreign stream refused.
#include "transport/net/plain.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <thread>
#include <vector>

#include "tests/transport/tcp_pair.hpp"

namespace barge::transport {
namespace {

const std::string kKey(32, 'k');

std::vector<std::byte> some_bytes(size_t n) {
  std::mt19937_64 rng(7);
  std::vector<std::byte> v(n);
  for (auto& b : v) b = static_cast<std::byte>(rng());
  return v;
}

TEST(Plain, SameKeyCarriesBytesBothWaysAndEndsCleanly) {
  auto [c, s] = tcp_pair();
  const std::vector<std::byte> up = some_bytes(PlainChannel::kMaxRecord * 3 + 17);
  std::vector<std::byte> got(up.size());
  std::string server_error;
  std::thread server([&, fd = s.get()] {
    try {
      TlsStream t = TlsStream::handshake_plain(fd, TlsRole::kServer, kKey, "client");
      t.read_exact(got);
      std::byte one{};
      if (t.read_some(std::span(&one, 1)) != 0) server_error = "no clean end";
      t.write_all(std::as_bytes(std::span("ok", 2)));
    } catch (const std::exception& ex) {
      server_error = ex.what();
    }
  });
  TlsStream t = TlsStream::handshake_plain(c.get(), TlsRole::kClient, kKey, "server");
  EXPECT_EQ(t.cipher(), "none");
  t.write_all(up);
  t.close();
  char ok[2];
  t.read_exact(std::as_writable_bytes(std::span(ok, 2)));
  server.join();
  EXPECT_EQ(server_error, "");
  EXPECT_EQ(got, up);
  EXPECT_EQ(std::string(ok, 2), "ok");
}

// A plaintext receiver on fd, in a thread: its handshake's error lands in `error`, and a
// refused connection is closed, as the receiver does.
std::thread refusing_server(int fd, std::string& error) {
  return std::thread([fd, &error] {
    try {
      TlsStream::handshake_plain(fd, TlsRole::kServer, kKey, "client");
    } catch (const TlsError& ex) {
      error = ex.what();
      ::shutdown(fd, SHUT_RDWR);
    }
  });
}

TEST(Plain, AWrongKeyOrAForeignClientIsRefused) {
  {
    auto [c, s] = tcp_pair();
    std::string server_error;
    std::thread server = refusing_server(s.get(), server_error);
    EXPECT_THROW(TlsStream::handshake_plain(c.get(), TlsRole::kClient, std::string(32, 'x'), "s"),
                 TlsError);
    ::shutdown(c.get(), SHUT_RDWR);
    server.join();
    EXPECT_NE(server_error, "");
  }
  {
    // A TLS client (or anything else) at a plaintext receiver.
    auto [c, s] = tcp_pair();
    std::string server_error;
    std::thread server = refusing_server(s.get(), server_error);
    EXPECT_THROW(TlsStream::handshake_psk(c.get(), TlsRole::kClient, kKey, "s"), TlsError);
    server.join();
    EXPECT_NE(server_error.find("--insecure-no-encryption"), std::string::npos) << server_error;
  }
}

// client ↔ relay ↔ server: the relay passes the handshake through, then the test plays with
// the client's first record before the server reads it.
class PlainRelay : public ::testing::Test {
 protected:
  void SetUp() override {
    auto a = tcp_pair();
    auto b = tcp_pair();
    client_fd_ = std::move(a.first);
    relay_c_ = std::move(a.second);
    relay_s_ = std::move(b.first);
    server_fd_ = std::move(b.second);
    std::thread relay([&] {  // the handshake's three messages, in turn
      pass(relay_c_.get(), relay_s_.get(), 16 + 32);
      pass(relay_s_.get(), relay_c_.get(), 32 + 32);
      pass(relay_c_.get(), relay_s_.get(), 32);
    });
    std::thread server([&] {
      server_ = std::make_unique<TlsStream>(
          TlsStream::handshake_plain(server_fd_.get(), TlsRole::kServer, kKey, "client"));
    });
    client_ = std::make_unique<TlsStream>(
        TlsStream::handshake_plain(client_fd_.get(), TlsRole::kClient, kKey, "server"));
    relay.join();
    server.join();
    client_->write_all(std::as_bytes(std::span("hello", 5)));
    record_.resize(4 + 5 + 16);  // length, "hello", GMAC tag
    take(relay_c_.get(), record_);
  }
  static void pass(int from, int to, size_t n) {
    std::vector<char> buf(n);
    size_t got = 0;
    while (got < n) {
      ssize_t k = ::read(from, buf.data() + got, n - got);
      if (k <= 0) return;
      got += static_cast<size_t>(k);
    }
    (void)!::write(to, buf.data(), n);
  }
  static void take(int fd, std::vector<char>& into) {
    size_t got = 0;
    while (got < into.size()) {
      ssize_t k = ::read(fd, into.data() + got, into.size() - got);
      ASSERT_GT(k, 0);
      got += static_cast<size_t>(k);
    }
  }
  void forward(const std::vector<char>& bytes) {
    ASSERT_EQ(::write(relay_s_.get(), bytes.data(), bytes.size()),
              static_cast<ssize_t>(bytes.size()));
  }
  std::string read5() {
    char buf[5];
    server_->read_exact(std::as_writable_bytes(std::span(buf, 5)));
    return std::string(buf, 5);
  }

  io::UniqueFd client_fd_, relay_c_, relay_s_, server_fd_;
  std::unique_ptr<TlsStream> client_, server_;
  std::vector<char> record_;
};

TEST_F(PlainRelay, TheRecordAsSentArrives) {
  forward(record_);
  EXPECT_EQ(read5(), "hello");
}

TEST_F(PlainRelay, AnAlteredByteIsRefused) {
  record_[6] ^= 1;
  forward(record_);
  EXPECT_THROW(read5(), TlsError);
}

TEST_F(PlainRelay, AReplayedRecordIsRefused) {
  forward(record_);
  forward(record_);
  EXPECT_EQ(read5(), "hello");
  EXPECT_THROW(read5(), TlsError);
}

TEST_F(PlainRelay, ATruncatedStreamIsALostLinkNotAnEnd) {
  forward(std::vector<char>(record_.begin(), record_.begin() + 20));
  ::shutdown(relay_s_.get(), SHUT_WR);
  EXPECT_THROW(read5(), LinkLost);
}

TEST_F(PlainRelay, AnOversizedRecordHeaderIsRefused) {
  std::vector<char> bad(4);
  const uint32_t len = PlainChannel::kMaxRecord + 1;
  std::memcpy(bad.data(), &len, 4);
  forward(bad);
  EXPECT_THROW(read5(), TlsError);
}

}  // namespace
}  // namespace barge::transport
