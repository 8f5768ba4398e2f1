#pragma once
// One authenticated, encrypted stream over a connected socket: TLS 1.3 through OpenSSL
// (user-space TLS: this kernel has no kTLS). Mutual authentication by a pre-shared key
// (RFC 8446 external PSK with an ephemeral ECDHE exchange, psk_dhe_ke: a leaked key does not
// expose earlier transfers). Nothing from the peer is handed to the caller before the
// handshake has authenticated it; a failed handshake throws TlsError naming the peer.

#include <openssl/types.h>

#include <cstddef>
#include <memory>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

namespace barge::transport {

class TlsError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The connection broke under an established stream: closed without close_notify, reset, or
// silent past its timeout (TCP_USER_TIMEOUT, keepalive). A retry may succeed.
class LinkLost : public TlsError {
 public:
  using TlsError::TlsError;
};

// The peer answered with an error frame (it refused, or stopped, and said why): not a
// broken connection.
class PeerRefusal : public TlsError {
 public:
  using TlsError::TlsError;
};

enum class TlsRole { kClient, kServer };

// Certificate authentication (--cert/--key/--ca): each end shows its certificate chain and
// checks the other's against the CA bundle (expired, unsigned or missing: refused). The
// client also checks that the server's certificate names `server_name` (a DNS name or an IP
// address in its subjectAltName) when that is set.
struct TlsCerts {
  std::string cert;  // PEM certificate chain
  std::string key;   // PEM private key
  std::string ca;    // PEM CA certificates that sign the peers'
  std::string server_name;
};

// How a stream authenticates: a pre-shared key's bytes, or certificates.
struct TlsAuth {
  std::string psk;
  std::optional<TlsCerts> certs;
  // --insecure-no-encryption (with a PSK): no TLS; the bytes travel in the clear, each
  // record authenticated with AES-GMAC (transport/net/plain.hpp).
  bool plaintext = false;
};

class PlainChannel;

class TlsStream {
 public:
  // Runs the handshake on `fd` (connected, blocking; the stream does not own it) with the
  // pre-shared key `key` (the raw bytes of a key file; the TLS key is derived from it with
  // HKDF-SHA256). `peer` names the other end in errors ("10.0.0.2:40512").
  static TlsStream handshake_psk(int fd, TlsRole role, std::string_view key, std::string peer);
  // The same with certificates: mutual, TLS 1.3, the verification's reason in the error.
  static TlsStream handshake_cert(int fd, TlsRole role, const TlsCerts& certs, std::string peer);
  // --insecure-no-encryption: the key proven by HMAC, records authenticated, not encrypted.
  static TlsStream handshake_plain(int fd, TlsRole role, std::string_view key, std::string peer);
  static TlsStream handshake(int fd, TlsRole role, const TlsAuth& auth, std::string peer) {
    if (auth.plaintext) return handshake_plain(fd, role, auth.psk, std::move(peer));
    return auth.certs ? handshake_cert(fd, role, *auth.certs, std::move(peer))
                      : handshake_psk(fd, role, auth.psk, std::move(peer));
  }

  TlsStream(TlsStream&&) noexcept;
  TlsStream& operator=(TlsStream&&) noexcept;
  ~TlsStream();

  // Writes every byte, or throws TlsError.
  void write_all(std::span<const std::byte> data);
  // Reads what is there (at least one byte); 0 when the peer closed the stream cleanly
  // (close_notify). A connection cut without close_notify throws: a truncated stream is
  // never taken for a complete one.
  size_t read_some(std::span<std::byte> into);
  // Reads exactly into.size() bytes; throws on a close or an error before then.
  void read_exact(std::span<std::byte> into);
  // Sends close_notify (the peer's read_some then returns 0).
  void close();

  // Decrypted bytes already buffered (a poll on the socket does not see them).
  size_t pending() const;
  const std::string& peer() const;
  std::string version() const;  // "TLSv1.3"
  std::string cipher() const;   // "TLS_AES_128_GCM_SHA256"

 private:
  struct Ssl;
  explicit TlsStream(std::unique_ptr<Ssl> ssl);
  explicit TlsStream(std::unique_ptr<PlainChannel> plain);
  // Throws TlsError, or LinkLost when `io` (a read or write of the established stream)
  // failed because the connection broke.
  [[noreturn]] void fail(const std::string& what, int rc, bool io = false) const;
  static void ignore_sigpipe();
  std::unique_ptr<Ssl> ssl_;
  std::unique_ptr<PlainChannel> plain_;  // instead of ssl_ with --insecure-no-encryption
};

// Derives the TLS pre-shared key from a key file's bytes (HKDF-SHA256, fixed salt and
// label): the same file gives both ends the same 32 bytes.
std::string derive_psk(std::string_view key);

}  // namespace barge::transport
