// The set-up of a backup before its run: options and paths checked, the repository opened
// and locked, leftovers swept, the kind decided (full, incremental, differential) and told
// to every rank.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "pipeline/repo/backup.hpp"
#include "pipeline/repo/repository.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline {

struct Decision {
  repo::SnapKind kind = repo::SnapKind::kFull;
  std::string parent, base_full;
  std::vector<std::string> notes;  // warnings: the backup is not what was asked, and why
};

// Rank 0: which kind this backup is and what it compares against. `parent` receives the
// parent snapshot, read whole: a damaged snapshot is passed over (and said so), never used.
io::Result<Decision> decide(const repo::Repository& r, BackupMode mode,
                            std::optional<repo::Snapshot>& parent);

// Rank 0: a REPO/sweep mark left by a failed run: the packs no snapshot references go.
void sweep_if_marked(const repo::Repository& r);

// Rank 0: opens (or creates) the repository, locks it, sweeps what a failed run left and
// decides the backup's kind. Returns the error that stops the backup, or "".
std::string open_and_decide(const BackupOptions& opts, std::optional<repo::Repository>& repository,
                            repo::RepoLock& lock, Decision& decision,
                            std::optional<repo::Snapshot>& parent);

// Rank 0's decision (kind, parent, base) on every rank.
void broadcast_decision(transport::Comm& comm, Decision& decision);

}  // namespace barge::pipeline
