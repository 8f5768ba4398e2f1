// The engine's options, the same in every command that moves data (copy, sync, backup,
// restore, verify): each command's options struct embeds them, and --threads, --memory,
// --queue-depth, --chunk-size and --io-backend mean the same everywhere.
#pragma once

#include <cstdint>

#include "io/io_backend.hpp"

namespace barge::pipeline {

inline constexpr uint64_t kDefaultChunkBytes = 4ull << 20;  // see perf/RESULTS.md
inline constexpr uint64_t kDefaultMemoryBytes = 256ull << 20;

struct EngineOptions {
  uint64_t chunk_bytes = kDefaultChunkBytes;    // large files are cut into chunks of this
  uint64_t memory_bytes = kDefaultMemoryBytes;  // bound on payload buffers in flight per rank
  unsigned threads = 0;                         // 0: the node's default shared among its ranks
  unsigned queue_depth = 64;                    // io_uring submission queue entries per ring
  uint32_t max_files_per_unit = 128;            // small files batched into one work unit
  io::BackendKind backend = io::BackendKind::kAuto;
  // --tune (copy, send, backup): copy probes chunk, depth, threads and O_DIRECT before the
  // copy; send and backup tune the zstd level on the job itself. --tune-seconds bounds it.
  bool tune = false;
  double tune_seconds = 5;
};

}  // namespace barge::pipeline
