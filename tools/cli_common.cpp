#include "tools/cli_common.hpp"

#include <algorithm>
#include <cstdio>
#include <fstream>

#include "io/log.hpp"
#include "tools/size_parse.hpp"

namespace barge::tools {

CLI::Validator size_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        auto v = tools::parse_size(s);
        if (!v) return "not a size: '" + s + "' (examples: 4096, 64K, 4M, 1G)";
        s = std::to_string(*v);
        return {};
      },
      "SIZE");
}

void add_tune_flags(CLI::App* cmd, pipeline::EngineOptions& o, const char* help) {
  // mpirun takes a bare --tune anywhere on its command line for its own (a parameter file);
  // --tune=true passes through.
  cmd->add_flag("--tune", o.tune, std::string(help) + " (under mpirun write --tune=true)");
  cmd->add_option("--tune-seconds", o.tune_seconds, "the tuning's time limit (default 5)")
      ->check(CLI::Range(0.5, 600.0));
}

void add_engine_flags(CLI::App* cmd, pipeline::EngineOptions& o, const char* chunk_help) {
  cmd->add_option("--memory", o.memory_bytes, "bound on payload buffers per rank (default 256M)")
      ->transform(size_validator());
  if (chunk_help)
    cmd->add_option("--chunk-size", o.chunk_bytes, chunk_help)->transform(size_validator());
  cmd->add_option("--threads", o.threads,
                  "worker threads (default max(4, 2 x cores), shared among the ranks of a node)")
      ->check(CLI::Range(1, 1024));
  cmd->add_option("--queue-depth", o.queue_depth, "io_uring queue depth per thread (default 64)")
      ->check(CLI::Range(1, 4096));
  cmd->add_option_function<std::string>(
         "--io-backend", [&o](const std::string& v) { o.backend = *io::parse_backend_kind(v); },
         "auto | uring | sync (pread/pwrite)")
      ->check(CLI::IsMember({"auto", "uring", "sync"}));
}

pipeline::ProgressMode progress_mode(bool quiet, const std::string& progress) {
  if (quiet) return pipeline::ProgressMode::kNone;
  if (progress == "tty") return pipeline::ProgressMode::kTty;
  if (progress == "plain") return pipeline::ProgressMode::kPlain;
  if (progress == "none") return pipeline::ProgressMode::kNone;
  return pipeline::ProgressMode::kAuto;
}

int write_report(const std::string& path, const nlohmann::json& j) {
  if (path.empty()) return 0;
  std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) << '\n';
    if (!out) {
      io::log_error("--report " + path + ": cannot write");
      return pipeline::kExitFatal;
    }
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    io::log_error("--report " + path + ": cannot rename into place");
    return pipeline::kExitFatal;
  }
  return 0;
}

void print_summary(const pipeline::RunResult& r, const char* verb, bool quiet) {
  for (const auto& e : r.errors) io::log_error(e);
  // The cause of a stop once, with the count of what it left undone (--report names them).
  if (!r.fatal.empty() && std::find(r.errors.begin(), r.errors.end(), r.fatal) == r.errors.end()) {
    io::log_error(r.files_not_copied == 0
                      ? r.fatal
                      : r.fatal + " (the run stopped; " + std::to_string(r.files_not_copied) +
                            " files not copied" +
                            (r.stopped_entries.empty() ? "" : ", listed in --report") + ")");
  }
  if (quiet || !r.started) return;
  double secs = r.seconds > 0 ? r.seconds : 1e-9;
  char line[512];
  std::snprintf(
      line, sizeof line,
      "%s: %llu files, %llu dirs, %llu symlinks, %.1f MiB in %.2f s (%.1f MiB/s, %.0f files/s)%s%s",
      verb, static_cast<unsigned long long>(r.files), static_cast<unsigned long long>(r.dirs),
      static_cast<unsigned long long>(r.symlinks), static_cast<double>(r.bytes) / 1048576.0,
      r.seconds, static_cast<double>(r.bytes) / 1048576.0 / secs,
      static_cast<double>(r.files) / secs, r.bytes_verified ? ", verified" : "",
      r.errors.empty() ? "" : (", " + std::to_string(r.errors.size()) + " errors").c_str());
  std::fprintf(stderr, "barge: %s\n", line);
  print_tune(r);
}

void print_tune(const pipeline::RunResult& r) {
  char line[512];
  if (r.tune) {
    const auto& t = *r.tune;
    std::snprintf(line, sizeof line,
                  "tune: chunk %llu KiB, queue depth %u, %u threads, %s (%s, %zu probes in %.2f s",
                  static_cast<unsigned long long>(t.chosen.chunk_bytes >> 10), t.chosen.queue_depth,
                  t.chosen.threads, t.chosen.direct ? "O_DIRECT" : "buffered", t.method.c_str(),
                  t.probes.size(), t.seconds);
    std::string level;
    if (t.chosen.compression_level == 0) level = ", no compression";
    if (t.chosen.compression_level > 0)
      level = ", zstd level " + std::to_string(t.chosen.compression_level);
    std::fprintf(stderr, "barge: %s; %s)%s\n", line, t.note.c_str(), level.c_str());
    for (const auto& p : t.probes)
      std::fprintf(stderr, "barge:   probe %-16s %9.1f MiB/s  (%.1f MiB, %llu files, %.2f s)\n",
                   p.change.c_str(), p.rate() / 1048576.0, static_cast<double>(p.bytes) / 1048576.0,
                   static_cast<unsigned long long>(p.files), p.seconds);
  }
}

}  // namespace barge::tools
