// barge bench pipeline: the throughput per core of each engine stage on data of a chosen
// compressibility (hash, zstd compress at each level, decompress+check, TLS encrypt and
// decrypt), then the end-to-end rate of the engine's graph with a memory source and sink,
// naming the stage the graph spent most of its time in (the bottleneck).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "io/result.hpp"

namespace barge::pipeline::bench {

struct PipelineBenchOptions {
  uint64_t size_bytes = 1ull << 30;   // bytes through each stage
  uint64_t chunk_bytes = 1ull << 20;  // one work unit
  unsigned compressible_percent = 0;  // share of each 4 KiB that zstd can squeeze (0: random)
  std::vector<int> levels = {1, 3};   // zstd levels measured
  unsigned threads = 0;               // end to end (0: every core)
  bool tls = true;
};

io::Status validate(const PipelineBenchOptions& o);

struct StageRate {
  std::string name;        // "hash", "compress-1", "decompress+check", "tls-encrypt", ...
  uint64_t bytes = 0;      // raw bytes through the stage
  double cpu_seconds = 0;  // on the thread that ran it
  double wall_seconds = 0;
  double ratio = 0;  // compress: stored / raw
  double bytes_per_core_second() const { return cpu_seconds > 0 ? bytes / cpu_seconds : 0; }
};

struct PipelineBenchResult {
  PipelineBenchOptions options;
  std::vector<StageRate> stages;
  unsigned threads = 0;
  uint64_t end_to_end_bytes = 0;
  double end_to_end_seconds = 0;
  std::string end_to_end_stages;  // "memory → hash → compress-1 → decompress+check → memory"
  std::string bottleneck;         // the stage with the most busy time in the graph
  double end_to_end_rate() const {
    return end_to_end_seconds > 0 ? end_to_end_bytes / end_to_end_seconds : 0;
  }
};

// Throws std::runtime_error when a stage fails (a TLS handshake, a checksum mismatch).
PipelineBenchResult run_pipeline_bench(const PipelineBenchOptions& o);
nlohmann::json to_json(const PipelineBenchResult& r);
std::string human_summary(const PipelineBenchResult& r);

}  // namespace barge::pipeline::bench
