#include "pipeline/migrate/run.hpp"

#include <tbb/global_control.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>

#include "io/log.hpp"
#include "pipeline/core/stats.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/migrate/keep.hpp"
#include "pipeline/migrate/pass.hpp"
#include "pipeline/migrate/status.hpp"

namespace barge::pipeline::migrate {

namespace {

double measure(const PassRecord& p, Delta::Kind k) {
  switch (k) {
    case Delta::kBytes:
      return static_cast<double>(p.bytes_changed);
    case Delta::kFiles:
      return static_cast<double>(p.files_changed + p.files_retried);
    case Delta::kSeconds:
      return p.seconds;
  }
  return 0;
}

// Rewrites the metrics file every interval while a pass runs (the pass's elapsed time
// moves), and once more when it stops.
class MetricsWriter {
 public:
  MetricsWriter(const std::string& path, const std::string& dir, double interval_s)
      : path_(path), dir_(dir), interval_(interval_s) {
    if (path_.empty()) return;
    write();
    thread_ = std::thread([this] {
      std::unique_lock lock(mu_);
      while (!done_) {
        cv_.wait_for(lock, std::chrono::duration<double>(interval_));
        if (!done_) write();
      }
    });
  }
  ~MetricsWriter() {
    if (path_.empty()) return;
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
    write();
  }
  void write() {
    if (path_.empty()) return;
    auto st = load_status(dir_, now_unix());
    if (st) {
      if (auto w = write_metrics(path_, st.value()); !w)
        io::log_warn("migrate: --metrics: " + w.error().message);
    }
  }

 private:
  std::string path_, dir_;
  double interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

// Rank 0's word to every rank.
bool agree_from_rank0(transport::Comm& comm, bool v) {
  return comm.broadcast(v ? "1" : "", 0) == "1";
}

}  // namespace

std::string stop_reason(const std::vector<PassRecord>& passes, const std::optional<Delta>& until,
                        unsigned max_passes) {
  if (passes.empty()) return "";
  const PassRecord& last = passes.back();
  if (last.pass == 1) return max_passes <= 1 ? "--max-passes 1" : "";
  const Delta::Kind kind = until ? until->kind : Delta::kBytes;
  if (until && measure(last, kind) <= until->value)
    return "the last pass's delta is within --until-delta";
  if (last.files_changed == 0 && last.files_retried == 0 && last.entries_changed == 0)
    return "the last pass found nothing changed";
  if (passes.size() >= 3 && measure(last, kind) >= measure(passes[passes.size() - 2], kind))
    return "the delta stopped shrinking";
  if (passes.size() >= max_passes) return "--max-passes " + std::to_string(max_passes);
  return "";
}

MigrateRunResult run_migrate(const MigrateRunOptions& opts, transport::Comm& comm) {
  MigrateRunResult out;
  const bool lead = comm.rank() == 0;
  const unsigned threads = opts.copy.threads ? opts.copy.threads : default_threads();
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  auto loaded = load_state(opts.state_dir);
  std::string error;
  if (!loaded)
    error = "migrate run: " + loaded.error().message;
  else if (loaded.value().phase == kPhaseCutover || loaded.value().phase == kPhaseDone)
    error = "migrate run: --state " + opts.state_dir + ": the migration is at its cutover (" +
            loaded.value().phase + "); nothing to run";
  if (!comm.agree(error.empty())) {
    out.exit_code = kExitFatal;
    out.fatal = error.empty() ? "migrate run: another rank cannot read the state" : error;
    return out;
  }
  State s = std::move(loaded).value();
  MetricsWriter metrics(lead ? opts.metrics_path : "", s.dir, opts.metrics_interval_s);
  // A migration already ready gets at least one more catch-up pass when run again.
  bool again = s.phase == kPhaseReady;
  for (;; again = false) {
    std::string why = again ? "" : stop_reason(s.passes, opts.until, opts.max_passes);
    if (agree_from_rank0(comm, !why.empty())) {
      out.stop_reason = why;
      if (lead) {
        s.phase = kPhaseReady;
        if (auto st = save_state(s); !st) out.fatal = st.error().message;
      }
      break;
    }
    PassSpec spec;
    double keep_s = 0;
    spec.pass = static_cast<unsigned>(s.passes.size() + 1);
    spec.kind = spec.pass == 1 ? "full" : "catch-up";
    spec.resume = s.pass_running == spec.pass;  // killed during this pass: its journal
    spec.manifest = s.dir + "/pass-" + std::to_string(spec.pass) + ".manifest";
    if (lead) {
      io::Status st = start_pass(s, spec, spec.pass == 1 ? kPhaseCopying : kPhaseCatchingUp,
                                 opts.keep, threads, &keep_s);
      if (!st) error = st.error().message;
      if (!opts.quiet)
        std::fprintf(stderr, "barge: migrate: pass %u (%s)\n", spec.pass, spec.kind.c_str());
    }
    metrics.write();
    if (!comm.agree(error.empty())) {
      out.exit_code = kExitFatal;
      out.fatal = "migrate run: " + (error.empty() ? "rank 0 failed" : error);
      break;
    }
    PassRun r = run_pass(s, opts.copy, spec, comm);
    const bool failed = !r.fatal.empty() || r.exit_code == kExitFatal;
    if (failed) {  // the state keeps the pass as running: the same command resumes it
      out.exit_code = r.resumable ? kExitResumable : kExitFatal;
      out.fatal = "migrate run: pass " + std::to_string(spec.pass) + ": " + r.fatal +
                  (r.resumable ? " (run the same command again to resume)" : "");
      break;
    }
    out.passes.push_back(r.record);
    if (r.record.errors) out.exit_code = kExitPartial;
    if (lead) {
      if (auto st = finish_pass(s, spec, opts.keep, keep_s, r.record); !st)
        error = st.error().message;
    } else {
      s.passes.push_back(r.record);  // the stop rule is rank 0's; the count is everyone's
    }
    if (!comm.agree(error.empty())) {
      out.exit_code = kExitFatal;
      out.fatal = "migrate run: the state: " + (error.empty() ? "rank 0 failed" : error);
      break;
    }
  }
  out.phase = s.phase;
  return out;
}

}  // namespace barge::pipeline::migrate
