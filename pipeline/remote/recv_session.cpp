#include "pipeline/remote/recv_session.hpp"

#include <oneapi/tbb/global_control.h>
#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "io/log.hpp"
#include "pipeline/copy/copy.hpp"
#include "pipeline/core/wire.hpp"
#include "pipeline/engine/codec_stages.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/engine/graph.hpp"
#include "pipeline/remote/recv_units.hpp"

namespace barge::pipeline::remote {

using transport::FrameType;

namespace {
constexpr auto kStreamWait = std::chrono::seconds(30);
}

RunResult RecvSession::run() {
  RunResult result;
  auto t0 = std::chrono::steady_clock::now();
  // More threads than cores: I/O stages block in the kernel and on the network.
  tbb::global_control gc(
      tbb::global_control::max_allowed_parallelism,
      std::max<unsigned>(opts_.threads ? opts_.threads : default_threads(), hello_.streams + 2));
  try {
    if (auto st = admit(); !st) {
      send_error(st.error().message);
      result.fatal = st.error().message;
    } else {
      send_welcome();
      if (auto pst = receive_plan(); !pst) {
        send_error(pst.error().message);
        result.fatal = pst.error().message;
      } else {
        result.started = true;
        result = ranked() ? copy_ranked(t0) : copy(std::move(result), t0);
        control_->send(FrameType::kDone, to_json(result, "recv").dump());
      }
    }
  } catch (const std::exception& ex) {
    if (announced_) {
      // The other ranks wait in the session's next agreement, which this one will not reach.
      io::log_error("recv: rank 0: " + std::string(ex.what()) + "; stopping every rank of the job");
      comm_->abort_job(kExitFatal);
    }
    result.fatal = ex.what();
  }
  if (!result.fatal.empty()) result.exit_code = result.resumable ? kExitResumable : kExitFatal;
  {
    std::lock_guard lock(mu_);
    accepting_ = false;
  }
  for (auto& s : streams_)
    if (s) s->abort();
  control_->close();
  return result;
}

// copy's phases over the plan, with the bytes from the data streams; with sync, DST
// compared first and only what differs asked for.
RunResult RecvSession::copy(RunResult result, std::chrono::steady_clock::time_point t0) {
  PlannedCopy how;
  how.transfer = [this](CopyContext& ctx, io::BufferPool& pool, unsigned threads,
                        const std::vector<uint8_t>& include) {
    transfer(ctx, pool, threads, include);
  };
  how.buffers_per_unit = 2;
  how.min_units = hello_.streams + 2;
  how.verb = "recv";
  if (hello_.sync.enabled) {
    ErrorList errors;
    verdicts_ = compare_with_dst(plan_, hello_.sync, sums_, io::can_chown(), errors);
    for (std::string& e : errors.take()) plan_.walk_errors.push_back(io::Error::plain(e));
    how.actions = &verdicts_.actions;
    how.verb = "sync";
  }
  // The placement, for a resume of this transfer (saved once the plan is accepted); the
  // journal is kept only for a transfer that ends resumable.
  const std::string journal_dir = Journal::dir_for(copy_opts_.destination);
  if (!hello_.resume && !hello_.sync.enabled) {
    if (auto st = Journal::save_roots(journal_dir, plan_.roots); !st)
      io::log_warn(st.error().message + " (a stopped transfer will not be resumable)");
  }
  result = copy_planned(copy_opts_, plan_, std::move(result), t0, how);
  if (!result.resumable) Journal::remove(journal_dir);
  result.skipped_files = skipped_files_;
  result.bytes_skipped = skipped_bytes_;
  if (hello_.sync.enabled)
    result.sync = RunResult::SyncCounts{verdicts_.deleted, verdicts_.unchanged};
  return result;
}

// The transfer asked for, against this receiver's limits and DST as it is now.
io::Status RecvSession::admit() {
  if (std::find(hello_.capabilities.begin(), hello_.capabilities.end(), "xxh3-128") ==
      hello_.capabilities.end())
    return io::Error::plain("the sender does not checksum its chunks (xxh3-128)");
  if (opts_.max_files && hello_.files > opts_.max_files)
    return io::Error::plain("the transfer has " + std::to_string(hello_.files) +
                            " files; this receiver takes at most " +
                            std::to_string(opts_.max_files));
  if (opts_.max_bytes && hello_.bytes > opts_.max_bytes)
    return io::Error::plain("the transfer has " + std::to_string(hello_.bytes) +
                            " bytes; this receiver takes at most " +
                            std::to_string(opts_.max_bytes));
  set_copy_options();
  size_streams();
  const uint64_t need = uint64_t{streams_.size() + 2} * 2 * hello_.chunk_bytes;
  if (need > copy_opts_.memory_bytes)
    return io::Error::plain("the transfer needs --memory " + std::to_string(need) +
                            " on the receiver (streams and chunk size)");
  auto roots = place();
  if (!roots) return roots.error();
  plan_.roots = std::move(*roots);
  return io::Status::success();
}

// copy's options for the transfer the hello describes (on every rank).
void RecvSession::set_copy_options() {
  copy_opts_ = opts_;
  copy_opts_.chunk_bytes = hello_.chunk_bytes;
  copy_opts_.max_files_per_unit = hello_.files_per_unit;
  copy_opts_.reflink = Reflink::kNever;
  // Alone, resume_state looks at what DST holds; across ranks, the copy's phases do.
  copy_opts_.resume = ranked() && hello_.resume;
  copy_opts_.xattrs = hello_.xattrs;  // from the plan (Plan::xattrs_in_entries)
  plan_.xattrs_in_entries = hello_.xattrs;
  copy_opts_.manifest_path.clear();
}

// This rank's data streams: numbers k with (k - 1) % ranks == rank, in order.
void RecvSession::size_streams() {
  const uint32_t n = ranked() ? static_cast<uint32_t>(comm_->size()) : 1;
  const uint32_t me = ranked() ? static_cast<uint32_t>(comm_->rank()) : 0;
  std::lock_guard lock(mu_);
  streams_.resize(hello_.streams / n + (me < hello_.streams % n ? 1 : 0));
}

void RecvSession::send_welcome() {
  Welcome w{kProtocolVersion, hello_.session, capabilities(), {}};
  if (ranked()) w.endpoints = rank_endpoints();
  control_->send(FrameType::kWelcome, encode_welcome(w));
}

// Where the sources go: sync's placement, or copy's against DST as it is; a resumed transfer
// takes the placement its first run saved in the journal (by now DST exists, and copy's rules
// would put the sources inside it).
io::Result<std::vector<Root>> RecvSession::place() {
  const std::string journal_dir = Journal::dir_for(opts_.destination);
  if (!hello_.resume) Journal::remove(journal_dir);
  if (hello_.sync.enabled) return resolve_sync_root(hello_.sources, opts_.destination);
  if (hello_.resume) {
    std::vector<std::string> names;
    for (const RemoteSource& s : hello_.sources) names.push_back(s.name);
    if (auto saved = Journal::resume_roots(journal_dir, names, opts_.destination)) return *saved;
  }
  return resolve_remote_roots(hello_.sources, opts_.destination);
}

io::Status RecvSession::receive_plan() {
  PlanBuilder builder(plan_, hello_, hello_.sources, &sums_);
  while (plan_.entries.size() < hello_.entries) {
    if (auto st = builder.add_batch(control_->expect(FrameType::kPlan, kMaxControlPayload)); !st)
      return st;
  }
  return builder.finish();
}

bool RecvSession::add_stream(std::unique_ptr<transport::FrameStream> s, uint32_t number) {
  const uint32_t n = ranked() ? static_cast<uint32_t>(comm_->size()) : 1;
  const uint32_t me = ranked() ? static_cast<uint32_t>(comm_->rank()) : 0;
  std::lock_guard lock(mu_);
  if (!accepting_ || number == 0 || (number - 1) % n != me) return false;
  const uint32_t k = (number - 1) / n;
  if (k >= streams_.size() || streams_[k]) return false;
  streams_[k] = std::move(s);
  cv_.notify_all();
  return true;
}

bool RecvSession::wait_for_streams() {
  std::unique_lock lock(mu_);
  bool all = cv_.wait_for(lock, kStreamWait, [this] {
    for (auto& s : streams_)
      if (!s) return false;
    return true;
  });
  accepting_ = false;
  return all;
}

void RecvSession::send_error(const std::string& line) {
  io::log_error("recv: " + control_->peer() + ": " + line);
  try {
    control_->send(FrameType::kError, line);
  } catch (const std::exception&) {
  }
}

// The ready frame's lists: the files not wanted (their directory failed, hard links made
// here, unchanged for a sync, or, on a resume, in place already) and a resume's journaled
// chunks; `wanted` loses the files in place. What is kept is counted in skipped_*.
Ready RecvSession::resume_state(CopyContext& ctx, std::vector<uint8_t>& wanted,
                                uint64_t buffer_bytes) {
  Ready ready;
  std::vector<const std::unordered_set<uint32_t>*> done;
  if (hello_.resume) {
    journal_state_ = Journal::load(Journal::dir_for(copy_opts_.destination));
    const std::vector<uint8_t> before = wanted;
    skipped_files_ = plan_resume(ctx, wanted, journal_state_, done);
    for (uint32_t f : plan_.files)
      if (before[f] && !wanted[f]) skipped_bytes_ += plan_.entries[f].meta.size_bytes;
  }
  for (uint32_t f : plan_.files) {
    if (!wanted[f]) {
      ready.unwanted.push_back(f);
      continue;
    }
    if (f >= done.size() || !done[f]) continue;
    const uint32_t count =
        chunk_count_for(plan_.entries[f].meta.size_bytes, copy_opts_.chunk_bytes, buffer_bytes);
    for (uint32_t c : *done[f]) {
      if (c + 1 >= count) continue;  // the last chunk is always sent again (plan_resume)
      ready.done.emplace_back(f, c);
      skipped_bytes_ += copy_opts_.chunk_bytes;
    }
  }
  return ready;
}

// ready (the files not wanted: their directory failed, or they are hard links made here),
// the data streams, then network → decompress+check → write → commit.
void RecvSession::transfer(CopyContext& ctx, io::BufferPool& pool, unsigned threads,
                           const std::vector<uint8_t>& include) {
  std::vector<uint8_t> wanted = include;
  Ready ready = resume_state(ctx, wanted, pool.buffer_bytes());
  std::unique_ptr<Journal> journal =
      open_journal(ctx, wanted, Journal::dir_for(copy_opts_.destination));
  JournalFlusher flusher(ctx.journal, ctx);
  control_->send(FrameType::kReady, encode_ready(ready));
  if (!wait_for_streams())
    throw std::runtime_error("the sender did not open its " + std::to_string(hello_.streams) +
                             " data streams within 30 s");
  ChunkLedger ledger(plan_, wanted, copy_opts_.chunk_bytes, pool.buffer_bytes());
  for (const auto& [f, c] : ready.done) ledger.mark_done(f, c);
  receive(ctx, pool, threads, ledger, nullptr);
  for (uint32_t f : ledger.incomplete()) {
    if (ctx.file_failed(f)) continue;
    if (ctx.fatal().empty())
      ctx.fail_file(f, plan_.dst_path(plan_.entries[f]) + ": not received");
    else
      ctx.abandon_file(f);
  }
}

void RecvSession::receive(CopyContext& ctx, io::BufferPool& pool, unsigned threads,
                          ChunkLedger& ledger, const std::vector<uint32_t>* local) {
  StreamClaims claims(streams_, ctx.stop);
  NetReceiveStage receive(ctx, claims, streams_, ledger, local);
  DecompressCheckStage check([&ctx](Item& it, const std::string& why) {
    ctx.fail_file(it.ext.file, ctx.plan.dst_path(ctx.plan.entries[it.ext.file]) + ": " + why +
                                   " (the bytes received are not the source's)");
    it.failed = true;
  });
  WriteStage write(ctx);
  CommitStage commit(ctx);
  Assembly a;
  a.next = [&](WorkUnit& u) { return claims.claim(u.source); };
  a.stopping = [&ctx] {
    if (int sig = stop_signal().load(); sig != 0 && !ctx.stop.load())
      ctx.set_fatal("stopped by signal " + std::to_string(sig));
    return ctx.stop.load();
  };
  a.stages = {{kStageNetReceive, StageKind::kIo, [&](WorkUnit& u) { receive(u); }},
              {kStageDecompress, StageKind::kCpu, [&](WorkUnit& u) { check(u); }},
              {kStageWrite, StageKind::kIo, [&](WorkUnit& u) { write(u); }}};
  a.last = [&](WorkUnit* u, const Emit& emit) { commit(u, emit); };
  a.drain = [&] { return commit.abandon_unfinished(); };
  a.on_throw = [&](WorkUnit& u, const std::string& why) {
    ctx.set_fatal(why);
    for (Item& it : u.items) {
      it.failed = true;
      ctx.abandon_file(it.ext.file);
    }
    claims.abort_all();
  };
  a.buffers_per_unit = 2;
  // Shared large files (ranks) are closed, not abandoned: rank 0 puts them in place.
  auto drain = std::move(a.drain);
  a.drain = {};
  run_graph(a, pool, ctx.stats, std::max<unsigned>(threads, streams_.size() + 2));
  if (ctx.shared_large) commit.close_shared();
  for (WorkUnit* u : drain()) delete u;
  // Stopped by a lost link or a signal: what was committed stays, journaled, for a resume.
  if (!ctx.fatal().empty() && (claims.lost() || stop_signal().load() != 0)) ctx.resumable = true;
}

}  // namespace barge::pipeline::remote
