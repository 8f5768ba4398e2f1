// recv under mpirun/srun: every rank listens, the sender's data streams are spread over the
// ranks (docs/PROTOCOL.md, "Ranks"), and the copy runs as the multi-rank copy's phases
// (pipeline/dist) with the bytes from the network. Rank 0 holds the control stream: it admits
// and places the transfer, takes the plan, compares DST for a sync, creates the directories,
// and announces the session to the other ranks, which keep a copy of the plan to write what
// they are sent. Large files are written by every rank into one part created by rank 0 and put
// in place by it once every rank is done and every chunk is known to have arrived somewhere.
#include <fcntl.h>
#include <unistd.h>

#include <oneapi/tbb/global_control.h>
#include <algorithm>
#include <stdexcept>

#include "io/log.hpp"
#include "io/metadata.hpp"
#include "pipeline/core/wire.hpp"
#include "pipeline/dist/dist_internal.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/engine/dir_pass.hpp"
#include "pipeline/remote/recv_session.hpp"
#include "transport/net/endpoint.hpp"

namespace barge::pipeline::remote {

using transport::FrameType;

namespace {
// rank 0 → rank k: 'R' + the sender's host (reply with the endpoint it reaches you at),
// 'S' + a session announcement (take part), 'Q' (the receiver stops).
constexpr int kTagRecv = 301;
constexpr int kTagRecvRoute = 302;  // rank k → rank 0: "HOST:PORT"

bool wildcard(const std::string& host) {
  return host.empty() || host == "0.0.0.0" || host == "::" || host == "*";
}

std::string host_of(const std::string& peer) {
  auto ep = transport::parse_endpoint(peer, "peer");
  return ep ? ep->host : peer;
}

unsigned session_threads(const RecvOptions& opts, const transport::Comm& comm, size_t streams) {
  return std::max<unsigned>(engine_threads(opts.threads, comm.size()),
                            static_cast<unsigned>(streams) + 2);
}
}  // namespace

std::string rank_endpoint(const RankListener& me, const std::string& toward) {
  std::string host = me.host;
  if (wildcard(host)) {
    auto src = transport::route_source(toward);
    host = src ? *src : "127.0.0.1";
  }
  return transport::Endpoint{host, me.port}.text();
}

// Rank 0: every rank's endpoint for this sender, rank 0's own first (the address its control
// stream reached, for a wildcard listener).
std::vector<std::string> RecvSession::rank_endpoints() {
  const std::string peer = host_of(control_->peer());
  std::vector<std::string> out(static_cast<size_t>(comm_->size()));
  RankListener me = listener_;
  if (wildcard(me.host)) me.host = transport::local_address(control_->fd());
  out[0] = transport::Endpoint{me.host, me.port}.text();
  for (int k = 1; k < comm_->size(); ++k) comm_->send(k, kTagRecv, "R" + peer);
  for (int k = 1; k < comm_->size(); ++k) {
    int source = 0;
    std::string ep = comm_->recv(kTagRecvRoute, &source);
    if (source > 0 && source < comm_->size()) out[static_cast<size_t>(source)] = std::move(ep);
  }
  return out;
}

// The session as the other ranks need it: the hello, the placement, the plan.
std::string RecvSession::announcement() const {
  WireWriter w;
  w.str(encode_hello(hello_));
  w.u32(static_cast<uint32_t>(plan_.roots.size()));
  for (const Root& r : plan_.roots) {
    w.str(r.src);
    w.str(r.dst);
    w.str(r.manifest_prefix);
  }
  size_t next = 0;
  w.str(encode_entries(plan_, next, SIZE_MAX, hello_.sync.checksum ? &sums_ : nullptr,
                       hello_.xattrs));
  return w.take();
}

std::shared_ptr<RecvSession> RecvSession::follow(const RecvOptions& opts, transport::Comm& comm,
                                                 std::string_view announcement) {
  std::shared_ptr<RecvSession> s(new RecvSession(opts, comm));
  try {
    WireReader r(announcement);
    auto hello = decode_hello(r.str());
    if (!hello) return nullptr;
    s->hello_ = std::move(*hello);
    for (uint32_t n = r.u32(); n > 0; --n) {
      Root root;
      root.src = r.str();
      root.dst = r.str();
      root.manifest_prefix = r.str();
      s->plan_.roots.push_back(std::move(root));
    }
    PlanBuilder builder(s->plan_, s->hello_, s->hello_.sources, &s->sums_);
    if (!builder.add_batch(r.str()) || !builder.finish()) return nullptr;
  } catch (const std::exception&) {
    return nullptr;
  }
  s->set_copy_options();
  s->size_streams();
  return s;
}

// Rank 0: directories made (a failed one leaves its contents out), the flags of what the
// copy's phases do with each entry.
namespace {
std::vector<uint8_t> create_dirs(const Plan& plan, std::vector<uint8_t> flags, ErrorList& errors) {
  DirPass pass(plan, [&](const std::string& err) { errors.add(err); });
  pass.run(
      [&](uint32_t index, int parent_fd, bool parent_ok) -> int {
        const Entry& e = plan.entries[index];
        if (!parent_ok) {
          flags[index] = 0;
          return -1;
        }
        if (e.meta.type != io::FileType::kDirectory) return -1;
        if (!make_dst_dir(parent_fd, plan, e, errors)) {
          flags[index] = 0;
          return -1;
        }
        int fd = ::openat(parent_fd, plan.name(e).c_str(),
                          O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
          errors.add(io::Error::from_errno(errno, "open directory " + plan.dst_path(e)).message);
          flags[index] = 0;
        }
        return fd;
      },
      nullptr);
  return flags;
}

std::vector<uint8_t> copy_flags(const Plan& plan) {
  std::vector<uint8_t> flags(plan.entries.size());
  for (size_t i = 0; i < plan.entries.size(); ++i) {
    switch (plan.entries[i].meta.type) {
      case io::FileType::kRegular:
        flags[i] = kActTransfer;
        break;
      case io::FileType::kDirectory:
        flags[i] = kActMeta;
        break;
      default:
        flags[i] = kActCreate;
    }
  }
  return flags;
}
}  // namespace

// Rank 0, the plan accepted: the sync's verdicts, the announcement, then the copy's phases on
// every rank.
RunResult RecvSession::copy_ranked(std::chrono::steady_clock::time_point t0) {
  ErrorList errors;
  const bool sync = hello_.sync.enabled;
  if (sync) verdicts_ = compare_with_dst(plan_, hello_.sync, sums_, io::can_chown(), errors);
  for (const io::Error& e : plan_.walk_errors) errors.add(e.message);
  const std::string journal_dir = Journal::dir_for(copy_opts_.destination);
  if (!hello_.resume && !sync) {
    if (auto st = Journal::save_roots(journal_dir, plan_.roots); !st)
      io::log_warn(st.error().message + " (a stopped transfer will not be resumable)");
  }
  const std::string a = "S" + announcement();
  for (int k = 1; k < comm_->size(); ++k) comm_->send(k, kTagRecv, a);
  announced_ = true;
  flags_ = create_dirs(plan_, sync ? verdicts_.actions : copy_flags(plan_), errors);
  NetTransfer net{
      [this](CopyContext& ctx, io::BufferPool& pool, unsigned threads, const SharedFiles& shared) {
        transfer_ranked(ctx, pool, threads, shared);
      },
      2, streams_.size() + 2, false};
  RunResult r = run_phases(*comm_, copy_opts_, Plan(plan_), flags_, t0, 0.0, errors,
                           session_threads(opts_, *comm_, streams_.size()), sync, nullptr, &net);
  if (!r.resumable) Journal::remove(journal_dir);
  r.bytes_skipped = skipped_bytes_;
  if (sync) r.sync = RunResult::SyncCounts{verdicts_.deleted, verdicts_.unchanged};
  return r;
}

RunResult RecvSession::run_follower() {
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism,
                         session_threads(opts_, *comm_, streams_.size()));
  Plan mirror = plan_;
  mirror.files.clear();  // rank 0 lists, creates and counts every entry
  std::vector<uint8_t> flags(mirror.entries.size(), 0);
  ErrorList errors;
  NetTransfer net{
      [this](CopyContext& ctx, io::BufferPool& pool, unsigned threads, const SharedFiles& shared) {
        transfer_ranked(ctx, pool, threads, shared);
      },
      2, streams_.size() + 2, true};
  RunResult r;
  try {
    r = run_phases(*comm_, copy_opts_, std::move(mirror), std::move(flags),
                   std::chrono::steady_clock::now(), 0.0, errors,
                   session_threads(opts_, *comm_, streams_.size()), hello_.sync.enabled, nullptr,
                   &net);
  } catch (const std::exception& ex) {
    io::log_error("recv: rank " + std::to_string(comm_->rank()) + ": " + ex.what() +
                  "; stopping every rank of the job");
    comm_->abort_job(kExitFatal);
  }
  {
    std::lock_guard lock(mu_);
    accepting_ = false;
  }
  for (auto& s : streams_)
    if (s) s->abort();
  return r;
}

