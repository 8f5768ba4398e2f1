#include "pipeline/repo/backup_setup.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <cstdlib>

#include "io/log.hpp"
#include "io/path_ops.hpp"
#include "pipeline/core/wire.hpp"

namespace barge::pipeline {

using repo::SnapKind;

// Rank 0: which kind this backup is and what it compares against. `parent` receives the
// parent snapshot, read whole: a damaged snapshot is passed over (and said so), never used.
io::Result<Decision> decide(const repo::Repository& r, BackupMode mode,
                            std::optional<repo::Snapshot>& parent) {
  Decision d;
  auto ids = r.list_snapshots();
  if (!ids) return ids.error();
  if (mode == BackupMode::kFull) return d;
  const bool differential = mode == BackupMode::kDifferential;
  const std::string what = differential ? "differential" : "incremental";
  if (ids->empty()) {
    if (mode != BackupMode::kAuto)
      d.notes.push_back("no earlier snapshot: this " + what + " backup is a full one");
    return d;
  }
  // Newest first: an incremental compares with the newest intact snapshot of any kind, a
  // differential with the newest intact full one.
  std::vector<std::string> damaged;
  for (auto it = ids->rbegin(); it != ids->rend() && !parent; ++it) {
    if (differential) {
      auto k = r.snapshot_kind(*it);
      if (k && *k != SnapKind::kFull) continue;
    }
    auto s = r.load_snapshot(*it);
    if (!s) {
      damaged.push_back(s.error().message);
      continue;
    }
    if (!differential || s->kind == SnapKind::kFull) parent = std::move(s.value());
  }
  std::string skipped;
  for (const std::string& why : damaged) skipped += (skipped.empty() ? "" : "; ") + why;
  if (!parent) {
    d.notes.push_back(
        (differential ? "no intact full snapshot in the repository"
                      : "no intact snapshot in the repository") +
        (damaged.empty() ? std::string() : " (damaged: " + skipped + ")") + ": this " +
        (mode == BackupMode::kAuto ? std::string("backup") : what + " backup") + " is a full one");
    return d;
  }
  if (!damaged.empty())
    d.notes.push_back("passing over damaged snapshots (" + skipped + "): this " + what +
                      " backup compares with " + parent->id + " instead");
  d.kind = differential ? SnapKind::kDifferential : SnapKind::kIncremental;
  d.parent = parent->id;
  d.base_full = parent->kind == SnapKind::kFull ? parent->id : parent->base_full;
  return d;
}

io::Status validate(const BackupOptions& opts) {
  if (opts.source.empty()) return io::Error::plain("backup: SRC is an empty path");
  if (opts.repo.empty()) return io::Error::plain("backup: REPO is an empty path");
  if (opts.chunk_bytes != 0 &&
      (opts.chunk_bytes < repo::kMinChunkBytes || opts.chunk_bytes > repo::kMaxChunkBytes ||
       opts.chunk_bytes % 4096 != 0))
    return io::Error::plain("--chunk-size " +
                            Progress::human_bytes(static_cast<double>(opts.chunk_bytes)) +
                            ": must be a multiple of 4 KiB from 4 KiB to 1 GiB");
  if (opts.level < 1 || opts.level > 19)
    return io::Error::plain("--level " + std::to_string(opts.level) + ": must be 1..19");
  if (opts.memory_bytes == 0) return io::Error::plain("--memory must be more than 0");
  if (opts.threads > 1024) return io::Error::plain("--threads must be at most 1024");
  if (opts.pack_bytes == 0) return io::Error::plain("backup: pack size must be more than 0");
  if (opts.progress_interval_s < 0)
    return io::Error::plain("--progress-interval must not be negative");
  return io::Status::success();
}

io::Status check_backup_paths(const BackupOptions& opts) {
  const std::string src = canonical_or_parent(opts.source);
  const std::string repo = canonical_or_parent(opts.repo);
  if (src == repo)
    return io::Error::plain("backup: source " + opts.source + " and repository " + opts.repo +
                            " are the same directory");
  if (is_inside(src, repo))
    return io::Error::plain("backup: source " + opts.source + " lies inside the repository " +
                            opts.repo + " (refusing to back up a repository into itself)");
  if (!is_inside(repo, src)) return io::Status::success();
  // REPO below SRC is fine only if the walk never enters it: it, or a directory above it,
  // is left out by --exclude.
  const std::string rel = repo.substr(src == "/" ? 1 : src.size() + 1);
  PathFilter filter(opts.excludes, opts.includes);
  for (size_t end = rel.find('/');; end = rel.find('/', end + 1)) {
    if (filter.excluded(rel.substr(0, end), true)) return io::Status::success();
    if (end == std::string::npos) break;
  }
  return io::Error::plain("backup: repository " + opts.repo + " lies inside the source " +
                          opts.source +
                          " (every snapshot would hold the repository itself); put it elsewhere "
                          "or leave it out with --exclude /" +
                          rel + "/");
}

// Rank 0, with the lock held: removes the packs that a failed or killed run left (REPO/sweep
// says there may be some). Needs every snapshot readable: a pack is garbage only if no
// snapshot references it.
void sweep_if_marked(const repo::Repository& r) {
  if (!repo::sweep_marked(r.path())) return;
  auto ids = r.list_snapshots();
  auto keep =
      ids ? repo::referenced_packs(r, *ids) : io::Result<std::set<std::string>>(ids.error());
  if (!keep) {
    io::log_warn("packs a failed or killed run left stay in place: " + keep.error().message);
    return;
  }
  auto swept = repo::remove_packs_except(r, *keep, false);
  if (!swept) {
    io::log_warn("packs a failed or killed run left stay in place: " + swept.error().message);
    return;
  }
  if (auto st = repo::clear_sweep(r.path()); !st) io::log_warn(st.error().message);
  if (swept->packs != 0)
    io::log_info("removed " + std::to_string(swept->packs) + " packs (" +
                 Progress::human_bytes(static_cast<double>(swept->bytes)) +
                 ") that a failed or killed run left");
}

// Rank 0: opens (or creates) the repository, locks it, sweeps what a failed run left and
// decides the backup's kind. Returns the error that stops the backup, or "".
std::string open_and_decide(const BackupOptions& opts, std::optional<repo::Repository>& repository,
                            repo::RepoLock& lock, Decision& decision,
                            std::optional<repo::Snapshot>& parent) {
  uint32_t chunk = opts.chunk_bytes ? static_cast<uint32_t>(opts.chunk_bytes) : 4u << 20;
  auto r = repo::Repository::open(opts.repo, true, chunk);
  if (!r) return r.error().message;
  repository = std::move(r.value());
  auto l = repo::RepoLock::acquire(repository->path(), "backup");
  if (!l) return l.error().message;
  lock = std::move(l.value());
  sweep_if_marked(*repository);
  auto d = decide(*repository, opts.mode, parent);
  if (!d) return d.error().message;
  decision = *d;
  return {};
}

// Rank 0's decision (kind, parent, base) on every rank.
void broadcast_decision(transport::Comm& comm, Decision& decision) {
  WireWriter w;
  w.u8(static_cast<uint8_t>(decision.kind));
  w.str(decision.parent);
  w.str(decision.base_full);
  std::string bytes = comm.broadcast(w.take(), 0);
  WireReader rd(bytes);
  decision.kind = static_cast<SnapKind>(rd.u8());
  decision.parent = rd.str();
  decision.base_full = rd.str();
}

}  // namespace barge::pipeline
