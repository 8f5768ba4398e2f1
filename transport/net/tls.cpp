#include "transport/net/tls.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <csignal>
#include <cstring>
#include <mutex>

#include "transport/net/plain.hpp"

namespace barge::transport {
namespace {

constexpr std::string_view kPskIdentity = "barge-psk-v1";
constexpr std::string_view kHkdfSalt = "barge send/recv";
constexpr std::string_view kHkdfInfo = "tls13 external psk v1";
// The PSK's session needs a cipher whose hash is the PSK's: SHA-256.
constexpr unsigned char kAes128GcmSha256[] = {0x13, 0x01};

struct CtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};

// What a handshake's callbacks need, reached through the SSL's app data.
struct PskState {
  std::string psk;
  bool identity_matched = false;
};

SSL_SESSION* psk_session(SSL* ssl, const std::string& psk) {
  const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, kAes128GcmSha256);
  if (cipher == nullptr) return nullptr;
  SSL_SESSION* s = SSL_SESSION_new();
  if (s == nullptr) return nullptr;
  if (SSL_SESSION_set1_master_key(s, reinterpret_cast<const unsigned char*>(psk.data()),
                                  psk.size()) != 1 ||
      SSL_SESSION_set_cipher(s, cipher) != 1 ||
      SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION) != 1) {
    SSL_SESSION_free(s);
    return nullptr;
  }
  return s;
}

int use_session(SSL* ssl, const EVP_MD* md, const unsigned char** id, size_t* id_len,
                SSL_SESSION** sess) {
  auto* st = static_cast<PskState*>(SSL_get_app_data(ssl));
  const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, kAes128GcmSha256);
  if (md != nullptr && cipher != nullptr && md != SSL_CIPHER_get_handshake_digest(cipher)) {
    *sess = nullptr;  // a retry after HelloRetryRequest with another hash: offer nothing
    return 1;
  }
  *sess = psk_session(ssl, st->psk);
  if (*sess == nullptr) return 0;
  *id = reinterpret_cast<const unsigned char*>(kPskIdentity.data());
  *id_len = kPskIdentity.size();
  return 1;
}

int find_session(SSL* ssl, const unsigned char* id, size_t id_len, SSL_SESSION** sess) {
  auto* st = static_cast<PskState*>(SSL_get_app_data(ssl));
  *sess = nullptr;
  if (id_len != kPskIdentity.size() || std::memcmp(id, kPskIdentity.data(), id_len) != 0)
    return 1;  // unknown identity: no PSK, and with no certificate the handshake fails
  st->identity_matched = true;
  *sess = psk_session(ssl, st->psk);
  return *sess == nullptr ? 0 : 1;
}

std::unique_ptr<SSL_CTX, CtxFree> make_ctx(TlsRole role) {
  std::unique_ptr<SSL_CTX, CtxFree> ctx(
      SSL_CTX_new(role == TlsRole::kClient ? TLS_client_method() : TLS_server_method()));
  if (!ctx) throw TlsError("TLS context: " + openssl_error());
  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_ciphersuites(ctx.get(), "TLS_AES_128_GCM_SHA256") != 1)
    throw TlsError("TLS context: " + openssl_error());
  // No session tickets: every connection authenticates with the key itself.
  SSL_CTX_set_num_tickets(ctx.get(), 0);
  SSL_CTX_set_options(ctx.get(), SSL_OP_NO_TICKET);
  return ctx;
}

}  // namespace

struct TlsStream::Ssl {
  std::unique_ptr<SSL_CTX, CtxFree> ctx;
  SSL* ssl = nullptr;
  PskState psk;
  std::string peer;
  ~Ssl() { SSL_free(ssl); }
};

std::string derive_psk(std::string_view key) { return hkdf_sha256(key, kHkdfSalt, kHkdfInfo); }

