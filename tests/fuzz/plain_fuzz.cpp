// libFuzzer target: what a peer sends to --insecure-no-encryption's channel
// (transport/net/plain.cpp), over a real socket pair. The first byte picks the phase:
//   even: the bytes are a sender's handshake at the receiver;
//   odd:  after a real handshake with the key, a genuine record from the sender, then the
//         bytes. The genuine record must arrive intact; nothing after it may be taken unless
//         it is a record with a valid MAC (which the fuzzer cannot make), so every byte read
//         beyond the genuine record is an abort.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <thread>

#include "transport/net/plain.hpp"

using namespace barge::transport;

namespace {

const std::string kKey(32, 'f');

void check(bool ok) {
  if (!ok) std::abort();
}

void feed(int fd, const uint8_t* data, size_t size) {
  while (size > 0) {
    ssize_t k = ::send(fd, data, size, MSG_NOSIGNAL);
    if (k <= 0) return;
    data += k;
    size -= static_cast<size_t>(k);
  }
}

void handshake_only(const uint8_t* data, size_t size) {
  int sv[2];
  check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  feed(sv[0], data, std::min<size_t>(size, 4096));
  ::shutdown(sv[0], SHUT_WR);
  try {
    (void)PlainChannel::handshake(sv[1], TlsRole::kServer, kKey, "fuzz");
    std::abort();  // no input proves the key
  } catch (const TlsError&) {
  }
  ::close(sv[0]);
  ::close(sv[1]);
}

void after_handshake(const uint8_t* data, size_t size) {
  int sv[2];
  check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  std::unique_ptr<PlainChannel> server;
  std::thread t([&] { server = PlainChannel::handshake(sv[1], TlsRole::kServer, kKey, "fuzz"); });
  auto client = PlainChannel::handshake(sv[0], TlsRole::kClient, kKey, "fuzz");
  t.join();
  client->write_all(std::as_bytes(std::span("genuine", 7)));
  feed(sv[0], data, std::min<size_t>(size, 1 << 16));
  ::shutdown(sv[0], SHUT_WR);
  std::byte buf[7];
  size_t got = 0;
  while (got < sizeof buf) got += server->read_some(std::span(buf + got, sizeof buf - got));
  check(std::memcmp(buf, "genuine", 7) == 0);
  try {
    std::byte more[64];
    (void)server->read_some(more);
    std::abort();  // taken: a record (or an end) without a valid MAC
  } catch (const TlsError&) {
  }
  ::close(sv[0]);
  ::close(sv[1]);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] % 2 == 0)
    handshake_only(data + 1, size - 1);
  else
    after_handshake(data + 1, size - 1);
  return 0;
}
