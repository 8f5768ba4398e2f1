#include "pipeline/copy/tune.hpp"

#include <fcntl.h>
#include <tbb/global_control.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <random>
#include <stdexcept>

#include "io/buffer_pool.hpp"
#include "io/unique_fd.hpp"
#include "io/uring_queue.hpp"
#include "pipeline/copy/copy.hpp"
#include "pipeline/copy/tune_probe.hpp"
#include "pipeline/copy/tune_ranks.hpp"
#include "pipeline/engine/copy_internal.hpp"

namespace barge::pipeline {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using namespace tune_detail;  // NOLINT: the probes

using tune_detail::Ranks;
using tune_detail::Runner;

struct Step {
  std::string change;
  std::function<TuneSetting(TuneSetting)> apply;
};

// One change at a time from the best so far; a change is kept when faster by kTuneGain.
// The probe takes at most a twentieth of the copy's time as the first probe predicts it, so
// a small job is not made slower by its own tuning.
TuneSetting descend(TuneSetting best, const std::vector<Step>& steps, const Runner& local,
                    Clock::time_point deadline, uint64_t total_bytes, Ranks& ranks,
                    TuneReport& report) {
  auto run = [&](const TuneSetting& s) { return ranks.combine(local, s); };
  auto first = run(best);
  if (!first) return best;
  first->change = "defaults" + first->change;
  report.probes.push_back(*first);
  double best_rate = first->rate();
  const double predicted_s = best_rate > 0 ? static_cast<double>(total_bytes) / best_rate : 0;
  const auto share = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                        std::chrono::duration<double>(predicted_s / 20));
  auto last =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(first->seconds));
  for (const auto& step : steps) {
    // A probe starts only when one as long as the last still fits (on every rank).
    if (ranks.any(Clock::now() + last >= std::min(deadline, share))) {
      report.note +=
          std::string("; ") +
          (share < deadline ? "a twentieth of the predicted copy time" : "--tune-seconds") +
          " stopped the probe before '" + step.change + "'";
      break;
    }
    TuneSetting s = step.apply(best);
    if (s.chunk_bytes == best.chunk_bytes && s.queue_depth == best.queue_depth &&
        s.threads == best.threads && s.direct == best.direct)
      continue;
    auto t = Clock::now();
    auto p = run(s);
    if (!p) break;
    last = Clock::now() - t;
    p->change = step.change + p->change;
    report.probes.push_back(*p);
    if (p->rate() > best_rate * kTuneGain) {
      best = s;
      best_rate = p->rate();
    }
  }
  return best;
}

// The order: what matters most for that kind of tree first (the budget may stop the rest);
// O_DIRECT last for many small files, where it seldom wins and a probe of it is slow.
std::vector<Step> steps_for(bool region, unsigned threads, unsigned default_count) {
  std::vector<Step> steps;
  auto direct = Step{"direct on/off", [](TuneSetting s) {
                       s.direct = !s.direct;
                       return s;
                     }};
  if (region) {
    for (unsigned d : {64u, 16u, 256u})
      steps.push_back({"queue depth " + std::to_string(d), [d](TuneSetting s) {
                         s.queue_depth = d;
                         return s;
                       }});
    steps.push_back(direct);
  } else {
    for (unsigned t : {default_count, std::max(1u, threads / 2), threads * 2})
      steps.push_back({"threads " + std::to_string(t), [t](TuneSetting s) {
                         s.threads = t;
                         return s;
                       }});
  }
  // The engine's default (4 MiB) is among the candidates: a bad --chunk-size is corrected.
  for (uint64_t c : region ? std::vector<uint64_t>{4ull << 20, 16ull << 20, 1ull << 20}
                           : std::vector<uint64_t>{4ull << 20, 16ull << 20, 1ull << 20})
    steps.push_back({"chunk " + mib(c), [c](TuneSetting s) {
                       s.chunk_bytes = c;
                       return s;
                     }});
  if (!region) steps.push_back(direct);
  return steps;
}

// What the probes need: the tree's totals over every rank, the bounds, the scratch.
struct Probing {
  const CopyOptions& opts;
  const Plan& plan;  // this rank's share
  const TuneLimits& limits;
  Clock::time_point deadline;
  uint64_t total_bytes, large_bytes;
  double slice;
  bool sync;
  fs::path scratch;
  Ranks& ranks;
};

TuneSetting probe_regions(const Probing& p, TuneSetting base, TuneReport& report) {
  RegionCursor cursor(p.plan);
  // Every probe reads bytes no other probe has read (nothing cached by a probe).
  const uint64_t cap = std::clamp<uint64_t>(p.large_bytes / 40, 64ull << 20, 1ull << 30);
  Runner run = [&](const TuneSetting& s) -> std::optional<TuneProbe> {
    auto end = Clock::now() +
               std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(p.slice));
    auto r = region_copy(cursor, s, p.opts.memory_bytes, cap, p.scratch, p.sync, end);
    if (r.bytes == 0) return std::nullopt;  // the large files are all read
    return r;
  };
  return descend(base, steps_for(true, base.threads, p.limits.default_threads), run, p.deadline,
                 p.total_bytes, p.ranks, report);
}

