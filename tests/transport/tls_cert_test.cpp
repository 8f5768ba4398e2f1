// TLS 1.3 with certificates (--cert/--key/--ca) over real loopback sockets. The test makes its
// own CA and certificates with OpenSSL: valid ones, an expired one, one from another CA, one
// for another host.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <thread>

#include "tests/test_tmpdir.hpp"
#include "tests/transport/tcp_pair.hpp"
#include "transport/net/tls.hpp"

namespace barge::transport {
namespace {

struct KeyPair {
  EVP_PKEY* key = nullptr;
  X509* cert = nullptr;
  ~KeyPair() {
    EVP_PKEY_free(key);
    X509_free(cert);
  }
};

void add_ext(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  ASSERT_NE(ext, nullptr);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `cn` (with subjectAltName `san`), signed by `ca` (self-signed when null),
// valid from `from_s` to `to_s` seconds from now.
void make_cert(KeyPair& out, const char* cn, const char* san, const KeyPair* ca, long from_s,
               long to_s) {
  out.key = EVP_EC_gen("P-256");
  out.cert = X509_new();
  X509_set_version(out.cert, 2);
  static long serial = 1;
  ASN1_INTEGER_set(X509_get_serialNumber(out.cert), serial++);
  X509_gmtime_adj(X509_getm_notBefore(out.cert), from_s);
  X509_gmtime_adj(X509_getm_notAfter(out.cert), to_s);
  X509_set_pubkey(out.cert, out.key);
  X509_NAME* name = X509_get_subject_name(out.cert);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn),
                             -1, -1, 0);
  X509* issuer = ca ? ca->cert : out.cert;
  X509_set_issuer_name(out.cert, X509_get_subject_name(issuer));
  add_ext(out.cert, issuer, NID_basic_constraints, ca ? "CA:FALSE" : "critical,CA:TRUE");
  if (!ca) add_ext(out.cert, issuer, NID_key_usage, "critical,keyCertSign,cRLSign");
  if (san) add_ext(out.cert, issuer, NID_subject_alt_name, san);
  ASSERT_GT(X509_sign(out.cert, ca ? ca->key : out.key, EVP_sha256()), 0);
}

class TlsCertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    make_cert(ca_, "barge test CA", nullptr, nullptr, -60, 3600);
    make_cert(other_ca_, "another CA", nullptr, nullptr, -60, 3600);
    make_cert(server_, "receiver", "IP:127.0.0.1,DNS:recv.example", &ca_, -60, 3600);
    make_cert(client_, "sender", nullptr, &ca_, -60, 3600);
    make_cert(expired_, "sender", nullptr, &ca_, -7200, -3600);
    make_cert(stranger_, "sender", nullptr, &other_ca_, -60, 3600);
    write_pem("ca.pem", ca_.cert, nullptr);
    for (auto [n, kp] : {std::pair{"server", &server_}, std::pair{"client", &client_},
                         std::pair{"expired", &expired_}, std::pair{"stranger", &stranger_}})
      write_pem(n, kp->cert, kp->key);
  }
  void write_pem(const std::string& name, X509* cert, EVP_PKEY* key) {
    FILE* f = std::fopen(path(name + (key ? ".crt" : "")).c_str(), "w");
    PEM_write_X509(f, cert);
    std::fclose(f);
    if (!key) return;
    f = std::fopen(path(name + ".key").c_str(), "w");
    PEM_write_PrivateKey(f, key, nullptr, nullptr, 0, nullptr, nullptr);
    std::fclose(f);
    ::chmod(path(name + ".key").c_str(), 0600);
  }
  std::string path(const std::string& n) const { return dir_.path() + "/" + n; }
  TlsCerts certs(const std::string& who, const std::string& server_name = "") const {
    return TlsCerts{path(who + ".crt"), path(who + ".key"), path("ca.pem"), server_name};
  }
  // Handshakes client against server; "" when both succeed, else the client's error (or
  // the server's, when only it failed).
  std::string handshake(const TlsCerts& client, const TlsCerts& server) {
    auto [c, s] = tcp_pair();
    std::string server_error;
    std::thread t([&, fd = s.get()] {
      try {
        TlsStream st = TlsStream::handshake_cert(fd, TlsRole::kServer, server, "client");
        std::byte b[1];
        st.read_exact(b);
      } catch (const std::exception& e) {
        server_error = e.what();
      }
    });
    std::string client_error;
    try {
      TlsStream st = TlsStream::handshake_cert(c.get(), TlsRole::kClient, client, "server");
      std::byte b[1] = {std::byte{1}};
      st.write_all(b);
    } catch (const std::exception& e) {
      client_error = e.what();
    }
    if (!server_error.empty()) ::shutdown(c.get(), SHUT_RDWR);
    t.join();
    return !client_error.empty() ? client_error : server_error;
  }

  test::TempDir dir_;
  KeyPair ca_, other_ca_, server_, client_, expired_, stranger_;
};

TEST_F(TlsCertTest, CertificatesSignedByTheCaAuthenticateBothWays) {
  EXPECT_EQ(handshake(certs("client", "127.0.0.1"), certs("server")), "");
  EXPECT_EQ(handshake(certs("client", "recv.example"), certs("server")), "");
}

TEST_F(TlsCertTest, AnExpiredClientCertificateIsRefused) {
  std::string e = handshake(certs("expired", "127.0.0.1"), certs("server"));
  EXPECT_NE(e, "");
}

TEST_F(TlsCertTest, ACertificateFromAnotherCaIsRefused) {
  EXPECT_NE(handshake(certs("stranger", "127.0.0.1"), certs("server")), "");
}

TEST_F(TlsCertTest, AServerThatDoesNotNameTheHostIsRefused) {
  std::string e = handshake(certs("client", "10.9.9.9"), certs("server"));
  EXPECT_NE(e.find("certificate"), std::string::npos) << e;
}

TEST_F(TlsCertTest, AClientWithoutACertificateIsRefused) {
  auto [c, s] = tcp_pair();
  std::string server_error;
  std::thread t([&, fd = s.get()] {
    try {
      TlsStream::handshake_cert(fd, TlsRole::kServer, certs("server"), "client");
    } catch (const std::exception& e) {
      server_error = e.what();
    }
  });
  // A PSK client offers no certificate at all (and refuses the server's certificate).
  EXPECT_THROW(TlsStream::handshake_psk(c.get(), TlsRole::kClient, std::string(32, 'k'), "server"),
               TlsError);
  t.join();
  EXPECT_NE(server_error.find("client"), std::string::npos) << server_error;
}

TEST_F(TlsCertTest, AMissingOrMismatchedFileIsNamed) {
  TlsCerts bad = certs("client");
  bad.cert = path("nope.crt");
  auto [c, s] = tcp_pair();
  try {
    TlsStream::handshake_cert(c.get(), TlsRole::kClient, bad, "server");
    ADD_FAILURE() << "accepted a missing certificate";
  } catch (const TlsError& e) {
    EXPECT_NE(std::string(e.what()).find("nope.crt"), std::string::npos) << e.what();
  }
  bad = certs("client");
  bad.key = path("server.key");
  try {
    TlsStream::handshake_cert(c.get(), TlsRole::kClient, bad, "server");
    ADD_FAILURE() << "accepted a key of another certificate";
  } catch (const TlsError& e) {
    EXPECT_NE(std::string(e.what()).find("server.key"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace barge::transport
