// The instruments of the CLI: barge bench disk, meta, pipeline and net (pipeline/bench).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "pipeline/bench/disk.hpp"
#include "pipeline/bench/meta.hpp"
#include "pipeline/bench/net.hpp"
#include "pipeline/bench/stages.hpp"
#include "transport/comm.hpp"

namespace barge::tools {

struct BenchCli {
  pipeline::bench::DiskBenchOptions disk;
  pipeline::bench::MetaBenchOptions meta;
  pipeline::bench::PipelineBenchOptions stages;
  pipeline::bench::NetBenchOptions net;
  std::string rw = "read";
  std::string json_path, plot_path;
  bool file_per_rank = false;
  CLI::App* cmd = nullptr;
  CLI::App* disk_cmd = nullptr;
  CLI::App* meta_cmd = nullptr;
  CLI::App* pipeline_cmd = nullptr;
  CLI::App* net_cmd = nullptr;
};

void add_bench_commands(CLI::App& app, BenchCli& cli, bool& quiet);
// -1 when bench was not chosen; otherwise the exit code.
int run_bench_commands(BenchCli& cli, transport::Comm& comm, bool quiet);

}  // namespace barge::tools
