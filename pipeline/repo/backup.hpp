// barge backup / restore / snapshots / verify / forget: a repository of zstd-compressed,
// XXH3-checked blobs in packs, and snapshot manifests (pipeline/repo/repository.hpp,
// docs/FORMAT.md). Every entry point runs alone or on every rank of an MPI job (`comm`),
// and returns on every rank with the same exit code; rank 0 holds the job's result.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/core/engine_options.hpp"
#include "pipeline/core/progress.hpp"
#include "pipeline/core/stats.hpp"
#include "pipeline/repo/repo_format.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline {

enum class BackupMode { kAuto, kFull, kIncremental, kDifferential };

struct BackupOptions : EngineOptions {
  BackupOptions() { chunk_bytes = 0; }  // 0: 4 MiB for a new repository
  std::string source;                   // a directory, neither inside the repository nor holding it
  std::string repo;
  // kAuto: incremental when the repository has a snapshot, else full. An incremental
  // compares with the newest intact snapshot of any kind; a differential with the newest
  // intact full one. Without one they become full, and say so (a warning, shown with -q).
  BackupMode mode = BackupMode::kAuto;
  int level = 3;  // zstd level
  std::string tag;
  bool checksum = false;  // read every file; store only chunks whose content changed
  bool xattrs = false;
  std::vector<std::string> excludes, includes;
  // chunk_bytes: a new repository's only; an existing one keeps its own.
  uint64_t pack_bytes = 64ull << 20;
  ProgressMode progress = ProgressMode::kAuto;
  double progress_interval_s = 0;
};

struct BackupResult {
  RunResult run;
  repo::Snapshot snapshot;  // summary (no entries); id empty when none was written
  uint64_t bytes_read = 0;  // file bytes read this run (unchanged files are not read)
};
// Every option checked before anything is created: an error names the option.
io::Status validate(const BackupOptions& opts);
// Refuses (before anything is created) a repository inside the source, unless an --exclude
// leaves it out, and a source inside the repository. Paths are compared canonical.
io::Status check_backup_paths(const BackupOptions& opts);
// validate, check_backup_paths, then the backup. A run that writes no snapshot removes the
// packs it wrote.
BackupResult run_backup(const BackupOptions& opts, transport::Comm& comm);

struct RestoreOptions : EngineOptions {
  std::string repo;
  std::string destination;
  std::string snapshot = "latest";
  std::vector<std::string> paths;  // --path: restore only these (and what is below them)
  bool xattrs = true;              // restore the xattrs the snapshot holds
  ProgressMode progress = ProgressMode::kAuto;
  double progress_interval_s = 0;
};
struct RestoreResult {
  RunResult run;
  std::string snapshot_id;
};
// DST is refused (exit 2, nothing written) when it lies inside the repository, when the
// repository lies inside DST where the snapshot would write, and when it is a symlink not
// named "DST/" (with the slash, the directory it points to is restored into).
RestoreResult run_restore(const RestoreOptions& opts, transport::Comm& comm);

// One snapshot of the listing: its summary (entries dropped), or why it cannot be read.
struct SnapshotListing {
  std::string id;
  repo::Snapshot summary;  // id empty when damaged
  std::string damage;      // empty when intact
};
// Every snapshot, oldest first; a damaged one is listed with its damage, the rest as usual.
io::Result<std::vector<SnapshotListing>> list_snapshots(const std::string& repo_path);

struct RepoVerifyOptions : EngineOptions {
  std::string repo;
  std::string snapshot;  // empty: every snapshot
};
struct RepoVerifyResult {
  RunResult run;  // errors: one line per damaged file (and its snapshots)
  uint64_t blobs_checked = 0;
  uint64_t blobs_damaged = 0;
  uint64_t snapshots_checked = 0;
};
RepoVerifyResult run_repo_verify(const RepoVerifyOptions& opts, transport::Comm& comm);

struct ForgetOptions {
  std::string repo;
  unsigned keep_last = 0;
  bool dry_run = false;
};
struct ForgetResult {
  int exit_code = kExitOk;
  std::string fatal;
  std::vector<std::string> removed_snapshots;
  uint64_t packs_removed = 0;
  uint64_t bytes_freed = 0;
};
ForgetResult run_forget(const ForgetOptions& opts);

// barge repair REPO: rebuilds a missing or damaged config (and its copy config.bak): from
// the copy when it is intact, else derived from the snapshots (the chunk size is the length
// of any chunk that does not end its file). Refuses when it cannot be sure: no intact copy
// and no chunk size derivable (unless chunk_bytes is given), or a given chunk_bytes that
// disagrees with the snapshots.
struct RepairOptions {
  std::string repo;
  uint64_t chunk_bytes = 0;  // 0: derive it
};
struct RepairResult {
  int exit_code = kExitOk;
  std::string fatal;
  std::vector<std::string> actions;  // what was rebuilt, and from what; empty: nothing to do
};
RepairResult run_repair(const RepairOptions& opts);

}  // namespace barge::pipeline