TuneSetting probe_samples(const Probing& p, TuneSetting base, TuneReport& report) {
  SampleCopier copier(p.opts, p.plan, p.scratch);
  // A first, small sample sizes the others to about `slice` each (every probe must copy
  // about as much: the engine's start-up weighs more on a small sample).
  std::optional<TuneProbe> mine;
  Runner calibrate = [&](const TuneSetting& s) { return mine = copier.run(s, 16ull << 20, 500); };
  auto calibration = p.ranks.combine(calibrate, base);
  if (!calibration || calibration->seconds <= 0) throw std::runtime_error("too few files");
  calibration->change = "calibration";
  report.probes.push_back(*calibration);
  // This rank's share of each probe from its own calibration, at most a fortieth of its files.
  const double per_s = mine && mine->seconds > 0 ? p.slice / mine->seconds : 0;
  const uint64_t want_bytes =
      std::clamp<uint64_t>(mine ? mine->bytes * per_s : 0, 8ull << 20,
                           std::max<uint64_t>(8ull << 20, p.plan.total_file_bytes / 40));
  const uint64_t want_files = std::clamp<uint64_t>(
      mine ? mine->files * per_s : 0, 200, std::max<uint64_t>(200, p.plan.files.size() / 40));
  // A probe should take about `slice`: one three times longer is cut short.
  copier.limit(std::max(0.3, 3 * p.slice));
  Runner run = [&](const TuneSetting& s) { return copier.run(s, want_bytes, want_files); };
  return descend(base, steps_for(false, base.threads, p.limits.default_threads), run, p.deadline,
                 p.total_bytes, p.ranks, report);
}

}  // namespace

CopyOptions tune_copy(const CopyOptions& opts, const Plan& plan, const TuneLimits& limits,
                      TuneReport& report, transport::Comm* comm) {
  const auto t0 = Clock::now();
  Ranks ranks(comm);
  TuneLimits lim = limits;
  if (lim.default_threads == 0) lim.default_threads = default_threads();
  TuneSetting base{opts.chunk_bytes, opts.queue_depth,
                   opts.threads ? opts.threads : lim.default_threads,
                   opts.direct_read && opts.direct_write, -1};
  report.chosen = base;
  report.method = "none";
  uint64_t large = 0;
  for (uint32_t f : plan.files)
    if (plan.entries[f].meta.size_bytes >= kLargeFile) large += plan.entries[f].meta.size_bytes;
  const uint64_t total = ranks.sum(plan.total_file_bytes), files = ranks.sum(plan.files.size());
  large = ranks.sum(large);
  if (total < lim.min_bytes && files < lim.min_files) {
    report.note = "too small to be worth a probe (" + mib(total) + ", " + std::to_string(files) +
                  " files): the defaults are kept";
    return opts;
  }
  const bool region = large * 2 >= total;
  const bool sync = ranks.any(opts.fsync || total > dirty_limit_bytes());
  report.method = region ? "region copy" : "sample copy";
  report.note = std::string(sync ? "writes timed with their write-back"
                                 : "writes timed into the page cache (the copy fits in it)") +
                (region ? "; threads: not probed (the region copy does not hash)" : "");
  if (ranks.size() > 1)
    report.note += "; " + std::to_string(ranks.size()) +
                   " ranks probed their shares at once (rates: all bytes over the slowest rank)";
  TuneSetting chosen = base;
  fs::path scratch;
  std::string error;
  try {
    scratch = scratch_dir(opts);
  } catch (const std::exception& e) {
    error = e.what();
  }
  if (ranks.any(!error.empty())) {
    report.note += "; no probe: " + (error.empty() ? "another rank has no scratch" : error);
  } else {
    Probing p{opts,
              plan,
              lim,
              t0 + std::chrono::duration_cast<Clock::duration>(
                       std::chrono::duration<double>(lim.seconds)),
              total,
              large,
              std::clamp(lim.seconds / 8, 0.1, 1.0),
              sync,
              scratch,
              ranks};
    try {
      chosen = region ? probe_regions(p, base, report) : probe_samples(p, base, report);
    } catch (const std::exception& e) {
      report.note += std::string("; the probe stopped: ") + e.what();
    }
    std::error_code ec;
    fs::remove_all(scratch, ec);
  }
  report.chosen = chosen = ranks.from_rank0(chosen);
  report.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  CopyOptions out = opts;
  out.chunk_bytes = chosen.chunk_bytes;
  out.queue_depth = chosen.queue_depth;
  out.threads = chosen.threads;
  out.direct_read = out.direct_write = chosen.direct;
  return out;
}

}  // namespace barge::pipeline
