// barge bench disk across threads and ranks: the workers of each rank, the per-interval
// rounds in which rank 0 merges the timeline (and decides on steady state and wear-out),
// and the final merge of every rank's figures.
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <thread>

#include "io/host_name.hpp"
#include "io/log.hpp"
#include "pipeline/bench/disk.hpp"
#include "pipeline/bench/disk_files.hpp"
#include "pipeline/bench/disk_worker.hpp"
#include "pipeline/bench/figures.hpp"
#include "pipeline/core/stats.hpp"
#include "pipeline/core/wire.hpp"

namespace barge::pipeline::bench {
namespace {

using detail::add;
using detail::Clock;
using detail::read_figures;

// A rank's phase: issuing (A), waiting for the wear-out target, wearing out (B), finished.
enum Phase : uint64_t { kIssuing = 0, kStonewalled = 1, kWearingOut = 2, kFinished = 3 };

struct Worker {
  std::unique_ptr<detail::DiskWorker> w;
  std::thread thread;
  std::atomic<bool> done{false};
  Clock::time_point finished_at;
  Figures at_stonewall;
};

class RankRun {
 public:
  RankRun(const DiskBenchOptions& o, unsigned depth, detail::BenchFile& file, transport::Comm& comm)
      : o_(o), depth_(depth), file_(file), comm_(comm) {
    shared_.opts = &o_;
    shared_.interval =
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.interval_s));
  }

  DiskRun run();

 private:
  void start_workers(const detail::PhaseLimit& limit);
  bool workers_done() const;
  void join_workers();
  bool round(uint64_t index, DiskRun& out);
  void finish(DiskRun& out);
  std::string rank_summary() const;
  bool steady(const DiskRun& out) const;

  const DiskBenchOptions& o_;
  unsigned depth_;
  detail::BenchFile& file_;
  transport::Comm& comm_;
  detail::RunShared shared_;
  std::vector<std::unique_ptr<Worker>> workers_;
  Phase phase_ = kIssuing;
  Clock::time_point end_;
  double cpu0_ = 0, cpu1_ = 0;
  bool wear_sent_ = false;

 public:
  std::string fatal() {
    std::lock_guard lock(shared_.fatal_mu);
    return shared_.fatal;
  }
};

void RankRun::start_workers(const detail::PhaseLimit& limit) {
  for (auto& wk : workers_) {
    wk->done = false;
    Worker* p = wk.get();
    wk->thread = std::thread([this, p, limit] {
      try {  // a ring that cannot be set up (no io_uring, SQPOLL refused) ends the run cleanly
        p->w->run_phase(limit);
      } catch (const std::exception& e) {
        std::lock_guard lock(shared_.fatal_mu);
        if (shared_.fatal.empty()) shared_.fatal = e.what();
        shared_.stop = true;
      }
      p->finished_at = Clock::now();
      p->done = true;
    });
  }
}

bool RankRun::workers_done() const {
  for (const auto& wk : workers_) {
    if (!wk->done) return false;
  }
  return true;
}

void RankRun::join_workers() {
  for (auto& wk : workers_) {
    if (wk->thread.joinable()) wk->thread.join();
  }
}

// Steady state (fio's ss=bw:P%): the last window's interval bandwidths lie within P% of
// their mean.
bool RankRun::steady(const DiskRun& out) const {
  if (o_.steady_state_percent <= 0) return false;
  auto need = static_cast<size_t>(std::ceil(o_.steady_window_s / o_.interval_s));
  if (out.intervals.size() < need || need < 2) return false;
  double lo = 1e300, hi = 0, sum = 0;
  for (size_t i = out.intervals.size() - need; i < out.intervals.size(); ++i) {
    double bw = out.intervals[i].bandwidth();
    lo = std::min(lo, bw);
    hi = std::max(hi, bw);
    sum += bw;
  }
  double mean = sum / static_cast<double>(need);
  return mean > 0 && (hi - lo) / mean * 100.0 <= o_.steady_state_percent;
}

