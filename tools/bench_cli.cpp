// barge bench disk, meta, pipeline and net: flags into options, the run, the summary, --json
// and --plot.
#include "tools/bench_cli.hpp"

#include <cstdio>
#include <fstream>

#include "io/log.hpp"
#include "pipeline/bench/plot.hpp"
#include "pipeline/core/stats.hpp"
#include "tools/cli_common.hpp"

namespace barge::tools {
namespace {

// "500us", "2ms", "1.5s", "800ns" (a bare number is microseconds) into nanoseconds.
CLI::Validator duration_validator() {
  return CLI::Validator(
      [](std::string& s) -> std::string {
        size_t pos = 0;
        double v = 0;
        try {
          v = std::stod(s, &pos);
        } catch (const std::exception&) {
          return "not a duration: '" + s + "' (examples: 500us, 2ms, 1s)";
        }
        std::string unit = s.substr(pos);
        double scale = unit == "ns"                   ? 1
                       : unit == "us" || unit.empty() ? 1e3
                       : unit == "ms"                 ? 1e6
                       : unit == "s"                  ? 1e9
                                                      : -1;
        if (scale < 0 || v <= 0) return "not a duration: '" + s + "' (examples: 500us, 2ms, 1s)";
        s = std::to_string(static_cast<uint64_t>(v * scale));
        return {};
      },
      "DURATION");
}

void add_disk_flags(CLI::App* c, BenchCli& cli) {
  auto& o = cli.disk;
  c->add_option("path", o.path, "existing directory to test in (barge-bench.* files inside)")
      ->required();
  c->add_option("--rw", cli.rw, "read | write | randread | randwrite | readwrite | randrw")
      ->check(
          CLI::IsMember({"read", "write", "randread", "randwrite", "readwrite", "rw", "randrw"}));
  c->add_option("--mix", o.mix_read_percent, "readwrite/randrw: percent of reads (default 50)")
      ->check(CLI::Range(0, 100));
  c->add_option("--bs", o.block_bytes, "block size (default 1M)")->transform(size_validator());
  c->add_option("--qd", o.queue_depth, "io_uring queue depth per thread (default 32)")
      ->check(CLI::Range(1, 4096));
  c->add_option("--size", o.size_bytes, "bytes per rank (the file, or the rank's part of it)")
      ->transform(size_validator())
      ->required();
  c->add_option("--runtime", o.runtime_s, "run S seconds, wrapping around (default: one pass)");
  c->add_option("--ramp", o.ramp_s, "do not count the first S seconds");
  c->add_flag("--direct", o.direct, "O_DIRECT (bypass the page cache)");
  c->add_option("--threads", o.threads, "threads per rank, each with its own ring (default 1)")
      ->check(CLI::Range(1, 1024));
  c->add_flag("--file-per-rank", cli.file_per_rank, "a file per rank (the default)");
  c->add_flag("--shared-file", o.shared_file, "all ranks in one file, each in its own part");
  c->add_flag("--fsync-end", o.fsync_end, "fsync at the end, inside the timed run");
  c->add_flag("--sqpoll", o.sqpoll, "io_uring SQPOLL (a kernel thread submits)");
  c->add_flag("--keep", o.keep, "keep the test files (a later run reuses them)");
  c->add_flag(
      "--no-fallocate", [&o](int64_t) { o.preallocate = false; },
      "write tests: do not preallocate the file (fio's fallocate=none)");
  c->add_option("--stonewall", o.stonewall_s,
                "stop issuing after S s, then every thread wears out to the fastest's count");
  c->add_option("--interval", o.interval_s, "print per-interval figures every S seconds")
      ->check(CLI::PositiveNumber);
  c->add_flag("--find-knee", o.find_knee, "step the queue depth 1, 2, 4, ... to the knee");
  c->add_option("--max-qd", o.knee_max_depth, "--find-knee: the deepest queue (default 256)");
  c->add_option("--knee-gain", o.knee_gain_percent,
                "--find-knee: the gain (percent) under which a doubling adds nothing (default 5)");
  c->add_option("--latency-target", o.latency_target_ns, "--find-knee: p99 limit, e.g. 2ms")
      ->transform(duration_validator());
  c->add_option("--steady-state", o.steady_state_percent,
                "stop once the interval bandwidth varies by less than PCT over the window");
  c->add_option("--steady-window", o.steady_window_s, "the steady-state window (default 10 s)");
  c->add_option("--json", cli.json_path, "write the summary, timeline and bins to FILE");
  c->add_option("--plot", cli.plot_path, "draw throughput and latency over time to FILE.svg");
}

int write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  f.close();
  if (!f) {
    io::log_error("cannot write " + path);
    return pipeline::kExitFatal;
  }
  return 0;
}

int run_disk(BenchCli& cli, transport::Comm& comm, bool quiet) {
  auto& o = cli.disk;
  o.rw = *pipeline::bench::parse_rw_mode(cli.rw);
  o.quiet = quiet;
  o.print_intervals = cli.disk_cmd->count("--interval") > 0;
  if (cli.file_per_rank && o.shared_file) {
    if (comm.rank() == 0)
      io::log_error("bench disk: --file-per-rank and --shared-file exclude each other");
    return pipeline::kExitFatal;
  }
  if (auto st = pipeline::bench::validate(o); !st) {
    if (comm.rank() == 0) io::log_error("bench disk: " + st.error().message);
    return pipeline::kExitFatal;
  }
  auto r = pipeline::bench::run_disk_bench(o, comm);
  if (comm.rank() != 0 || r.runs.empty()) return r.exit_code;
  if (!quiet) std::fputs(pipeline::bench::human_summary(r).c_str(), stdout);
  std::fflush(stdout);
  int rc = r.exit_code;
  if (!cli.json_path.empty())
    rc = std::max(rc, write_report(cli.json_path, pipeline::bench::to_json(r)));
  if (!cli.plot_path.empty()) {
    const auto& run = r.knee ? r.runs[*r.knee] : r.runs.back();
    std::string title = std::string("barge bench disk ") + pipeline::bench::rw_mode_name(o.rw) +
                        ", bs " + std::to_string(o.block_bytes) + ", qd " +
                        std::to_string(run.queue_depth);
    rc = std::max(rc, write_text(cli.plot_path, pipeline::bench::timeline_svg(title, run.intervals,
                                                                              o.interval_s)));
  }
  return rc;
}

void add_meta_flags(CLI::App* c, BenchCli& cli) {
  auto& o = cli.meta;
  c->add_option("path", o.path, "existing directory (barge-meta.<rank> trees inside)")->required();
  c->add_option("--files", o.files_per_rank, "files per rank")
      ->required()
      ->check(CLI::PositiveNumber);
  c->add_option("--dirs", o.dirs_per_rank, "directories per rank (default: as many as files)");
  c->add_option("--bytes", o.file_bytes, "bytes written at create and read back (default 0)")
      ->transform(size_validator());
  c->add_option("--stonewall", o.stonewall_s,
                "create phases stop after S s, then every rank wears out to the busiest's count");
  c->add_option("--json", cli.json_path, "write the phases to FILE");
}

int run_meta(BenchCli& cli, transport::Comm& comm, bool quiet) {
  auto& o = cli.meta;
  o.quiet = quiet;
  if (auto st = pipeline::bench::validate(o); !st) {
    if (comm.rank() == 0) io::log_error("bench meta: " + st.error().message);
    return pipeline::kExitFatal;
  }
  auto r = pipeline::bench::run_meta_bench(o, comm);
  if (comm.rank() != 0 || r.phases.empty()) return r.exit_code;
  if (!quiet) std::fputs(pipeline::bench::human_summary(r).c_str(), stdout);
  std::fflush(stdout);
  if (cli.json_path.empty()) return r.exit_code;
  return std::max(r.exit_code, write_report(cli.json_path, pipeline::bench::to_json(r)));
}

void add_pipeline_flags(CLI::App* c, BenchCli& cli) {
  auto& o = cli.stages;
  c->add_option("--size", o.size_bytes, "bytes through each stage (default 1G)")
      ->transform(size_validator());
  c->add_option("--chunk-size", o.chunk_bytes, "one work unit (default 1M)")
      ->transform(size_validator());
  c->add_option("--compressible", o.compressible_percent,
                "percent of each 4 KiB that compresses away (default 0: random data)")
      ->check(CLI::Range(0, 100));
  c->add_option("--levels", o.levels, "zstd levels to measure, e.g. 1,3,9 (default 1,3)")
      ->delimiter(',');
  c->add_option("--threads", o.threads, "end-to-end threads (default: every core)")
      ->check(CLI::Range(1, 1024));
  c->add_flag(
      "--no-tls", [&o](int64_t) { o.tls = false; }, "leave out the TLS stages");
  c->add_option("--json", cli.json_path, "write the stage rates to FILE");
}

int run_pipeline(BenchCli& cli, transport::Comm& comm, bool quiet) {
  if (comm.rank() != 0) return pipeline::kExitOk;  // one process measures its own cores
  if (auto st = pipeline::bench::validate(cli.stages); !st) {
    io::log_error("bench pipeline: " + st.error().message);
    return pipeline::kExitFatal;
  }
  auto r = pipeline::bench::run_pipeline_bench(cli.stages);
  if (!quiet) std::fputs(pipeline::bench::human_summary(r).c_str(), stdout);
  std::fflush(stdout);
  if (cli.json_path.empty()) return pipeline::kExitOk;
  return write_report(cli.json_path, pipeline::bench::to_json(r));
}

void add_net_flags(CLI::App* c, BenchCli& cli) {
  auto& o = cli.net;
  c->add_option("--transport", o.transports,
                "mpi, tcp, tls, plain (comma-separated; default: mpi with 2+ ranks, tcp, tls)")
      ->delimiter(',');
  c->add_option("--streams", o.streams, "stream counts, one run each (default 1,2,4,8)")
      ->delimiter(',');
  c->add_option("--bs", o.block_bytes, "block (message) size (default 1M)")
      ->transform(size_validator());
  c->add_option("--runtime", o.runtime_s, "seconds per run (default 3)");
  c->add_option("--size", o.size_bytes, "instead of --runtime: bytes per pair and run")
      ->transform(size_validator());
  c->add_option("--interval", o.interval_s,
                "timeline interval in seconds; given, each interval is printed live")
      ->check(CLI::PositiveNumber);
  c->add_option("--ping-count", o.ping_count, "round trips per transport (default 1000; 0: none)");
  c->add_option("--ping-bytes", o.ping_bytes, "round-trip message size (default 64)")
      ->transform(size_validator());
  c->add_option("--net", o.net, "the receivers' addresses from this IPv4 network (a.b.c.d/n)");
  c->add_option("--timeout", o.timeout_ms, "a silent stream fails after MS milliseconds")
      ->check(CLI::Range(100, 3600000));
  c->add_option("--json", cli.json_path, "write the runs, timelines and round trips to FILE");
  c->add_option("--plot", cli.plot_path, "draw the fastest run's timeline to FILE.svg");
}

int run_net(BenchCli& cli, transport::Comm& comm, bool quiet) {
  auto& o = cli.net;
  o.quiet = quiet;
  o.print_intervals = cli.net_cmd->count("--interval") > 0;
  if (cli.net_cmd->count("--size") && !cli.net_cmd->count("--runtime")) o.runtime_s = 0;
  if (auto st = pipeline::bench::validate(o, comm.size()); !st) {
    if (comm.rank() == 0) io::log_error("bench net: " + st.error().message);
    return pipeline::kExitFatal;
  }
  auto r = pipeline::bench::run_net_bench(o, comm);
  if (comm.rank() != 0) return r.exit_code;
  if (!r.failure.empty()) io::log_error(r.failure);
  if (!quiet) std::fputs(pipeline::bench::human_summary(r).c_str(), stdout);
  std::fflush(stdout);
  int rc = r.exit_code;
  if (!cli.json_path.empty())
    rc = std::max(rc, write_report(cli.json_path, pipeline::bench::to_json(r)));
  if (!cli.plot_path.empty() && r.best) {
    const auto& run = r.runs[*r.best];
    std::string title = "barge bench net " + run.transport + ", " + std::to_string(run.streams) +
                        " streams, bs " + std::to_string(o.block_bytes);
    rc = std::max(rc, write_text(cli.plot_path, pipeline::bench::timeline_svg(title, run.intervals,
                                                                              o.interval_s)));
  }
  return rc;
}

}  // namespace

