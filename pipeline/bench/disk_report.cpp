// barge bench disk's report: the JSON contract and the human summary.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "pipeline/bench/disk.hpp"
#include "pipeline/bench/figures.hpp"

namespace barge::pipeline::bench {
namespace {

using detail::figures_json;
using detail::latency_text;
using detail::size_text;
using detail::throughput_text;
using detail::us;
using nlohmann::json;

json options_json(const DiskBenchOptions& o) {
  return json{{"path", o.path},
              {"rw", rw_mode_name(o.rw)},
              {"mix_read_percent", o.mix_read_percent},
              {"block_bytes", o.block_bytes},
              {"queue_depth", o.queue_depth},
              {"size_bytes", o.size_bytes},
              {"runtime_s", o.runtime_s},
              {"ramp_s", o.ramp_s},
              {"direct", o.direct},
              {"threads", o.threads},
              {"shared_file", o.shared_file},
              {"fsync_end", o.fsync_end},
              {"sqpoll", o.sqpoll},
              {"preallocate", o.preallocate},
              {"stonewall_s", o.stonewall_s},
              {"interval_s", o.interval_s}};
}

// The run the top-level fields describe: the knee's with --find-knee, else the only one.
const DiskRun* chosen(const DiskBenchResult& r) {
  if (r.runs.empty()) return nullptr;
  return r.knee ? &r.runs[*r.knee] : &r.runs.back();
}

}  // namespace

nlohmann::json to_json(const DiskBenchResult& r) {
  json j{
      {"command", "bench disk"}, {"options", options_json(r.options)}, {"exit_code", r.exit_code}};
  const DiskRun* run = chosen(r);
  if (!run) return j;
  j.update(figures_json(run->whole));
  j["queue_depth"] = run->queue_depth;
  j["cpu_seconds"] = run->cpu_seconds;
  double gb = static_cast<double>(run->whole.bytes) / 1e9;
  j["cpu_seconds_per_gb"] = gb > 0 ? run->cpu_seconds / gb : 0;
  j["buffers_registered"] = run->buffers_registered;
  j["steady_state_reached"] = run->stopped_steady;
  j["latency_bins"] = bins_json(run->whole.latency);
  j["intervals"] = json::array();
  for (size_t i = 0; i < run->intervals.size(); ++i) {
    json iv = figures_json(run->intervals[i]);
    iv["start_s"] = r.options.interval_s * static_cast<double>(i);
    j["intervals"].push_back(iv);
  }
  j["ranks"] = json::array();
  for (const auto& rf : run->ranks) {
    json rj = figures_json(rf.whole);
    rj["rank"] = rf.rank;
    rj["host"] = rf.host;
    j["ranks"].push_back(rj);
  }
  j["errors"] = json::object();
  for (const auto& [kind, n] : run->errors) j["errors"][kind] = n;
  if (run->stonewalled) j["stonewall"] = figures_json(*run->stonewalled);
  if (r.options.find_knee) {
    json steps = json::array();
    for (const auto& s : r.runs) {
      json sj = figures_json(s.whole);
      sj["queue_depth"] = s.queue_depth;
      steps.push_back(sj);
    }
    j["knee"] = json{{"queue_depth", r.knee ? json(run->queue_depth) : json(nullptr)},
                     {"reason", r.knee_reason},
                     {"steps", steps}};
  }
  return j;
}

std::string interval_line(size_t index, double interval_s, const Figures& f) {
  return "bench disk: " + detail::interval_text(index, interval_s, f);
}

std::string human_summary(const DiskBenchResult& r) {
  const DiskRun* run = chosen(r);
  if (!run) return "";
  const DiskBenchOptions& o = r.options;
  std::string out = "bench disk: " + std::string(rw_mode_name(o.rw));
  if (o.rw == RwMode::kReadWrite || o.rw == RwMode::kRandRw)
    out += " (" + std::to_string(o.mix_read_percent) + "% reads)";
  out += ", bs " + size_text(o.block_bytes) + ", queue depth " + std::to_string(run->queue_depth) +
         ", " + std::to_string(o.threads) + (o.threads == 1 ? " thread" : " threads") + " x " +
         std::to_string(r.rank_count) + (r.rank_count == 1 ? " rank" : " ranks") + ", " +
         size_text(o.size_bytes) + " per rank" + (o.shared_file ? " (shared file)" : "") +
         (o.direct ? ", O_DIRECT" : ", buffered") +
         (run->buffers_registered ? ", registered buffers" : "") + "\n";
  out += "  throughput  " + throughput_text(run->whole) + "\n";
  out += "  latency     " + latency_text(run->whole.latency) + "\n";
  if (run->stonewalled) out += "  stonewall   " + throughput_text(*run->stonewalled) + "\n";
  char cpu[96];
  double gb = static_cast<double>(run->whole.bytes) / 1e9;
  std::snprintf(cpu, sizeof cpu, "  cpu         %.3f s per GB (user+sys %.2f s)\n",
                gb > 0 ? run->cpu_seconds / gb : 0.0, run->cpu_seconds);
  out += cpu;
  std::string errors;
  for (const auto& [kind, n] : run->errors) errors += " " + kind + " " + std::to_string(n);
  out += "  errors      " + (errors.empty() ? std::string("none") : errors.substr(1)) + "\n";
  if (run->stopped_steady) out += "  steady state reached: the run stopped early\n";
  if (r.rank_count > 1) {
    for (const auto& rf : run->ranks)
      out += "  rank " + std::to_string(rf.rank) + " (" + rf.host + ")  " +
             throughput_text(rf.whole) + "\n";
  }
  if (o.find_knee) {
    out += "  knee        " +
           (r.knee ? "queue depth " + std::to_string(run->queue_depth) + ": " + r.knee_reason
                   : "not found up to queue depth " + std::to_string(r.runs.back().queue_depth)) +
           "\n";
  }
  return out;
}

}  // namespace barge::pipeline::bench