// One interval: every rank sends its part to rank 0, which merges, prints and decides.
// True while any rank is still busy: every rank takes part in every round until then.
bool RankRun::round(uint64_t index, DiskRun& out) {
  Figures mine = shared_.intervals.take(index);
  uint64_t max_ops = 0;
  for (const auto& wk : workers_) max_ops = std::max(max_ops, wk->w->counted_ops());
  WireWriter msg;
  msg.u64(mine.bytes);
  msg.u64(mine.ops);
  msg.u64(phase_);
  msg.u64(max_ops);
  {
    std::lock_guard lock(shared_.fatal_mu);
    msg.u64(shared_.fatal.empty() ? 0 : 1);
  }
  // A main thread that fell behind the clock still has later intervals to hand over: the
  // rounds go on until every rank's timeline is in.
  msg.u64(shared_.intervals.has_after(index) ? 1 : 0);
  msg.str(mine.latency.serialize());
  std::vector<std::string> all = comm_.gather(msg.bytes(), 0);
  WireWriter decision;
  if (comm_.rank() == 0) {
    Figures merged;
    merged.seconds = o_.interval_s;
    uint64_t any_busy = 0, all_stonewalled = 1, target = 0, any_fatal = 0, any_pending = 0;
    for (const auto& part : all) {
      WireReader r(part);
      merged.bytes += r.u64();
      merged.ops += r.u64();
      uint64_t phase = r.u64();
      target = std::max(target, r.u64());
      any_fatal |= r.u64();
      any_pending |= r.u64();
      merged.latency.merge(LatencyHistogram::deserialize(r.str()));
      any_busy |= phase == kIssuing || phase == kWearingOut;
      all_stonewalled &= phase != kIssuing;
    }
    out.intervals.push_back(merged);
    if (o_.print_intervals && !o_.quiet && merged.ops) {
      std::fprintf(stderr, "%s\n", interval_line(index, o_.interval_s, merged).c_str());
    }
    bool wear = o_.stonewall_s > 0 && all_stonewalled && !wear_sent_ && !any_busy;
    decision.u64(any_busy || wear || any_pending);
    decision.u64(any_fatal ? 2 : steady(out) ? 1 : 0);
    decision.u64(wear ? target + 1 : 0);
  }
  std::string decided = comm_.broadcast(decision.bytes(), 0);
  WireReader d(decided);
  uint64_t busy = d.u64(), stop = d.u64(), wear = d.u64();
  if (stop) {  // 1: steady state; 2: a rank cannot go on (a full file system)
    shared_.stop = true;
    out.stopped_steady = stop == 1;
  }
  if (wear) {
    wear_sent_ = true;
    join_workers();
    for (auto& wk : workers_) wk->at_stonewall = wk->w->counted();
    detail::PhaseLimit limit;
    limit.counted_ops = wear - 1;
    phase_ = kWearingOut;
    start_workers(limit);
  }
  return busy != 0;
}

// The rank's figures for rank 0: host, whole, stonewalled, errors, CPU.
std::string RankRun::rank_summary() const {
  Figures whole, wall;
  std::map<std::string, uint64_t> errors;
  bool registered = true;
  for (const auto& wk : workers_) {
    const Figures& c = wk->w->counted();
    whole.bytes += c.bytes;
    whole.ops += c.ops;
    whole.latency.merge(c.latency);
    const Figures& s = o_.stonewall_s > 0 && wear_sent_ ? wk->at_stonewall : c;
    wall.bytes += s.bytes;
    wall.ops += s.ops;
    wall.latency.merge(s.latency);
    wall.seconds = std::max(wall.seconds, s.seconds);
    for (const auto& [k, n] : wk->w->errors()) errors[k] += n;
    registered &= wk->w->buffers_registered();
  }
  whole.seconds = std::chrono::duration<double>(end_ - shared_.measure_start).count();
  WireWriter w;
  w.str(io::host_name());
  for (const Figures* f : {&whole, &wall}) detail::write_figures(w, *f);
  w.u32(static_cast<uint32_t>(errors.size()));
  for (const auto& [k, n] : errors) {
    w.str(k);
    w.u64(n);
  }
  w.i64(static_cast<int64_t>(std::llround((cpu1_ - cpu0_) * 1e9)));
  w.u8(registered);
  return w.take();
}

