#include "pipeline/core/rank_stats.hpp"

#include <algorithm>

#include "io/host_name.hpp"

namespace barge::pipeline {

namespace {
uint64_t ns(double seconds) { return static_cast<uint64_t>(std::max(0.0, seconds) * 1e9); }
double seconds(uint64_t ns) { return static_cast<double>(ns) / 1e9; }
}  // namespace

void write_rank_stats(WireWriter& w, const RankStats& s) {
  w.u32(static_cast<uint32_t>(s.rank));
  w.str(s.host);
  for (uint64_t v : {s.bytes, s.files, ns(s.busy_seconds), ns(s.walk_seconds), s.peak_rss_bytes,
                     s.bytes_committed, s.bytes_verified, s.bytes_cloned, s.bytes_stored, s.dirs,
                     s.symlinks, s.others})
    w.u64(v);
  for (uint64_t v : s.stage_busy_ns) w.u64(v);
}

RankStats read_rank_stats(WireReader& r) {
  RankStats s;
  s.rank = static_cast<int>(r.u32());
  s.host = r.str();
  s.bytes = r.u64();
  s.files = r.u64();
  s.busy_seconds = seconds(r.u64());
  s.walk_seconds = seconds(r.u64());
  s.peak_rss_bytes = r.u64();
  s.bytes_committed = r.u64();
  s.bytes_verified = r.u64();
  s.bytes_cloned = r.u64();
  s.bytes_stored = r.u64();
  s.dirs = r.u64();
  s.symlinks = r.u64();
  s.others = r.u64();
  for (uint64_t& v : s.stage_busy_ns) v = r.u64();
  return s;
}

std::vector<RankStats> reduce_rank_stats(transport::Comm& comm, RankStats me, RunResult& into,
                                         bool list_ranks) {
  me.rank = comm.rank();
  if (me.host.empty()) me.host = io::host_name();
  me.peak_rss_bytes = std::max(me.peak_rss_bytes, peak_rss_bytes());
  WireWriter w;
  write_rank_stats(w, me);
  std::vector<RankStats> all;
  for (const std::string& blob : comm.allgather(w.take())) {
    WireReader r(blob);
    all.push_back(read_rank_stats(r));
    if (!r.done()) throw WireError("rank statistics: trailing bytes");
  }
  double min_busy = 1e300, max_busy = 0;
  for (const RankStats& k : all) {
    into.files += k.files;
    into.bytes += k.bytes_committed;
    into.bytes_transferred += k.bytes;
    into.bytes_verified += k.bytes_verified;
    into.bytes_cloned += k.bytes_cloned;
    into.dirs += k.dirs;
    into.symlinks += k.symlinks;
    into.others += k.others;
    for (int s = 0; s < kStageCount; ++s) into.stage_busy_ns[s] += k.stage_busy_ns[s];
    into.peak_rss_bytes = std::max(into.peak_rss_bytes, k.peak_rss_bytes);
    min_busy = std::min(min_busy, k.busy_seconds);
    max_busy = std::max(max_busy, k.busy_seconds);
  }
  into.balance = max_busy > 0 ? min_busy / max_busy : 1.0;
  if (list_ranks) into.ranks.insert(into.ranks.end(), all.begin(), all.end());
  return all;
}

int agree_exit_code(transport::Comm& comm, int mine) {
  uint64_t code = static_cast<uint64_t>(mine);
  comm.allreduce_max(std::span<uint64_t>(&code, 1));
  return static_cast<int>(code);
}

}  // namespace barge::pipeline
