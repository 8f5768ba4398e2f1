// barge migrate run: the full copy of the live source, then catch-up passes (sync of what
// changed, no deletions: those wait for the cutover) until the remaining difference is below
// --until-delta or stops shrinking. Every pass is journaled; files that changed while being
// read are not put in place and are taken again by the next pass. Killed or stopped (SIGTERM,
// a Slurm time limit), the same command resumes the pass under way.
#pragma once

#include <optional>
#include <string>

#include "pipeline/engine/copy_options.hpp"
#include "pipeline/migrate/state.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline::migrate {

struct Delta {
  enum Kind { kBytes, kFiles, kSeconds } kind = kBytes;
  double value = 0;
};

struct MigrateRunOptions {
  CopyOptions copy;  // engine knobs; SRC and DST come from the state
  std::string state_dir;
  std::optional<Delta> until;
  unsigned max_passes = 10;  // the full pass included
  std::string metrics_path;  // Prometheus text format, rewritten during the run
  double metrics_interval_s = 5;
  bool keep = true;  // keep what each pass replaces or deletes, for rollback (keep.hpp)
  bool quiet = false;
};

struct MigrateRunResult {
  int exit_code = 0;
  std::string fatal;
  std::string stop_reason;         // why the passes ended
  std::vector<PassRecord> passes;  // this run's
  std::string phase;
};

// Collective under mpirun/srun: every rank runs the passes, rank 0 keeps the state.
MigrateRunResult run_migrate(const MigrateRunOptions& opts, transport::Comm& comm);

// Why a pass should be the last: the delta under the threshold, not shrinking, nothing
// changed, or the pass count; "" to go on.
std::string stop_reason(const std::vector<PassRecord>& passes, const std::optional<Delta>& until,
                        unsigned max_passes);

}  // namespace barge::pipeline::migrate
