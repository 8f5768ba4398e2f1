// barge copy across ranks (mpirun / srun). Every rank runs the same flow graph as a single
// process; the work is spread in named collective phases, each ending in an agreement:
//
//   walk      all ranks list directories handed out by a coordinator on rank 0 (a shared
//             queue: whoever is idle gets the next directories), creating each destination
//             directory as it is discovered, before it is handed out
//   plan      files cut into several chunks are exchanged (allgather); each gets a run-wide
//             id and an owner (the rank that found it)
//   create    symlinks and special files (by their finder); owners create one named
//             temporary per large file and reserve its space
//   transfer  each rank copies the small files it found, then asks rank 0's coordinator for
//             batches of neighbouring chunks of large files until none are left
//   finalize  owners rename completed large files into place (once, after every rank's
//             chunks are in); then directory metadata
//   report    counters, errors and manifest entries are gathered on rank 0
#pragma once

#include <cstdint>
#include "transport/comm.hpp"

namespace barge::pipeline {

// Chunks of one large file handed out together: neighbouring chunks stay on one rank, so a
// parallel file system sees few writers per stripe (and one lock owner per region).
inline constexpr uint32_t kChunksPerBatch = 4;

}  // namespace barge::pipeline
