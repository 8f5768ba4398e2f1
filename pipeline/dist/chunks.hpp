// The MPI copy's chunk coordinator: rank 0 hands out batches of neighbouring chunks of the
// large files, in order, to whichever rank asks; every rank asks until none are left.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "transport/comm.hpp"

namespace barge::pipeline {

// Chunks of one large file handed out together: neighbouring chunks stay on one rank, so a
// parallel file system sees few writers per stripe (and one lock owner per region).
inline constexpr uint32_t kChunksPerBatch = 4;

// Rank 0's coordinator (a thread beside its transfer): chunk_counts per large file (by its
// run-wide id); done(file, chunk) says a resumed run has that chunk already (the last chunk
// is always handed out). Returns after telling every rank that none are left.
void chunk_coordinator(transport::Comm& comm, const std::vector<uint32_t>& chunk_counts,
                       const std::function<bool(uint32_t, uint32_t)>& done);

// One rank's side of it.
class ChunkClient {
 public:
  ChunkClient(transport::Comm& comm, uint32_t file_count) : comm_(comm), files_(file_count) {}
  // The next chunk handed to this rank; false once the coordinator has none left. Throws
  // WireError on a batch for a file it does not know.
  bool next(uint32_t& file, uint32_t& chunk);
  // A rank that stopped early still answers the protocol to the end: asks until none are
  // left, naming through `abandoned` the file of every batch it will never write.
  void drain(const std::function<void(uint32_t file)>& abandoned);

 private:
  transport::Comm& comm_;
  uint32_t files_;
  uint32_t file_ = 0, first_ = 0, count_ = 0;
  bool done_ = false;
};

}  // namespace barge::pipeline
