#include "transport/net/plain.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace barge::transport {
namespace {

constexpr std::string_view kMagic("barge-hmac-v1\n\0\0", 16);
constexpr size_t kNonce = 32, kTag = 32, kRecordTag = 16;

}  // namespace

std::string openssl_error() {
  const unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return {};
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

std::string hkdf_sha256(std::string_view key, std::string_view salt, std::string_view info,
                        size_t n) {
  std::string out(n, '\0');
  EVP_PKEY_CTX* pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  size_t len = out.size();
  const bool ok =
      pctx != nullptr && EVP_PKEY_derive_init(pctx) == 1 &&
      EVP_PKEY_CTX_set_hkdf_md(pctx, EVP_sha256()) == 1 &&
      EVP_PKEY_CTX_set1_hkdf_salt(pctx, reinterpret_cast<const unsigned char*>(salt.data()),
                                  static_cast<int>(salt.size())) == 1 &&
      EVP_PKEY_CTX_set1_hkdf_key(pctx, reinterpret_cast<const unsigned char*>(key.data()),
                                 static_cast<int>(key.size())) == 1 &&
      EVP_PKEY_CTX_add1_hkdf_info(pctx, reinterpret_cast<const unsigned char*>(info.data()),
                                  static_cast<int>(info.size())) == 1 &&
      EVP_PKEY_derive(pctx, reinterpret_cast<unsigned char*>(out.data()), &len) == 1 &&
      len == out.size();
  EVP_PKEY_CTX_free(pctx);
  if (!ok) throw TlsError("derive a key: " + openssl_error());
  return out;
}

// A MAC with one key (OpenSSL's EVP_MAC), over pieces: HMAC-SHA256 for the handshake's
// proofs, AES-128-GMAC for records (the GCM authenticator alone: several times faster than
// HMAC-SHA256 with AES-NI and PCLMUL, and as fast as TLS's own). GMAC needs a fresh IV per
// message under one key: the record's sequence number, the keys being fresh per connection
// and direction.
struct PlainChannel::Mac {
  enum Kind { kHmac, kGmac };
  Mac(Kind k, std::string secret) : kind(k), key(std::move(secret)) {
    mac = EVP_MAC_fetch(nullptr, kind == kHmac ? "HMAC" : "GMAC", nullptr);
    ctx = mac ? EVP_MAC_CTX_new(mac) : nullptr;
    if (!ctx) throw TlsError("MAC: " + openssl_error());
    if (kind == kGmac) key.resize(16);
  }
  ~Mac() {
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
  }
  std::string over(std::initializer_list<std::span<const std::byte>> parts, uint64_t iv_seq = 0) {
    char digest[] = "SHA256", cipher[] = "AES-128-GCM";
    unsigned char iv[12] = {};
    std::memcpy(iv, &iv_seq, sizeof iv_seq);
    OSSL_PARAM hmac_params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                                OSSL_PARAM_construct_end()};
    OSSL_PARAM gmac_params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_CIPHER, cipher, 0),
                                OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_IV, iv, sizeof iv),
                                OSSL_PARAM_construct_end()};
    std::string out(kind == kHmac ? 32 : 16, '\0');
    size_t len = 0;
    bool ok = EVP_MAC_init(ctx, reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                           kind == kHmac ? hmac_params : gmac_params) == 1;
    for (const auto& p : parts)
      ok = ok && EVP_MAC_update(ctx, reinterpret_cast<const unsigned char*>(p.data()), p.size());
    ok = ok &&
         EVP_MAC_final(ctx, reinterpret_cast<unsigned char*>(out.data()), &len, out.size()) == 1;
    if (!ok || len != out.size()) throw TlsError("MAC: " + openssl_error());
    return out;
  }
  Kind kind;
  std::string key;
  EVP_MAC* mac = nullptr;
  EVP_MAC_CTX* ctx = nullptr;
};