// Rank 0: the ready frame (files not wanted, chunks held), and where each shared large file
// lives in the context (`local`).
std::string RecvSession::ready_for_ranks(const SharedFiles& shared, std::vector<uint32_t>& local) {
  Ready ready;
  std::vector<uint8_t> large(plan_.entries.size(), 0);
  for (uint32_t g = 0; g < shared.origin.size(); ++g) {
    const uint32_t f = shared.origin[g];
    if (f == SharedFiles::kNoOrigin) continue;
    large[f] = 1;
    local[f] = shared.local_count + g;
    const auto* done = shared.done_chunks[shared.local_count + g];
    if (!done) continue;
    for (uint32_t c : *done) {
      if (c + 1 >= shared.chunk_counts[g]) continue;  // the last chunk is always sent again
      ready.done.emplace_back(f, c);
      skipped_bytes_ += copy_opts_.chunk_bytes;
    }
  }
  for (uint32_t f : plan_.files) {
    if (shared.include[f] || large[f]) continue;
    ready.unwanted.push_back(f);
    // On a resume, a file the copy meant to transfer and did not select is in place.
    const Entry& e = plan_.entries[f];
    if (hello_.resume && (flags_[f] & kActTransfer) && e.meta.nlink < 2)
      skipped_bytes_ += e.meta.size_bytes;
  }
  return encode_ready(ready);
}

