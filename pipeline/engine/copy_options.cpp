#include "pipeline/engine/copy_options.hpp"

#include <string>

namespace barge::pipeline {

io::Status validate(const CopyOptions& opts) {
  if (opts.sources.empty()) return io::Error::plain("copy: need at least one SRC and a DST");
  if (opts.chunk_bytes < 4096 || opts.chunk_bytes % 4096 != 0) {
    return io::Error::plain("--chunk-size must be a multiple of 4 KiB, at least 4 KiB");
  }
  if (opts.chunk_bytes > (1ull << 30))
    return io::Error::plain("--chunk-size must be at most 1 GiB");
  if (opts.memory_bytes < 2 * opts.chunk_bytes) {
    return io::Error::plain("--memory must hold at least two chunks (" +
                            std::to_string(2 * opts.chunk_bytes) +
                            " bytes with this --chunk-size)");
  }
  if (opts.queue_depth == 0 || opts.queue_depth > 4096)
    return io::Error::plain("--queue-depth must be 1..4096");
  if (opts.threads > 1024) return io::Error::plain("--threads must be at most 1024");
  return io::Status::success();
}

}  // namespace barge::pipeline
