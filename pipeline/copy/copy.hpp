// barge copy: the library entry point behind `barge copy SRC... DST`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/io_backend.hpp"
#include "io/result.hpp"
#include "pipeline/core/stats.hpp"
#include "pipeline/engine/copy_options.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline {

// Runs the copy. Usage errors (bad options, missing sources, destination inside a source,
// ...) come back as result.fatal with exit code 2 and nothing written.
RunResult run_copy(const CopyOptions& opts);

// Runs `opts` on all ranks of `comm` (with one rank: run_copy), the phases of
// pipeline/dist/dist_copy.hpp. Every rank returns the same exit code; rank 0's result holds
// the totals, every rank's errors and the per-rank stats.
RunResult run_copy_ranks(const CopyOptions& opts, transport::Comm& comm);

}  // namespace barge::pipeline
