// barge CLI: parses arguments into option structs, calls one library entry point per
// subcommand and maps the result to an exit code (0 ok, 1 some entries failed, 2 usage or
// fatal error). Nothing else lives here.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "io/log.hpp"
#include "pipeline/copy.hpp"
#include "tools/size_parse.hpp"

namespace {

using namespace barge;

// A CLI11 validator-transform for sizes: rejects nonsense with a message naming the flag.
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
    out << j.dump(2) << '\n';
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
  if (!r.fatal.empty()) io::log_error(r.fatal);
  if (quiet) return;
  double secs = r.seconds > 0 ? r.seconds : 1e-9;
  char line[512];
  std::snprintf(line, sizeof line,
                "%s: %llu files, %llu dirs, %llu symlinks, %.1f MiB in %.2f s (%.1f MiB/s, %.0f files/s)%s%s", verb,
                static_cast<unsigned long long>(r.files), static_cast<unsigned long long>(r.dirs),
                static_cast<unsigned long long>(r.symlinks), static_cast<double>(r.bytes) / 1048576.0, r.seconds,
                static_cast<double>(r.bytes) / 1048576.0 / secs, static_cast<double>(r.files) / secs,
                r.bytes_verified ? ", verified" : "",
                r.errors.empty() ? "" : (", " + std::to_string(r.errors.size()) + " errors").c_str());
  std::fprintf(stderr, "barge: %s\n", line);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"barge: parallel bulk data transfer for HPC clusters"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "barge 0.1.0");
  bool quiet = false;
  std::string progress = "auto";
  std::string backend = "auto";
  app.add_flag("-q,--quiet", quiet, "no progress and no summary (errors are still printed)");

  // barge copy
  pipeline::CopyOptions copy;
  std::vector<std::string> copy_paths;
  auto* copy_cmd = app.add_subcommand("copy", "copy files and trees, verified end to end (cp -a placement rules)");
  copy_cmd->add_option("paths", copy_paths, "SRC... DST")->required()->expected(2, -1);
  copy_cmd->add_flag("--verify", copy.verify, "re-read what was written and compare per-chunk XXH3-128 checksums");
  copy_cmd->add_option("--checksum-manifest", copy.manifest_path,
                       "write each file's XXH3-128 to FILE (check later with barge verify --manifest)");
  copy_cmd->add_option("--report", copy.report_path, "write a JSON report to FILE");
  copy_cmd->add_option("--memory", copy.memory_bytes, "bound on payload buffers (default 256M)")
      ->transform(size_validator());
  copy_cmd->add_option("--chunk-size", copy.chunk_bytes, "work-unit size; larger files are split (default 4M)")
      ->transform(size_validator());
  copy_cmd->add_option("--threads", copy.threads, "worker threads (default max(4, 2 x cores))")
      ->check(CLI::Range(1, 1024));
  copy_cmd->add_option("--queue-depth", copy.queue_depth, "io_uring queue depth per thread (default 64)")
      ->check(CLI::Range(1, 4096));
  copy_cmd->add_flag("--direct", copy.direct_io, "O_DIRECT reads and writes (bypass the page cache)");
  copy_cmd->add_flag("--fsync", copy.fsync, "fsync each file before renaming it into place");
  copy_cmd->add_option("--io-backend", backend, "auto | uring | sync (pread/pwrite)")
      ->check(CLI::IsMember({"auto", "uring", "sync"}));
  copy_cmd->add_option("--progress", progress, "auto | tty | plain | none")
      ->check(CLI::IsMember({"auto", "tty", "plain", "none"}));
  copy_cmd->add_flag("-q,--quiet", quiet, "no progress and no summary (errors are still printed)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    std::replace(what.begin(), what.end(), '\n', ' ');
    std::fprintf(stderr, "barge: error: %s (see barge --help)\n", what.c_str());
    return pipeline::kExitFatal;
  }
  if (quiet) io::set_log_level(io::LogLevel::kWarn);

  try {
    if (*copy_cmd) {
      copy.destination = copy_paths.back();
      copy.sources.assign(copy_paths.begin(), copy_paths.end() - 1);
      copy.backend = *io::parse_backend_kind(backend);
      copy.progress = progress_mode(quiet, progress);
      pipeline::RunResult r = pipeline::run_copy(copy);
      print_summary(r, "copy", quiet);
      int rc = write_report(copy.report_path, pipeline::to_json(r, "copy"));
      return rc ? std::max(rc, r.exit_code) : r.exit_code;
    }
  } catch (const std::exception& ex) {
    io::log_error(ex.what());
    return pipeline::kExitFatal;
  }
  return pipeline::kExitFatal;
}
