#include "pipeline/core/stats.hpp"

#include <sys/resource.h>

#include <nlohmann/json.hpp>

#include "pipeline/core/manifest.hpp"

namespace barge::pipeline {

std::atomic<int>& stop_signal() {
  static std::atomic<int> signal{0};
  return signal;
}

const char* stage_name(int stage) {
  static constexpr const char* kNames[] = {"read",       "hash",     "write",       "verify",
                                           "commit",     "compress", "pack_append", "pack_fetch",
                                           "decompress", "net_send", "net_receive"};
  static_assert(std::size(kNames) == kStageCount);
  return stage >= 0 && stage < kStageCount ? kNames[stage] : "?";
}

void ErrorList::add(std::string message) {
  // Paths are raw bytes: keep each message one printable, valid-UTF-8 line.
  std::string line = printable_path(message);
  std::lock_guard lock(mu_);
  items_.push_back(std::move(line));
}
std::vector<std::string> ErrorList::take() {
  std::lock_guard lock(mu_);
  return std::move(items_);
}
size_t ErrorList::count() const {
  std::lock_guard lock(mu_);
  return items_.size();
}

void LiveStats::add_done(const LiveStats& w) {
  files_done += w.files_done.load();
  files_total += w.files_done.load();
  bytes_committed += w.bytes_committed.load();
  bytes_done += w.bytes_done.load();
  bytes_total += w.bytes_done.load();
  bytes_verified += w.bytes_verified.load();
  bytes_cloned += w.bytes_cloned.load();
  for (int s = 0; s < kStageCount; ++s) stage_busy_ns[s] += w.stage_busy_ns[s].load();
}

uint64_t peak_rss_bytes() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<uint64_t>(ru.ru_maxrss) * 1024;
}

double process_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  auto s = [](const timeval& t) { return static_cast<double>(t.tv_sec) + t.tv_usec / 1e6; };
  return s(ru.ru_utime) + s(ru.ru_stime);
}

nlohmann::json to_json(const RunResult& r, const std::string& command) {
  nlohmann::json j;
  j["command"] = command;
  j["exit_code"] = r.exit_code;
  j["bytes"] = r.bytes;
  j["files"] = r.files;
  j["directories"] = r.dirs;
  j["symlinks"] = r.symlinks;
  j["other_entries"] = r.others;
  j["bytes_verified"] = r.bytes_verified;
  j["bytes_cloned"] = r.bytes_cloned;
  j["bytes_transferred"] = r.bytes_transferred;
  j["seconds"] = r.seconds;
  j["walk_seconds"] = r.walk_seconds;
  double secs = r.seconds > 0 ? r.seconds : 1e-9;
  j["rates"] = {{"bytes_per_second", static_cast<double>(r.bytes) / secs},
                {"files_per_second", static_cast<double>(r.files) / secs}};
  nlohmann::json busy = nlohmann::json::object();
  for (int s = 0; s < kStageCount; ++s)
    busy[stage_name(s)] = static_cast<double>(r.stage_busy_ns[s]) / 1e9;
  j["stage_busy_seconds"] = busy;
  j["io_backend"] = r.io_backend;
  j["buffers_registered"] = r.buffers_registered;
  j["peak_rss_bytes"] = r.peak_rss_bytes;
  j["errors"] = r.errors;
  j["stopped_entries"] = r.stopped_entries;
  j["files_not_copied"] = r.files_not_copied;
  j["skipped_files"] = r.skipped_files;
  if (command == "send" || command == "recv") {
    j["bytes_skipped"] = r.bytes_skipped;
    j["bytes_resent"] = r.bytes_resent;
  }
  j["resumable"] = r.resumable;
  if (r.sync)
    j["sync"] = {{"deleted", r.sync->deleted}, {"unchanged_files", r.sync->unchanged_files}};
  auto list = [](const std::vector<RankStats>& all) {
    nlohmann::json ranks = nlohmann::json::array();
    for (const RankStats& k : all) {
      ranks.push_back({{"rank", k.rank},
                       {"host", k.host},
                       {"bytes", k.bytes},
                       {"files", k.files},
                       {"busy_seconds", k.busy_seconds},
                       {"walk_seconds", k.walk_seconds},
                       {"peak_rss_bytes", k.peak_rss_bytes}});
    }
    return ranks;
  };
  if (!r.ranks.empty()) {
    j["ranks"] = list(r.ranks);
    j["balance"] = r.balance;
  }
  if (!r.send_ranks.empty()) j["send_ranks"] = list(r.send_ranks);
  if (r.tune) j["tune"] = tune_json(*r.tune);
  if (!r.fatal.empty()) j["fatal"] = r.fatal;
  return j;
}

nlohmann::json tune_json(const TuneReport& t) {
  auto setting = [](const TuneSetting& s) {
    nlohmann::json j{{"chunk_bytes", s.chunk_bytes},
                     {"queue_depth", s.queue_depth},
                     {"threads", s.threads},
                     {"direct", s.direct}};
    if (s.compression_level >= 0) j["compression_level"] = s.compression_level;
    return j;
  };
  nlohmann::json probes = nlohmann::json::array();
  for (const auto& p : t.probes) {
    nlohmann::json pj = setting(p.setting);
    pj["change"] = p.change;
    pj["bytes"] = p.bytes;
    pj["files"] = p.files;
    pj["seconds"] = p.seconds;
    pj["bytes_per_second"] = p.rate();
    probes.push_back(pj);
  }
  return {{"method", t.method},
          {"note", t.note},
          {"chosen", setting(t.chosen)},
          {"probes", probes},
          {"seconds", t.seconds}};
}

}  // namespace barge::pipeline