void add_bench_commands(CLI::App& app, BenchCli& cli, bool& quiet) {
  cli.cmd = app.add_subcommand("bench", "storage and pipeline instruments (fio/IOR-class)");
  cli.cmd->require_subcommand(1);
  cli.disk_cmd =
      cli.cmd->add_subcommand("disk", "io_uring disk benchmark: bandwidth, IOPS, latency");
  add_disk_flags(cli.disk_cmd, cli);
  cli.disk_cmd->add_flag("-q,--quiet", quiet, "no summary");
  cli.meta_cmd =
      cli.cmd->add_subcommand("meta", "mdtest-like metadata phases with latency percentiles");
  add_meta_flags(cli.meta_cmd, cli);
  cli.meta_cmd->add_flag("-q,--quiet", quiet, "no summary");
  cli.pipeline_cmd =
      cli.cmd->add_subcommand("pipeline", "throughput per core of each engine stage, end to end");
  add_pipeline_flags(cli.pipeline_cmd, cli);
  cli.pipeline_cmd->add_flag("-q,--quiet", quiet, "no summary");
  cli.net_cmd = cli.cmd->add_subcommand(
      "net", "rank-to-rank throughput over MPI and barge's TCP/TLS streams, 1..N streams");
  add_net_flags(cli.net_cmd, cli);
  cli.net_cmd->add_flag("-q,--quiet", quiet, "no summary");
}

int run_bench_commands(BenchCli& cli, transport::Comm& comm, bool quiet) {
  if (!cli.cmd || !*cli.cmd) return -1;
  if (*cli.disk_cmd) return run_disk(cli, comm, quiet);
  if (*cli.meta_cmd) return run_meta(cli, comm, quiet);
  if (*cli.pipeline_cmd) return run_pipeline(cli, comm, quiet);
  if (*cli.net_cmd) return run_net(cli, comm, quiet);
  return pipeline::kExitFatal;
}

}  // namespace barge::tools
