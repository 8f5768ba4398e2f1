// --insecure-no-encryption: a send/recv connection in the clear, every byte still
// authenticated with the pre-shared key (HMAC-SHA256 and AES-GMAC from OpenSSL; nothing here
// is new cryptography). docs/PROTOCOL.md, "Plaintext with --insecure-no-encryption":
//   handshake  client: magic, 32-byte nonce; server: its nonce and an HMAC over both;
//              client: its HMAC over both. Each end checks the other's before anything else.
//   records    u32 length (at most 256 KiB), the bytes, AES-128-GMAC over (u32 length,
//              bytes) with the key of that direction and the record's sequence number as
//              IV; a record of length 0 is the clean end of the stream.
// Keys: HKDF-SHA256 of the PSK; the records' keys also take both nonces (fresh per
// connection), so a record cannot be replayed into another connection, nor reordered or
// dropped within one (the sequence).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "transport/net/tls.hpp"

namespace barge::transport {

// The oldest queued OpenSSL error, as text ("" when none); the queue is cleared.
std::string openssl_error();

// HKDF-SHA256 (RFC 5869) of `key` with `salt` and `info`: `n` bytes. Throws TlsError.
std::string hkdf_sha256(std::string_view key, std::string_view salt, std::string_view info,
                        size_t n = 32);

class PlainChannel {
 public:
  static constexpr size_t kMaxRecord = 256 << 10;

  // The handshake on `fd` (connected, blocking, not owned); throws TlsError naming `peer`.
  static std::unique_ptr<PlainChannel> handshake(int fd, TlsRole role, std::string_view key,
                                                 std::string peer);
  ~PlainChannel();

  void write_all(std::span<const std::byte> data);
  // As TlsStream's: 0 after the peer's end record; a cut throws LinkLost, a record whose MAC
  // fails (tampered, replayed, reordered) throws TlsError.
  size_t read_some(std::span<std::byte> into);
  void close();
  size_t pending() const { return in_.size() - in_at_; }
  const std::string& peer() const { return peer_; }

 private:
  struct Mac;
  PlainChannel(int fd, std::string peer);
  void send_record(std::span<const std::byte> data);
  bool read_record();  // false: the end record
  void raw_write(const void* p, size_t n);
  void raw_read(void* p, size_t n, const char* what);

  int fd_;
  std::string peer_;
  std::unique_ptr<Mac> out_mac_, in_mac_;
  uint64_t out_seq_ = 0, in_seq_ = 0;
  std::vector<std::byte> in_;
  size_t in_at_ = 0;
  bool in_ended_ = false;
};

}  // namespace barge::transport
