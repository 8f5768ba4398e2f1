// barge backup: walk (all ranks) → decide per file: unchanged since the parent snapshot
// (size, mtime, ctime, inode) → reuse its blobs; otherwise read → hash → compress → pack.
// Each rank stores into its own packs; rank 0 merges every rank's entries into the snapshot
// manifest and renames it into place only after every pack is synced.
#include "pipeline/repo/backup.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include "io/buffer_pool.hpp"
#include "io/host_name.hpp"
#include "io/log.hpp"
#include "io/xattr.hpp"
#include "pipeline/core/rank_stats.hpp"
#include "pipeline/core/wire.hpp"
#include "pipeline/dist/dist_internal.hpp"
#include "pipeline/engine/codec_stages.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/engine/graph.hpp"
#include "pipeline/repo/backup_run.hpp"
#include "pipeline/repo/backup_setup.hpp"
#include "pipeline/repo/rank_entries.hpp"
#include "pipeline/repo/repository.hpp"

namespace barge::pipeline {
namespace {

using Clock = std::chrono::steady_clock;
using repo::BlobRef;
using repo::SnapEntry;
using repo::SnapKind;

}  // namespace

void BackupRun::execute(BackupResult& out) {
  RunResult& result = out.run;
  auto t0 = Clock::now();
  const unsigned threads = engine_threads(opts_.threads, comm_.size());
  // More threads than cores: reads block in the kernel while others compress.
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  raise_fd_limit();
  if (!load_parent(result)) return;

  walk(threads);
  result.walk_seconds = since(t0);
  prepare();
  auto tb = Clock::now();
  transfer(threads);
  double busy = since(tb);
  result.tune = tune_;
  if (auto st = packs_->finish(); !st) ctx_fatal(st.error().message);
  bool all_ok = comm_.agree(fatal_.empty());

  // merge on rank 0; the snapshot appears only if every rank's packs are durable
  std::string mine = serialize_local();
  std::vector<std::string> blobs = comm_.gather(mine, 0);
  RankStats me;
  me.bytes = bytes_read_.load();
  me.files = files_read_.load();
  me.busy_seconds = busy;
  me.walk_seconds = result.walk_seconds;
  me.bytes_stored = packs_->bytes_written();
  uint64_t stored_new = 0;
  for (const RankStats& k : reduce_rank_stats(comm_, me, result, comm_.size() > 1))
    stored_new += k.bytes_stored;
  std::vector<std::string> errs = errors_.take();
  for (auto& e : walk_errors_.take()) errs.push_back(std::move(e));
  std::vector<std::string> all_errors;
  for (const std::string& b : comm_.gather(encode_strings(errs), 0)) {
    for (auto& e : decode_strings(b)) all_errors.push_back(std::move(e));
  }
  std::string fatal_any;
  for (const std::string& f : comm_.gather(fatal_, 0))
    if (fatal_any.empty() && !f.empty()) fatal_any = f;
  uint64_t signalled = stop_signal().load() != 0 ? 1 : 0;
  comm_.allreduce_max(std::span<uint64_t>(&signalled, 1));

  if (comm_.rank() == 0) {
    result.errors = std::move(all_errors);
    result.fatal = fatal_any;
    out.bytes_read = result.bytes_transferred;
    if (all_ok) save(out, blobs, stored_new);
  }
  discard_if_unsaved(out);
  if (comm_.rank() == 0) {
    result.seconds = since(t0);
    result.resumable = signalled != 0;
    result.exit_code = exit_code_for(signalled != 0, !result.fatal.empty(), !result.errors.empty());
  }
  result.exit_code = agree_exit_code(comm_, result.exit_code);
}

// The parent snapshot: rank 0 read it in decide, the others read it now (it is on the
// repository's shared file system). Agreed; false ends the run.
bool BackupRun::load_parent(RunResult& result) {
  if (decision_.parent.empty()) return true;
  std::string error;
  if (!parent_) {
    auto p = repo_.load_snapshot(decision_.parent);
    if (p)
      parent_ = std::move(p.value());
    else
      error = p.error().message;
  }
  if (!comm_.agree(error.empty())) {
    result.fatal =
        error.empty() ? "a rank could not read the parent snapshot " + decision_.parent : error;
    result.exit_code = kExitFatal;
    return false;
  }
  parent_index_.reserve(parent_->entries.size());
  for (uint32_t i = 0; i < parent_->entries.size(); ++i)
    parent_index_.emplace(parent_->entries[i].path, i);
  return true;
}

// Rank 0, every rank's packs durable: the merged snapshot saved (renamed into place).
void BackupRun::save(BackupResult& out, const std::vector<std::string>& blobs,
                     uint64_t stored_new) {
  RunResult& result = out.run;
  repo::Snapshot snap = merge(blobs, stored_new);
  snap.unreadable = result.errors.size();
  out.snapshot = snap;
  out.snapshot.entries.clear();
  result.files = snap.files;
  result.bytes = snap.bytes_raw;
  for (const SnapEntry& e : snap.entries) result.count_kind(e.meta.type);
  if (auto st = repo_.save_snapshot(snap); !st) {
    result.fatal = st.error().message;
    // A failure after the rename (syncing the directory) leaves the snapshot in place:
    // its packs must stay.
    if (!repo_.snapshot_exists(snap.id)) out.snapshot.id.clear();
  }
}

// No snapshot: every rank removes the packs it wrote, so that they neither fill the
// repository nor make the next run fail for want of the space they hold. Collective.
void BackupRun::discard_if_unsaved(BackupResult& out) {
  uint64_t written = comm_.rank() == 0 && !out.snapshot.id.empty() ? 1 : 0;
  comm_.allreduce_max(std::span<uint64_t>(&written, 1));
  if (written) return;
  repo::PackWriter::Discarded d = packs_->discard();
  uint64_t sums[3] = {d.packs, d.bytes, d.failed};
  comm_.allreduce_sum(sums);
  if (comm_.rank() != 0) return;
  std::string what = "no snapshot written";
  if (sums[0] != 0)
    what += "; the " + std::to_string(sums[0]) + " packs (" +
            Progress::human_bytes(static_cast<double>(sums[1])) + ") this run wrote were removed";
  if (sums[2] != 0) {
    // The next backup removes them (REPO/sweep), or forget does.
    auto st = repo::mark_sweep(repo_.path());
    what += "; " + std::to_string(sums[2]) + " could not be removed (" +
            (st ? std::string("the next backup will") : st.error().message + "; run barge forget") +
            ")";
  }
  std::string& fatal = out.run.fatal;
  if (!fatal.empty()) fatal += " (" + what + ")";
}

void BackupRun::ctx_fatal(const std::string& why) {
  std::lock_guard lock(mu_);
  if (fatal_.empty()) fatal_ = why;
  stop_ = true;
}

std::string BackupRun::encode_strings(const std::vector<std::string>& v) {
  WireWriter w;
  for (const std::string& s : v) w.str(s);
  return w.take();
}

std::vector<std::string> BackupRun::decode_strings(const std::string& b) {
  std::vector<std::string> out;
  WireReader r(b);
  while (!r.done()) out.push_back(r.str());
  return out;
}

// Entries this rank keeps (not dropped), with pack indices into its pack table.
std::string BackupRun::serialize_local() {
  RankEntriesWriter w(pack_table_.names());
  // A local leader that failed takes its local followers with it.
  std::map<std::pair<uint64_t, uint64_t>, bool> leader_failed;
  for (uint32_t f : plan_.files) {
    const io::FileMeta& m = plan_.entries[f].meta;
    if (m.nlink > 1 && !follower_[f] && failed(f)) leader_failed[{m.device, m.inode}] = true;
  }
  for (uint32_t i = 0; i < entries_.size(); ++i) {
    SnapEntry& s = entries_[i];
    if (failed(i)) continue;
    if (follower_[i] && leader_failed.count({s.meta.device, s.meta.inode})) {
      errors_.add(plan_.src_path(plan_.entries[i]) +
                  ": not in this snapshot (its hard-linked "
                  "twin could not be read)");
      continue;
    }
    if (include_[i]) {
      for (const BlobRef& c : work_[i].chunks)
        if (c.raw_bytes != 0) s.chunks.push_back(c);
    }
    w.add(s, follower_[i] != 0);
  }
  return w.take();
}

// Rank 0: every rank's entries (and pack names, renumbered) in one snapshot, sorted by
// path, hard links across ranks resolved, totals counted.
repo::Snapshot BackupRun::merge(const std::vector<std::string>& blobs, uint64_t stored_new) const {
  repo::Snapshot snap = merge_rank_entries(snapshot_header(), blobs);
  snap.bytes_stored_new = stored_new;
  return snap;
}

repo::Snapshot BackupRun::snapshot_header() const {
  repo::Snapshot snap;
  int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  snap.id = repo::new_snapshot_id(now);
  snap.kind = decision_.kind;
  snap.parent = decision_.parent;
  snap.base_full = decision_.kind == SnapKind::kFull ? snap.id : decision_.base_full;
  snap.time_ns = now;
  snap.host = io::host_name();
  char* abs = ::realpath(opts_.source.c_str(), nullptr);
  snap.source = abs ? abs : opts_.source;
  std::free(abs);
  snap.tag = opts_.tag;
  snap.level = static_cast<uint32_t>(tune_ ? tune_->chosen.compression_level : opts_.level);
  return snap;
}

BackupResult run_backup(const BackupOptions& opts, transport::Comm& comm) {
  BackupResult out;
  RunResult& result = out.run;
  const bool rank0 = comm.rank() == 0;
  auto fail_all = [&](const std::string& why) {
    result.fatal = why;
    result.exit_code = kExitFatal;
    return out;
  };
  // Same options on every rank (checked by main), so the same verdict: nothing is created.
  if (auto st = validate(opts); !st) return fail_all(st.error().message);

  // Source and repository: rank 0 checks where they are, opens (or creates) and locks; all
  // agree before going on.
  std::string setup_error;
  {
    struct stat st;
    if (::stat(opts.source.c_str(), &st) != 0)
      setup_error = io::Error::from_errno(errno, "source " + opts.source).message;
    else if (!S_ISDIR(st.st_mode))
      setup_error = "source " + opts.source + ": not a directory";
  }
  std::optional<repo::Repository> repository;
  std::optional<repo::Snapshot> parent;
  repo::RepoLock lock;
  Decision decision;
  if (rank0 && setup_error.empty()) {
    if (auto st = check_backup_paths(opts); !st) setup_error = st.error().message;
  }
  if (rank0 && setup_error.empty())
    setup_error = open_and_decide(opts, repository, lock, decision, parent);
  // Every rank's verdict (rank 0's: repository, lock, decision; each rank's: its view of
  // SRC), the same on all: the first failure, naming its rank, fails them all.
  {
    std::vector<std::string> verdicts = comm.allgather(setup_error);
    for (size_t r = 0; r < verdicts.size(); ++r) {
      if (verdicts[r].empty()) continue;
      return fail_all(r == 0 ? verdicts[r] : "rank " + std::to_string(r) + ": " + verdicts[r]);
    }
  }
  if (!rank0) {
    auto r = repo::Repository::open(opts.repo, false);
    if (!comm.agree(static_cast<bool>(r)))
      return fail_all(r ? "a rank could not open the repository" : r.error().message);
    repository = std::move(r.value());
  } else {
    (void)comm.agree(true);
  }
  broadcast_decision(comm, decision);
  result.started = true;
  // Warnings, not info: a backup other than the one asked for is said even with -q.
  if (rank0)
    for (const std::string& note : decision.notes) io::log_warn(note);
  BackupRun run(opts, comm, *repository, decision, std::move(parent));
  try {
    run.execute(out);
  } catch (...) {
    // Whatever packs this run wrote are referenced by no snapshot: the next backup removes
    // them (REPO/sweep), as after a killed run. Then the failure goes on to main.
    if (auto st = repo::mark_sweep(repository->path()); !st) io::log_warn(st.error().message);
    throw;
  }
  return out;
}

}  // namespace barge::pipeline