void RankRun::finish(DiskRun& out) {
  std::vector<std::string> all = comm_.gather(rank_summary(), 0);
  if (comm_.rank() != 0) return;
  Figures wall;
  out.buffers_registered = true;
  for (size_t rank = 0; rank < all.size(); ++rank) {
    WireReader r(all[rank]);
    RankFigures rf;
    rf.rank = static_cast<int>(rank);
    rf.host = r.str();
    rf.whole = read_figures(r);
    add(out.whole, rf.whole);
    add(wall, read_figures(r));
    for (uint32_t n = r.u32(); n > 0; --n) {
      std::string kind = r.str();
      out.errors[kind] += r.u64();
    }
    out.cpu_seconds += static_cast<double>(r.i64()) / 1e9;
    out.buffers_registered &= r.u8() != 0;
    out.ranks.push_back(std::move(rf));
  }
  if (o_.stonewall_s > 0) out.stonewalled = wall;
  // The timeline ends at the last completion: no trailing empty rounds, and the last
  // interval is as long as the run lasted in it.
  while (!out.intervals.empty() && out.intervals.back().ops == 0) out.intervals.pop_back();
  if (!out.intervals.empty()) {
    double last = out.whole.seconds - o_.interval_s * static_cast<double>(out.intervals.size() - 1);
    out.intervals.back().seconds = std::clamp(last, 1e-6, o_.interval_s);
  }
}

DiskRun RankRun::run() {
  DiskRun out;
  out.queue_depth = depth_;
  uint64_t per_thread = file_.region_bytes / o_.threads / o_.block_bytes * o_.block_bytes;
  uint64_t seed = 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(comm_.rank() + 1) + depth_;
  for (unsigned t = 0; t < o_.threads; ++t) {
    auto wk = std::make_unique<Worker>();
    wk->w = std::make_unique<detail::DiskWorker>(shared_, file_.fd.get(),
                                                 file_.base_bytes + t * per_thread, per_thread,
                                                 depth_, seed + t * 7919);
    workers_.push_back(std::move(wk));
  }
  detail::drop_cache(file_);
  comm_.barrier();
  cpu0_ = process_cpu_seconds();
  auto start = Clock::now();
  shared_.measure_start =
      start + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.ramp_s));
  detail::PhaseLimit limit;
  auto after = [&](double s) {
    return shared_.measure_start +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  if (o_.runtime_s > 0) limit.deadline = after(o_.runtime_s);
  limit.once = o_.runtime_s <= 0;
  if (o_.stonewall_s > 0) limit.deadline = std::min(limit.deadline, after(o_.stonewall_s));
  start_workers(limit);
  // A short grace after each boundary lets the workers file the interval first.
  const auto grace = std::chrono::milliseconds(20);
  // A rank whose workers just finished goes to its round at once (so a run ends when its
  // work does); otherwise rounds wait for the boundary, and a finished rank sleeps there
  // rather than spinning in the collective.
  for (uint64_t index = 0;; ++index) {
    auto due = shared_.measure_start + shared_.interval * (index + 1) + grace;
    bool active = phase_ == kIssuing || phase_ == kWearingOut;
    while (Clock::now() < due && !(active && workers_done())) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      if (stop_signal().load()) shared_.stop = true;  // SIGINT/SIGTERM: end the run, clean up
    }
    if (active && workers_done()) {
      phase_ = phase_ == kIssuing && o_.stonewall_s > 0 ? kStonewalled : kFinished;
    }
    if (!round(index, out)) break;
  }
  join_workers();
  end_ = start;
  for (const auto& wk : workers_) end_ = std::max(end_, wk->finished_at);
  if (o_.fsync_end && writes_any(o_.rw)) {
    if (::fsync(file_.fd.get()) != 0) {
      std::lock_guard lock(shared_.fatal_mu);
      if (shared_.fatal.empty()) shared_.fatal = std::string("fsync: ") + std::strerror(errno);
    }
    end_ = Clock::now();
  }
  cpu1_ = process_cpu_seconds();
  finish(out);
  return out;
}

