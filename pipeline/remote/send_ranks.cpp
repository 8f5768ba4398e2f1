// send under mpirun/srun: rank 0 walks SRC and holds the control stream (hello, plan, ready);
// it then hands the session to the other ranks (the plan, what the receiver wants, where its
// ranks listen), every rank opens its own data streams, and each rank reads and sends the
// units whose number falls to it (unit n to rank n % ranks), so the sources are read on every
// node. Rank 0 gathers what every rank saw into the report.
#include <algorithm>
#include <stdexcept>

#include "pipeline/core/rank_stats.hpp"
#include "pipeline/core/wire.hpp"
#include "pipeline/dist/dist_internal.hpp"
#include "pipeline/remote/sender.hpp"
#include "transport/net/endpoint.hpp"

namespace barge::pipeline::remote {

// Collective: rank 0's session (empty: it has none, the run ends) reaches every rank.
bool Sender::share_session(bool ready) {
  std::string blob = lead() && ready ? session_blob() : std::string();
  blob = comm_->broadcast(blob, 0);
  if (blob.empty()) return false;
  if (!lead()) {
    try {
      take_session(blob);
    } catch (const std::exception& ex) {
      fail("rank " + std::to_string(rank()) + ": " + ex.what());
    }
  }
  return true;
}

std::string Sender::session_blob() const {
  WireWriter w;
  w.str(hello_.session);
  w.u32(hello_.streams);
  w.str(connect_.to.text());
  w.str(remote_ ? connect_.auth.psk : std::string());  // over ssh: the fresh key
  w.u32(static_cast<uint32_t>(endpoints_.size()));
  for (const transport::Endpoint& e : endpoints_) w.str(e.text());
  w.u32(static_cast<uint32_t>(plan_.roots.size()));
  for (const Root& r : plan_.roots) {
    w.str(r.src);
    w.str(r.dst);
    w.str(r.manifest_prefix);
  }
  w.u64(plan_.entries.size());
  for (const Entry& e : plan_.entries) write_entry(w, e);
  std::vector<uint32_t> unwanted;
  for (uint32_t f : plan_.files)
    if (!include_[f]) unwanted.push_back(f);
  w.u64(unwanted.size());
  for (uint32_t f : unwanted) w.u32(f);
  uint64_t chunks = 0;
  for (const auto& [f, cs] : done_chunks_) chunks += cs.size();
  w.u64(chunks);
  for (const auto& [f, cs] : done_chunks_) {
    for (uint32_t c : cs) {
      w.u32(f);
      w.u32(c);
    }
  }
  return w.take();
}

// Ranks > 0: the session rank 0 opened, and this rank's own key and threads.
void Sender::take_session(const std::string& blob) {
  if (auto st = validate(opts_); !st) throw std::runtime_error(st.error().message);
  WireReader r(blob);
  hello_.session = r.str();
  hello_.streams = r.u32();
  const std::string to = r.str();
  const std::string psk = r.str();
  if (psk.empty()) {
    if (auto st = place_target(); !st) throw std::runtime_error(st.error().message);
  } else {
    connect_.auth.psk = psk;
    connect_.auth.plaintext = opts_.plaintext;
  }
  connect_.to = transport::parse_endpoint(to, "destination").value();
  for (uint32_t n = r.u32(); n > 0; --n)
    endpoints_.push_back(transport::parse_endpoint(r.str(), "endpoint").value());
  for (uint32_t n = r.u32(); n > 0; --n) {
    Root root;
    root.src = r.str();
    root.dst = r.str();
    root.manifest_prefix = r.str();
    plan_.roots.push_back(std::move(root));
  }
  for (uint64_t n = r.u64(); n > 0; --n) {
    Entry e = read_entry(r);
    if (e.meta.type == io::FileType::kRegular) {
      plan_.files.push_back(static_cast<uint32_t>(plan_.entries.size()));
      plan_.total_file_bytes += e.meta.size_bytes;
    }
    plan_.entries.push_back(std::move(e));
  }
  include_.assign(plan_.entries.size(), 0);
  for (uint32_t f : plan_.files) include_[f] = 1;
  for (uint64_t n = r.u64(); n > 0; --n) include_.at(r.u32()) = 0;
  for (uint64_t n = r.u64(); n > 0; --n) {
    const uint32_t f = r.u32();
    done_chunks_[f].insert(r.u32());
  }
  raise_fd_limit();
  set_threads();
  result_.started = true;
}

// Collective: every rank opened its data streams (else none sends, and rank 0 cuts the
// control stream: the receiver ends the session).
bool Sender::streams_agreed() {
  if (comm_->agree(fatal_.empty())) return true;
  if (fatal_.empty()) fatal_ = "another rank of the sender could not open its data streams";
  streams_.abort();
  if (control_) control_->abort();
  return false;
}

// Collective: every rank's errors (rank 0's first), the first cause (a rank's own failure
// before "stopped because another rank stopped"), a lost link anywhere, and each rank's share
// (`shares`: bytes sent, summed into `sent`).
void Sender::merge_ranks(std::string& fatal, std::vector<std::string>& errors, uint64_t& sent,
                         RunResult& shares) {
  errors = gather_strings(*comm_, errors);
  auto mine_if = [&](bool peer) {
    const bool is_peer = fatal.rfind("stopped because another rank", 0) == 0;
    if (fatal.empty() || is_peer != peer) return std::vector<std::string>{};
    return std::vector<std::string>{lead() ? fatal
                                           : "rank " + std::to_string(rank()) + ": " + fatal};
  };
  std::vector<std::string> fatals = gather_strings(*comm_, mine_if(false));
  if (fatals.empty()) fatals = gather_strings(*comm_, mine_if(true));
  fatal = fatals.empty() ? std::string() : fatals.front();
  uint64_t lost = net_failure_ || streams_.lost() ? 1 : 0;
  comm_->allreduce_max(std::span<uint64_t>(&lost, 1));
  if (lost) net_failure_ = true;
  RankStats me;
  me.bytes = stats_.bytes_done.load();
  me.files = stats_.files_done.load();
  me.busy_seconds = busy_seconds_;
  me.walk_seconds = result_.walk_seconds;
  for (int s = 0; s < kStageCount; ++s) me.stage_busy_ns[s] = stats_.stage_busy_ns[s].load();
  reduce_rank_stats(*comm_, me, shares, true);
  sent = shares.bytes_transferred;
}

}  // namespace barge::pipeline::remote
