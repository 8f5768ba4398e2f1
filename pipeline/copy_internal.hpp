// Pieces shared by the single-process copy (copy.cpp) and the multi-rank copy
// (dist_copy.cpp). Not part of the library's interface.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <oneapi/tbb/enumerable_thread_specific.h>
#include <string>

#include "io/io_backend.hpp"
#include "pipeline/copy_stages.hpp"

namespace barge::pipeline {

// One I/O backend per thread, created on first use; remembers which kind it got.
class BackendSet {
 public:
  explicit BackendSet(io::BackendOptions opts) : opts_(opts) {}
  BackendSource source();
  std::string name() const;
  bool registered() const { return registered_.load(); }

 private:
  io::BackendOptions opts_;
  tbb::enumerable_thread_specific<std::unique_ptr<io::IoBackend>> backends_;
  std::atomic<bool> registered_{false};
  mutable std::mutex mu_;
  std::string name_;
};

void raise_fd_limit();
unsigned default_threads();
// Creates a symlink, fifo or device node (entry `index`) under a temporary name in
// parent_fd, applies its metadata and renames it into place; failures are named in ctx.
void create_special(CopyContext& ctx, int parent_fd, uint32_t index, RunResult& result);

}  // namespace barge::pipeline
