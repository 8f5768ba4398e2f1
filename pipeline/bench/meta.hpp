// barge bench meta: mdtest-like metadata phases across ranks, with latency percentiles per
// phase (which mdtest lacks) and stonewalling with wear-out.
//
// Each rank works in its own tree PATH/barge-meta.<rank>/ (mdtest -u): tree create, then
// directory create/stat/remove on --dirs directories, file create/stat/read/remove on --files
// files, then tree remove. Every phase starts after a barrier; its rate is the ops of every
// rank over the slowest rank's time, and its latencies merge exactly across ranks.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "io/result.hpp"
#include "pipeline/bench/histogram.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline::bench {

struct MetaBenchOptions {
  std::string path;  // an existing directory
  uint64_t files_per_rank = 0;
  uint64_t dirs_per_rank = 0;  // 0: as many as files
  uint64_t file_bytes = 0;     // written at create and read back in the read phase (mdtest -w/-e)
  double stonewall_s = 0;      // create phases stop issuing after S s, then wear out
  bool quiet = false;
};

io::Status validate(const MetaBenchOptions& o);

struct MetaPhase {
  std::string name;  // tree_create, dir_create, dir_stat, ..., tree_remove
  uint64_t ops = 0;
  double seconds = 0;  // the slowest rank's
  LatencyHistogram latency;
  std::optional<uint64_t> stonewall_ops;  // created by the stonewall (every rank)
  std::optional<double> stonewall_seconds;
  double ops_per_second() const { return seconds > 0 ? static_cast<double>(ops) / seconds : 0; }
};

struct MetaBenchResult {
  MetaBenchOptions options;
  int rank_count = 1;
  std::vector<MetaPhase> phases;
  std::map<std::string, uint64_t> errors;
  int exit_code = 0;
};

// Collective. Only rank 0's result is complete.
MetaBenchResult run_meta_bench(const MetaBenchOptions& o, transport::Comm& comm);
nlohmann::json to_json(const MetaBenchResult& r);
std::string human_summary(const MetaBenchResult& r);

}  // namespace barge::pipeline::bench
