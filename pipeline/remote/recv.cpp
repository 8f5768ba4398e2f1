// barge recv: the listening loop. Every connection is authenticated (TLS 1.3, PSK) on a
// thread of its own with a time limit; a control stream (stream 0) starts a session when
// none runs, a data stream joins its session. A failed handshake is logged with the peer's
// address and the loop goes on.
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <fstream>
#include <list>
#include <memory>
#include <mutex>
#include <thread>

#include "io/log.hpp"
#include "pipeline/core/manifest.hpp"
#include "pipeline/remote/recv_session.hpp"
#include "pipeline/remote/streams.hpp"
#include "transport/net/endpoint.hpp"
#include "transport/net/key_file.hpp"

namespace barge::pipeline::remote {
namespace {

using transport::FrameStream;
using transport::FrameType;

void set_timeout(int fd, int ms) {
  timeval tv{ms / 1000, (ms % 1000) * 1000};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

class Server {
 public:
  // `comm` with several ranks: rank 0 runs sessions across the ranks; the others take only
  // data streams, for the session rank 0 announced (attach).
  Server(const RecvOptions& opts, transport::TlsAuth auth, transport::Comm* comm,
         RankListener listener)
      : opts_(opts), auth_(std::move(auth)), comm_(comm), listener_(std::move(listener)) {}
  ~Server() { join_all(); }

  void attach(std::shared_ptr<RecvSession> s) {
    std::lock_guard lock(mu_);
    session_ = std::move(s);
  }
  void stop() { stop_ = true; }

  RunResult serve(int listen_fd) {
    while (!stop_.load()) {
      if (stop_signal().load() != 0) break;
      pollfd p{listen_fd, POLLIN, 0};
      if (::poll(&p, 1, 200) <= 0) continue;
      int fd = ::accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::lock_guard lock(mu_);
      threads_.emplace_back([this, fd] { connection(io::UniqueFd(fd)); });
    }
    join_all();
    std::lock_guard lock(mu_);
    if (!served_) {
      last_.exit_code = kExitFatal;
      if (last_.fatal.empty()) last_.fatal = "stopped by signal before any transfer";
    }
    return last_;
  }

 private:
  void join_all() {
    for (;;) {
      std::list<std::thread> done;
      {
        std::lock_guard lock(mu_);
        if (threads_.empty()) return;
        done.splice(done.end(), threads_);
      }
      for (auto& t : done)
        if (t.joinable()) t.join();
    }
  }

  // Handshake (within the time limit), hello, then: a session, a data stream of the running
  // session, or a refusal.
  void connection(io::UniqueFd fd) {
    const std::string peer = transport::peer_name(fd.get());
    std::unique_ptr<FrameStream> s;
    Hello hello;
    try {
      set_timeout(fd.get(), opts_.handshake_timeout_ms);
      tune_socket(fd.get(), "", opts_.io_timeout_ms);
      const int raw = fd.get();
      auto tls = transport::TlsStream::handshake(raw, transport::TlsRole::kServer, auth_, peer);
      s = std::make_unique<FrameStream>(std::move(fd), std::move(tls));
      auto h = decode_hello(s->expect(FrameType::kHello, kMaxControlPayload));
      if (!h) {
        refuse(*s, h.error().message);
        return;
      }
      hello = std::move(*h);
      set_timeout(raw, 0);
    } catch (const std::exception& ex) {
      io::log_warn("recv: " + peer + ": refused: " + ex.what());
      return;
    }
    if (hello.stream == 0) {
      run_session(std::move(s), std::move(hello));
    } else {
      join_session(std::move(s), hello);
    }
  }

  void refuse(FrameStream& s, const std::string& why) {
    io::log_warn("recv: " + s.peer() + ": refused: " + why);
    try {
      s.send(FrameType::kError, why);
    } catch (const std::exception&) {
    }
  }

  void run_session(std::unique_ptr<FrameStream> s, Hello hello) {
    std::shared_ptr<RecvSession> session;
    if (comm_ && comm_->rank() != 0) {
      refuse(*s, "this is rank " + std::to_string(comm_->rank()) +
                     " of a receiver: send to rank 0's endpoint");
      return;
    }
    {
      std::lock_guard lock(mu_);
      if (session_ || (opts_.once && served_)) {
        refuse(*s, "busy: another transfer into this destination is running; retry later");
        return;
      }
      session =
          std::make_shared<RecvSession>(opts_, std::move(s), std::move(hello), comm_, listener_);
      session_ = session;
    }
    RunResult r = session->run();
    std::lock_guard lock(mu_);
    session_.reset();
    last_ = std::move(r);
    served_ = true;
    if (opts_.once) stop_ = true;
  }

  void join_session(std::unique_ptr<FrameStream> s, const Hello& hello) {
    std::shared_ptr<RecvSession> session;
    {
      std::lock_guard lock(mu_);
      session = session_;
    }
    if (!session || session->id() != hello.session) {
      refuse(*s, "no transfer of session " + hello.session + " is waiting for streams");
      return;
    }
    FrameStream& raw = *s;
    try {
      raw.send(FrameType::kWelcome,
               encode_welcome(Welcome{kProtocolVersion, hello.session, capabilities(), {}}));
    } catch (const std::exception& ex) {
      io::log_warn(std::string("recv: ") + ex.what());
      return;
    }
    if (!session->add_stream(std::move(s), hello.stream))
      io::log_warn("recv: " + raw.peer() + ": data stream " + std::to_string(hello.stream) +
                   " not wanted");
  }

  const RecvOptions& opts_;
  const transport::TlsAuth auth_;
  transport::Comm* comm_;
  const RankListener listener_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::list<std::thread> threads_;
  std::shared_ptr<RecvSession> session_;
  RunResult last_;
  bool served_ = false;
};

// --psk-stdin: the first line of stdin, hex (send over ssh makes a fresh key per transfer).
io::Result<std::string> key_from_stdin() {
  std::string line;
  char c;
  while (line.size() < 2 * transport::kMaxKeyBytes && ::read(0, &c, 1) == 1 && c != '\n')
    line.push_back(c);
  auto key = from_hex(line);
  if (!key || key->size() < transport::kMinKeyBytes)
    return io::Error::plain("--psk-stdin: no key of at least " +
                            std::to_string(transport::kMinKeyBytes) + " bytes (hex) on stdin");
  return *key;
}

}  // namespace

io::Status validate(const RecvOptions& opts) {
  if (opts.destination.empty()) return io::Error::plain("recv: DST is required");
  if (opts.listen.empty()) return io::Error::plain("recv: --listen ADDR:PORT is required");
  if (opts.psk_stdin && (!opts.psk_file.empty() || !opts.cert_file.empty()))
    return io::Error::plain("recv: --psk-stdin goes alone (not with --psk-file or --cert)");
  CopyOptions c = opts;
  c.sources = {"-"};
  return validate(c);
}

RunResult run_recv(const RecvOptions& opts, transport::Comm* comm) {
  RunResult fail;
  fail.exit_code = kExitFatal;
  if (auto st = validate(opts); !st) {
    fail.fatal = st.error().message;
    return fail;
  }
  auto at = transport::parse_endpoint(opts.listen, "--listen");
  if (!at) {
    fail.fatal = at.error().message;
    return fail;
  }
  const bool ranks = comm && comm->size() > 1;
  if (ranks && opts.psk_stdin) {
    fail.fatal = "recv: --psk-stdin is for one rank (send over ssh), not under mpirun/srun";
    return fail;
  }
  // Rank k listens on PORT + k (a range to open in a firewall, as GridFTP's), or any free
  // port for 0.
  if (ranks && at->port != 0) {
    if (at->port + comm->rank() > 65535) {
      fail.fatal = "--listen " + opts.listen + ": port + ranks passes 65535";
      return fail;
    }
    at->port = static_cast<uint16_t>(at->port + comm->rank());
  }
  io::Result<transport::TlsAuth> auth = transport::TlsAuth{};
  if (opts.psk_stdin) {
    auto key = key_from_stdin();
    if (key) {
      auth->psk = std::move(*key);
      auth->plaintext = opts.plaintext;
    } else {
      auth = key.error();
    }
  } else {
    auth =
        load_auth(opts.psk_file, opts.cert_file, opts.key_file, opts.ca_file, "", opts.plaintext);
  }
  if (!auth) {
    fail.fatal = auth.error().message;
    return fail;
  }
  auto fd = transport::listen_tcp(*at, 128);
  if (!fd) {
    fail.fatal = fd.error().message;
    return fail;
  }
  const uint16_t port = transport::local_port(fd->get());
  const std::string who = ranks ? "recv: rank " + std::to_string(comm->rank()) : "recv";
  io::log_info(who + ": listening on " + transport::Endpoint{at->host, port}.text() + " into " +
               opts.destination);
  if (opts.plaintext && (!ranks || comm->rank() == 0))
    io::log_warn("recv: --insecure-no-encryption: data in the clear (every record authenticated)");
  const RankListener me{at->host, port};
  if (ranks && comm->rank() != 0) {
    Server server(opts, std::move(*auth), comm, me);
    std::thread accept([&] { server.serve(fd->get()); });
    RunResult last =
        follow_rank0(opts, *comm, me, [&](std::shared_ptr<RecvSession> s) { server.attach(s); });
    server.stop();
    accept.join();
    return last;
  }
  if (opts.port_file == "-") {
    std::printf("%u\n", port);
    std::fflush(stdout);
  } else if (!opts.port_file.empty()) {
    std::ofstream(opts.port_file) << port << "\n";
  }
  if (opts.psk_stdin) {
    // Started over ssh: the sender holds stdin open; its end (the ssh session gone) stops recv.
    std::thread([] {
      char buf[64];
      while (::read(0, buf, sizeof buf) > 0) {
      }
      if (stop_signal().load() == 0) stop_signal().store(SIGHUP);
    }).detach();
  }
  Server server(opts, std::move(*auth), comm, me);
  RunResult last = server.serve(fd->get());
  if (ranks) stop_ranks(*comm);
  return last;
}

}  // namespace barge::pipeline::remote