void TlsStream::ignore_sigpipe() {
  // A peer that goes away must fail the write that meets it, not kill the process.
  static std::once_flag no_sigpipe;
  std::call_once(no_sigpipe, [] { (void)std::signal(SIGPIPE, SIG_IGN); });
}

TlsStream TlsStream::handshake_psk(int fd, TlsRole role, std::string_view key, std::string peer) {
  ignore_sigpipe();
  auto s = std::make_unique<Ssl>();
  s->peer = std::move(peer);
  s->psk.psk = derive_psk(key);
  s->ctx = make_ctx(role);
  s->ssl = SSL_new(s->ctx.get());
  if (s->ssl == nullptr || SSL_set_fd(s->ssl, fd) != 1)
    throw TlsError("TLS with " + s->peer + ": " + openssl_error());
  SSL_set_app_data(s->ssl, &s->psk);
  if (role == TlsRole::kClient) {
    SSL_set_psk_use_session_callback(s->ssl, use_session);
    // A server that answers with a certificate instead of the key is refused: with no
    // trust store, every certificate fails verification.
    SSL_set_verify(s->ssl, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_set_psk_find_session_callback(s->ssl, find_session);
  }
  TlsStream t(std::move(s));
  const int rc = role == TlsRole::kClient ? SSL_connect(t.ssl_->ssl) : SSL_accept(t.ssl_->ssl);
  if (rc != 1) {
    if (role == TlsRole::kServer && !t.ssl_->psk.identity_matched)
      t.fail("TLS handshake with " + t.ssl_->peer + " (no barge pre-shared key offered)", rc);
    t.fail("TLS handshake with " + t.ssl_->peer + " (wrong key?)", rc);
  }
  if (SSL_session_reused(t.ssl_->ssl) != 1)  // the key was not what authenticated the peer
    throw TlsError("TLS handshake with " + t.ssl_->peer + ": the peer did not use the key");
  return t;
}

namespace {

// The certificate, its key and the CA bundle into the context; each file named on failure.
void load_certs(SSL_CTX* ctx, const TlsCerts& c) {
  if (SSL_CTX_use_certificate_chain_file(ctx, c.cert.c_str()) != 1)
    throw TlsError("--cert " + c.cert + ": " + openssl_error());
  if (SSL_CTX_use_PrivateKey_file(ctx, c.key.c_str(), SSL_FILETYPE_PEM) != 1)
    throw TlsError("--key " + c.key + ": " + openssl_error());
  if (SSL_CTX_check_private_key(ctx) != 1)
    throw TlsError("--key " + c.key + ": does not match --cert " + c.cert);
  if (SSL_CTX_load_verify_locations(ctx, c.ca.c_str(), nullptr) != 1)
    throw TlsError("--ca " + c.ca + ": " + openssl_error());
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
}

bool is_ip_literal(const std::string& host) {
  return host.find(':') != std::string::npos ||
         host.find_first_not_of("0123456789.") == std::string::npos;
}

}  // namespace

TlsStream TlsStream::handshake_cert(int fd, TlsRole role, const TlsCerts& certs, std::string peer) {
  ignore_sigpipe();
  auto s = std::make_unique<Ssl>();
  s->peer = std::move(peer);
  s->ctx = make_ctx(role);
  load_certs(s->ctx.get(), certs);
  s->ssl = SSL_new(s->ctx.get());
  if (s->ssl == nullptr || SSL_set_fd(s->ssl, fd) != 1)
    throw TlsError("TLS with " + s->peer + ": " + openssl_error());
  if (role == TlsRole::kClient && !certs.server_name.empty()) {
    X509_VERIFY_PARAM* param = SSL_get0_param(s->ssl);
    const bool ok = is_ip_literal(certs.server_name)
                        ? X509_VERIFY_PARAM_set1_ip_asc(param, certs.server_name.c_str()) == 1
                        : SSL_set1_host(s->ssl, certs.server_name.c_str()) == 1;
    if (!ok) throw TlsError("TLS with " + s->peer + ": bad server name " + certs.server_name);
  }
  TlsStream t(std::move(s));
  const int rc = role == TlsRole::kClient ? SSL_connect(t.ssl_->ssl) : SSL_accept(t.ssl_->ssl);
  if (rc != 1) {
    const long v = SSL_get_verify_result(t.ssl_->ssl);
    std::string why = v != X509_V_OK
                          ? std::string(" (certificate: ") + X509_verify_cert_error_string(v) + ")"
                          : "";
    t.fail("TLS handshake with " + t.ssl_->peer + why, rc);
  }
  return t;
}

TlsStream::TlsStream(std::unique_ptr<Ssl> ssl) : ssl_(std::move(ssl)) {}
TlsStream::TlsStream(std::unique_ptr<PlainChannel> plain) : plain_(std::move(plain)) {}

TlsStream TlsStream::handshake_plain(int fd, TlsRole role, std::string_view key, std::string peer) {
  ignore_sigpipe();
  return TlsStream(PlainChannel::handshake(fd, role, key, std::move(peer)));
}
TlsStream::TlsStream(TlsStream&&) noexcept = default;
TlsStream& TlsStream::operator=(TlsStream&&) noexcept = default;
TlsStream::~TlsStream() = default;

void TlsStream::fail(const std::string& what, int rc, bool io) const {
  const int err = SSL_get_error(ssl_->ssl, rc);
  const int saved_errno = errno;
  const bool eof = ERR_GET_REASON(ERR_peek_error()) == SSL_R_UNEXPECTED_EOF_WHILE_READING;
  std::string why = openssl_error();
  errno = saved_errno;
  if (why.empty()) {
    if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && errno == 0))
      why = "connection closed by the peer";
    else if (err == SSL_ERROR_SYSCALL)
      why = std::strerror(errno);
    else
      why = "TLS error " + std::to_string(err);
  }
  if (io && (eof || err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN))
    throw LinkLost(what + ": " + why);
  throw TlsError(what + ": " + why);
}