// Every rank: ready shared from rank 0 (which sends it), this rank's streams received, then
// what arrived anywhere checked against what was wanted.
void RecvSession::transfer_ranked(CopyContext& ctx, io::BufferPool& pool, unsigned threads,
                                  const SharedFiles& shared) {
  const bool rank0 = comm_->rank() == 0;
  std::vector<uint32_t> local(plan_.entries.size());
  for (uint32_t i = 0; i < local.size(); ++i) local[i] = i;
  std::string ready_bytes = rank0 ? ready_for_ranks(shared, local) : std::string();
  WireWriter moved;
  for (uint32_t f : plan_.files) {
    if (rank0 && local[f] != f) {
      moved.u32(f);
      moved.u32(local[f]);
    }
  }
  const std::string moves = comm_->broadcast(moved.take(), 0);
  for (WireReader r(moves); !r.done();) {
    const uint32_t f = r.u32();
    local[f] = r.u32();
  }
  ready_bytes = comm_->broadcast(ready_bytes, 0);
  std::vector<uint8_t> wanted(plan_.entries.size(), 0);
  Ready ready;
  try {
    if (rank0) control_->send(FrameType::kReady, ready_bytes);
    auto decoded = decode_ready(ready_bytes, plan_, copy_opts_.chunk_bytes, pool.buffer_bytes());
    if (!decoded) throw std::runtime_error(decoded.error().message);
    ready = std::move(*decoded);
    for (uint32_t f : plan_.files) wanted[f] = 1;
    for (uint32_t f : ready.unwanted) wanted[f] = 0;
  } catch (const std::exception& ex) {
    ctx.set_fatal(ex.what());
  }
  ChunkLedger ledger(plan_, wanted, copy_opts_.chunk_bytes, pool.buffer_bytes());
  for (const auto& [f, c] : ready.done) ledger.mark_done(f, c);
  try {
    if (ctx.fatal().empty()) {
      if (!wait_for_streams())
        throw std::runtime_error("rank " + std::to_string(comm_->rank()) +
                                 ": the sender did not open its data streams within 30 s");
      receive(ctx, pool, threads, ledger, &local);
    }
  } catch (const std::exception& ex) {
    ctx.set_fatal(ex.what());
  }
  check_arrivals(ctx, ledger, wanted, local, pool.buffer_bytes());
}

// Collective: every rank's arrivals gathered on rank 0, which names (or, in a stopped run,
// abandons) each wanted file that did not arrive whole anywhere.
void RecvSession::check_arrivals(CopyContext& ctx, const ChunkLedger& mine,
                                 const std::vector<uint8_t>& wanted,
                                 const std::vector<uint32_t>& local, uint64_t buffer_bytes) {
  WireWriter w;
  for (const auto& [f, c] : mine.arrived()) {
    w.u32(f);
    w.u32(c);
  }
  std::vector<std::string> all = comm_->gather(w.take(), 0);
  if (comm_->rank() != 0) return;
  ChunkLedger everywhere(plan_, wanted, copy_opts_.chunk_bytes, buffer_bytes);
  for (const std::string& blob : all) {
    for (WireReader r(blob); !r.done();) {
      const uint32_t f = r.u32();
      everywhere.mark_done(f, r.u32());
    }
  }
  for (uint32_t f : everywhere.incomplete()) {
    const uint32_t l = local[f];
    if (ctx.file_failed(l)) continue;
    if (ctx.fatal().empty())
      ctx.fail_file(l, plan_.dst_path(plan_.entries[f]) + ": not received");
    else
      ctx.abandon_file(l);
  }
}

RunResult follow_rank0(const RecvOptions& opts, transport::Comm& comm, const RankListener& me,
                       const std::function<void(std::shared_ptr<RecvSession>)>& attach) {
  RunResult last;
  last.exit_code = kExitOk;
  for (;;) {
    std::string m = comm.recv(kTagRecv, nullptr);
    if (m.empty() || m[0] == 'Q') break;
    if (m[0] == 'R') {
      comm.send(0, kTagRecvRoute, rank_endpoint(me, m.substr(1)));
      continue;
    }
    auto session = RecvSession::follow(opts, comm, std::string_view(m).substr(1));
    if (!session) {
      io::log_error("recv: rank " + std::to_string(comm.rank()) +
                    ": rank 0's session announcement does not parse; stopping every rank");
      comm.abort_job(kExitFatal);
    }
    attach(session);
    last = session->run_follower();
    attach(nullptr);
  }
  return last;
}

void stop_ranks(transport::Comm& comm) {
  for (int k = 1; k < comm.size(); ++k) comm.send(k, kTagRecv, "Q");
}

}  // namespace barge::pipeline::remote
