// barge migrate cutover: the downtime. Freezes SRC (--freeze-cmd, or checks that it has
// stopped changing), makes the final pass with deletions (what it replaces or deletes kept
// for rollback), verifies DST against SRC — the entries and their metadata from a walk of
// both, the contents against the checksums recorded as the passes copied (SRC re-read only
// for a file without one, everything with --full-verify) — and reports the downtime (freeze
// to verified) beside the one predicted. --unfreeze-cmd runs at the end, whatever the
// outcome once the freeze succeeded.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "pipeline/engine/copy_options.hpp"
#include "pipeline/migrate/state.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline::migrate {

struct CutoverOptions {
  CopyOptions copy;  // engine knobs
  std::string state_dir;
  std::string freeze_cmd, unfreeze_cmd;  // run by /bin/sh -c on rank 0
  bool full_verify = false;
  bool keep = true;
  double quiesce_seconds = 2;  // without --freeze-cmd: SRC must not change in this long
};

struct VerifyFigures {
  uint64_t files = 0, bytes = 0;      // regular files whose content was checked
  uint64_t from_manifest = 0;         // of them: against the passes' checksums
  uint64_t rehashed_source = 0;       // against SRC read again
  uint64_t entries = 0;               // every entry compared by name, type and metadata
  std::vector<std::string> problems;  // missing, extra, different (the first 20)
  uint64_t problem_count = 0;
  double seconds = 0;
  bool ok() const { return problem_count == 0; }
};

struct CutoverResult {
  int exit_code = 0;
  std::string fatal;
  PassRecord pass;
  VerifyFigures verify;
  double freeze_seconds = 0;    // the freeze command or the quiescence check
  double downtime_seconds = 0;  // freeze to verified
  std::optional<double> predicted_downtime_seconds;
  bool unfroze = false;
};

// Collective under mpirun/srun (the final pass runs on every rank; rank 0 freezes and
// verifies). The result is written to DIR/cutover.json.
CutoverResult run_cutover(const CutoverOptions& opts, transport::Comm& comm);

// DST against SRC (see above); `full` hashes every SRC file again. Rank 0's work.
VerifyFigures verify_tree(const State& s, bool full, unsigned threads);

}  // namespace barge::pipeline::migrate