void TlsStream::write_all(std::span<const std::byte> data) {
  if (plain_) return plain_->write_all(data);
  while (!data.empty()) {
    size_t done = 0;
    const int rc = SSL_write_ex(ssl_->ssl, data.data(), data.size(), &done);
    if (rc != 1) fail("send to " + ssl_->peer, rc, true);
    data = data.subspan(done);
  }
}

size_t TlsStream::read_some(std::span<std::byte> into) {
  if (plain_) return plain_->read_some(into);
  size_t got = 0;
  const int rc = SSL_read_ex(ssl_->ssl, into.data(), into.size(), &got);
  if (rc == 1) return got;
  if (SSL_get_error(ssl_->ssl, rc) == SSL_ERROR_ZERO_RETURN) return 0;  // close_notify
  fail("receive from " + ssl_->peer, rc, true);
}

void TlsStream::read_exact(std::span<std::byte> into) {
  while (!into.empty()) {
    const size_t got = read_some(into);
    if (got == 0)
      throw LinkLost("receive from " + peer() + ": stream closed " + std::to_string(into.size()) +
                     " bytes early");
    into = into.subspan(got);
  }
}

void TlsStream::close() {
  if (plain_) return plain_->close();
  if (ssl_ && ssl_->ssl) (void)SSL_shutdown(ssl_->ssl);  // close_notify; the peer's is not awaited
}

size_t TlsStream::pending() const {
  return plain_ ? plain_->pending() : static_cast<size_t>(SSL_pending(ssl_->ssl));
}
const std::string& TlsStream::peer() const { return plain_ ? plain_->peer() : ssl_->peer; }

std::string TlsStream::version() const {
  return plain_ ? "none (HMAC-SHA256 records)" : SSL_get_version(ssl_->ssl);
}
std::string TlsStream::cipher() const {
  return plain_ ? "none" : SSL_CIPHER_get_name(SSL_get_current_cipher(ssl_->ssl));
}

}  // namespace barge::transport