// The knee of --find-knee: the last depth before the bandwidth gained by doubling falls
// under --knee-gain, or before p99 passes --latency-target. nullopt while still climbing.
std::optional<size_t> find_knee(const DiskBenchOptions& o, const std::vector<DiskRun>& runs,
                                std::string& reason) {
  const DiskRun& last = runs.back();
  if (o.latency_target_ns && last.whole.latency.percentile(99) > o.latency_target_ns) {
    reason =
        "p99 latency passed --latency-target at queue depth " + std::to_string(last.queue_depth);
    return runs.size() >= 2 ? std::optional<size_t>(runs.size() - 2) : std::nullopt;
  }
  if (runs.size() < 2) return std::nullopt;
  double before = runs[runs.size() - 2].whole.bandwidth();
  double gain = before > 0 ? (last.whole.bandwidth() / before - 1) * 100 : 0;
  if (gain < o.knee_gain_percent) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "queue depth %u added %.1f%% bandwidth (under %.1f%%)",
                  last.queue_depth, gain, o.knee_gain_percent);
    reason = buf;
    return runs.size() - 2;
  }
  return std::nullopt;
}

}  // namespace

DiskBenchResult run_disk_bench(const DiskBenchOptions& o, transport::Comm& comm) {
  DiskBenchResult result;
  result.options = o;
  result.rank_count = comm.size();
  auto say = [&](const std::string& m) {
    if (m.empty()) return;
    io::log_error(comm.size() > 1 ? "bench disk: rank " + std::to_string(comm.rank()) + ": " + m
                                  : "bench disk: " + m);
  };
  auto file = detail::prepare_file(o, comm);
  if (!file) {
    say(file.error().message);
    result.exit_code = kExitFatal;
    return result;
  }
  std::vector<unsigned> depths{o.queue_depth};
  if (o.find_knee) {
    depths.clear();
    for (unsigned d = 1; d <= o.knee_max_depth; d *= 2) depths.push_back(d);
  }
  for (unsigned depth : depths) {
    RankRun rank_run(o, depth, *file, comm);
    DiskRun run = rank_run.run();
    std::string fatal = file->path + ": " + rank_run.fatal();
    bool ok = rank_run.fatal().empty();
    if (!comm.agree(ok)) {
      if (!ok) say(fatal);
      result.exit_code = kExitFatal;
      break;
    }
    if (comm.rank() == 0) result.runs.push_back(std::move(run));
    if (!o.find_knee) break;
    uint64_t stop = 0;
    if (comm.rank() == 0) {
      result.knee = find_knee(o, result.runs, result.knee_reason);
      stop = result.knee || !result.knee_reason.empty();
      if (!o.quiet) {
        const Figures& w = result.runs.back().whole;
        std::fprintf(stderr, "bench disk: queue depth %u: %.1f MiB/s, %.0f IOPS, p99 %.1f us\n",
                     depth, w.bandwidth() / 1048576.0, w.iops(),
                     static_cast<double>(w.latency.percentile(99)) / 1e3);
      }
    }
    if (std::stoull(comm.broadcast(std::to_string(stop), 0))) break;
  }
  detail::remove_file(*file, o, comm);
  if (stop_signal().load()) result.exit_code = kExitResumable;
  if (result.exit_code == 0 && comm.rank() == 0) {
    for (const auto& run : result.runs) {
      if (!run.errors.empty()) result.exit_code = kExitPartial;
    }
  }
  return result;
}

}  // namespace barge::pipeline::bench