namespace {

std::span<const std::byte> bytes_of(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

bool same_tag(std::string_view a, std::string_view b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

PlainChannel::PlainChannel(int fd, std::string peer) : fd_(fd), peer_(std::move(peer)) {}
PlainChannel::~PlainChannel() = default;

void PlainChannel::raw_write(const void* p, size_t n) {
  const char* at = static_cast<const char*>(p);
  while (n > 0) {
    ssize_t k = ::send(fd_, at, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) throw LinkLost("send to " + peer_ + ": " + std::strerror(errno));
    at += k;
    n -= static_cast<size_t>(k);
  }
}

void PlainChannel::raw_read(void* p, size_t n, const char* what) {
  char* at = static_cast<char*>(p);
  while (n > 0) {
    ssize_t k = ::recv(fd_, at, n, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) throw LinkLost("receive from " + peer_ + ": " + std::strerror(errno));
    if (k == 0) throw LinkLost("receive from " + peer_ + ": stream closed in " + what);
    at += k;
    n -= static_cast<size_t>(k);
  }
}

std::unique_ptr<PlainChannel> PlainChannel::handshake(int fd, TlsRole role, std::string_view key,
                                                      std::string peer) {
  std::unique_ptr<PlainChannel> c(new PlainChannel(fd, std::move(peer)));
  const std::string what = "handshake with " + c->peer_ + " (plaintext, HMAC)";
  Mac auth(Mac::kHmac, hkdf_sha256(key, "barge send/recv", "hmac handshake v1"));
  std::string mine(kNonce, '\0'), theirs(kNonce, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(mine.data()), kNonce) != 1)
    throw TlsError(what + ": no random bytes");
  const bool client = role == TlsRole::kClient;
  const std::string& nc = client ? mine : theirs;
  const std::string& ns = client ? theirs : mine;
  std::string tag(kTag, '\0');
  try {
    if (client) {
      c->raw_write(kMagic.data(), kMagic.size());
      c->raw_write(mine.data(), kNonce);
      c->raw_read(theirs.data(), kNonce, "the handshake");
      c->raw_read(tag.data(), kTag, "the handshake");
      if (!same_tag(tag, auth.over({bytes_of("server"), bytes_of(nc), bytes_of(ns)})))
        throw TlsError(what + ": the receiver did not prove the key (wrong key?)");
      c->raw_write(auth.over({bytes_of("client"), bytes_of(nc), bytes_of(ns)}).data(), kTag);
    } else {
      std::string magic(kMagic.size(), '\0');
      c->raw_read(magic.data(), magic.size(), "the handshake");
      if (magic != kMagic)
        throw TlsError(what + ": not a barge sender with --insecure-no-encryption");
      c->raw_read(theirs.data(), kNonce, "the handshake");
      c->raw_write(mine.data(), kNonce);
      c->raw_write(auth.over({bytes_of("server"), bytes_of(nc), bytes_of(ns)}).data(), kTag);
      c->raw_read(tag.data(), kTag, "the handshake");
      if (!same_tag(tag, auth.over({bytes_of("client"), bytes_of(nc), bytes_of(ns)})))
        throw TlsError(what + ": the sender did not prove the key (wrong key?)");
    }
  } catch (const LinkLost& ex) {
    throw TlsError(what + ": " + ex.what());  // not an established stream yet
  }
  const std::string salt = nc + ns;
  auto c2s = std::make_unique<Mac>(Mac::kGmac,
                                   hkdf_sha256(key, salt, "gmac records client to server v1", 16));
  auto s2c = std::make_unique<Mac>(Mac::kGmac,
                                   hkdf_sha256(key, salt, "gmac records server to client v1", 16));
  c->out_mac_ = client ? std::move(c2s) : std::move(s2c);
  c->in_mac_ = client ? std::move(s2c) : std::move(c2s);
  return c;
}

void PlainChannel::send_record(std::span<const std::byte> data) {
  const uint32_t len = static_cast<uint32_t>(data.size());
  const uint64_t seq = out_seq_++;
  std::string tag = out_mac_->over({std::as_bytes(std::span(&len, 1)), data}, seq);
  raw_write(&len, sizeof len);
  raw_write(data.data(), data.size());
  raw_write(tag.data(), tag.size());
}

void PlainChannel::write_all(std::span<const std::byte> data) {
  while (!data.empty()) {
    const size_t n = std::min(data.size(), kMaxRecord);
    send_record(data.first(n));
    data = data.subspan(n);
  }
}

bool PlainChannel::read_record() {
  uint32_t len = 0;
  raw_read(&len, sizeof len, "a record's header");
  if (len > kMaxRecord)
    throw TlsError("from " + peer_ + ": a record of " + std::to_string(len) + " bytes");
  in_.resize(len);
  in_at_ = 0;
  raw_read(in_.data(), len, "a record");
  std::string tag(kRecordTag, '\0');
  raw_read(tag.data(), kRecordTag, "a record's MAC");
  const uint64_t seq = in_seq_++;
  if (!same_tag(tag, in_mac_->over({std::as_bytes(std::span(&len, 1)), std::span(in_)}, seq)))
    throw TlsError("from " + peer_ + ": a record failed its HMAC (altered, replayed or reordered)");
  return len > 0;
}

size_t PlainChannel::read_some(std::span<std::byte> into) {
  if (into.empty()) return 0;
  while (pending() == 0) {
    if (in_ended_) return 0;
    if (!read_record()) in_ended_ = true;
  }
  const size_t n = std::min(into.size(), pending());
  std::memcpy(into.data(), in_.data() + in_at_, n);
  in_at_ += n;
  return n;
}

void PlainChannel::close() {
  try {
    send_record({});
  } catch (const TlsError&) {
  }
}

}  // namespace barge::transport
