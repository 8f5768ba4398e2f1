// barge copy: the library entry point behind `barge copy SRC... DST`.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "io/io_backend.hpp"
#include "io/result.hpp"
#include "pipeline/core/stats.hpp"
#include "pipeline/engine/copy_options.hpp"
#include "pipeline/engine/copy_stages.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline {

// Runs the copy. Usage errors (bad options, missing sources, destination inside a source,
// ...) come back as result.fatal with exit code 2 and nothing written.
RunResult run_copy(const CopyOptions& opts);

// How a planned copy's files get their bytes. Without `transfer`, copy's own: read → hash →
// write → commit (with --resume, less what is done). recv's brings them from the network.
struct PlannedCopy {
  using Transfer = std::function<void(CopyContext&, io::BufferPool&, unsigned threads,
                                      const std::vector<uint8_t>& include)>;
  Transfer transfer;
  size_t buffers_per_unit = 1;  // 2 when the units carry a stored (compressed) form
  size_t min_units = 1;         // units the transfer needs in flight at least
  const char* verb = "copy";    // progress lines
  // A sync's verdicts (send --sync), one per entry (kAct*): regular files without
  // kActTransfer keep what DST holds (a hard link to them is made again only where it
  // differs), symlinks and special files without kActCreate are left, kActMeta alone applies
  // metadata in place. Null: everything is copied.
  const std::vector<uint8_t>* actions = nullptr;
  // copy --tune's probes: the transfer stops after this many seconds (0: no limit), with
  // kProbeTimeUp as its fatal error; what was committed by then is counted.
  double time_limit_s = 0;
};
inline constexpr const char* kProbeTimeUp = "the probe's time is up";

// The copy after its walk, on one rank: create (directories, symlinks, special files) →
// transfer → hard links → directory metadata → report. `result` carries the walk's fields.
RunResult copy_planned(const CopyOptions& opts, const Plan& plan, RunResult result,
                       std::chrono::steady_clock::time_point t0, const PlannedCopy& how);

// Runs `opts` on all ranks of `comm` (with one rank: run_copy), the phases of
// pipeline/dist/dist_copy.hpp. Every rank returns the same exit code; rank 0's result holds
// the totals, every rank's errors and the per-rank stats.
RunResult run_copy_ranks(const CopyOptions& opts, transport::Comm& comm);

}  // namespace barge::pipeline
