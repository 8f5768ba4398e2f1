// barge backup / restore / snapshots / verify / forget: a repository of zstd-compressed,
// XXH3-checked blobs in packs, and snapshot manifests (pipeline/repository.hpp,
// docs/FORMAT.md). Every entry point runs alone or on every rank of an MPI job (`comm`),
// and returns on every rank with the same exit code; rank 0 holds the job's result.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "pipeline/progress.hpp"
#include "pipeline/repo_format.hpp"
#include "pipeline/stats.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline {

enum class BackupMode { kAuto, kFull, kIncremental, kDifferential };

struct BackupOptions {
  std::string source;  // a directory
  std::string repo;
  // kAuto: incremental when the repository has a snapshot, else full. Incremental and
  // differential without an earlier (full) snapshot become full, and say so.
  BackupMode mode = BackupMode::kAuto;
  int level = 3;  // zstd level
  std::string tag;
  bool checksum = false;  // read every file; store only chunks whose content changed
  bool xattrs = false;
  std::vector<std::string> excludes, includes;
  uint64_t chunk_bytes = 0;  // new repository only (0: 4 MiB); an existing one keeps its own
  uint64_t memory_bytes = 256ull << 20;
  unsigned threads = 0;  // 0: default
  uint64_t pack_bytes = 64ull << 20;
  ProgressMode progress = ProgressMode::kAuto;
  double progress_interval_s = 0;
};

struct BackupResult {
  RunResult run;
  repo::Snapshot snapshot;  // summary (no entries); id empty when none was written
  uint64_t bytes_read = 0;  // file bytes read this run (unchanged files are not read)
};
BackupResult run_backup(const BackupOptions& opts, transport::Comm& comm);

struct RestoreOptions {
  std::string repo;
  std::string destination;
  std::string snapshot = "latest";
  std::vector<std::string> paths;  // --path: restore only these (and what is below them)
  bool xattrs = true;              // restore the xattrs the snapshot holds
  unsigned threads = 0;
  ProgressMode progress = ProgressMode::kAuto;
  double progress_interval_s = 0;
};
struct RestoreResult {
  RunResult run;
  std::string snapshot_id;
};
RestoreResult run_restore(const RestoreOptions& opts, transport::Comm& comm);

// Every snapshot's summary (entries dropped), oldest first.
io::Result<std::vector<repo::Snapshot>> list_snapshots(const std::string& repo_path);

struct RepoVerifyOptions {
  std::string repo;
  std::string snapshot;  // empty: every snapshot
  unsigned threads = 0;
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

}  // namespace barge::pipeline
