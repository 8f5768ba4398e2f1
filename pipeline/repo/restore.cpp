// barge restore: rebuild a snapshot's tree under DST. Rank 0 makes the directories; files
// are shared out over ranks by bytes and restored on all cores (chunks of a large file in
// parallel), each written as an unnamed inode, every chunk's XXH3-128 checked after
// decompression and before it is written, and linked into place only when complete; then
// symlinks, special files and hard links; directory metadata last, deepest first.
//
// Nothing is written outside DST whatever the manifest says: paths are checked when the
// manifest is decoded, and every parent directory is opened beneath DST with openat2
// (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so a symlink in DST or in the snapshot cannot
// redirect a write.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "io/metadata.hpp"
#include "io/path_ops.hpp"
#include "io/unique_fd.hpp"
#include "io/xattr.hpp"
#include "pipeline/core/plan.hpp"
#include "pipeline/core/rank_stats.hpp"
#include "pipeline/core/wire.hpp"
#include "pipeline/engine/codec_stages.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/engine/graph.hpp"
#include "pipeline/repo/backup.hpp"
#include "pipeline/repo/repository.hpp"
#include "pipeline/repo/restore_files.hpp"
#include "pipeline/repo/restore_paths.hpp"

namespace barge::pipeline {
namespace {

using Clock = std::chrono::steady_clock;
using repo::SnapEntry;

using namespace restore;

class RestoreRun {
 public:
  RestoreRun(const RestoreOptions& opts, transport::Comm& comm, const repo::Repository& r,
             const repo::Snapshot& s)
      : opts_(opts), comm_(comm), repo_(r), snap_(s), packs_(r, s.packs) {}

  // select → hard links → destination → directories → share → transfer → rank 0's
  // specials, links and directory metadata → report; the collective steps in this order
  // on every rank.
  void execute(RunResult& result) {
    auto t0 = Clock::now();
    const unsigned threads = engine_threads(opts_.threads, comm_.size());
    // More threads than cores: reads block in the kernel while others compress.
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    raise_fd_limit();
    apply_owner_ = io::can_chown();
    if (!select(result)) return;
    hard_links();
    if (!open_destination(result)) return;
    result.started = true;
    // Files are created with their final permission bits; the caller's umask comes back
    // when execute returns, however it returns.
    io::ScopedUmask umask0(0);
    if (comm_.rank() == 0) make_directories();
    comm_.barrier();
    const std::vector<uint32_t> mine = share();
    auto tb = Clock::now();
    {
      std::unique_ptr<transport::AsyncSum> across = comm_.make_async_sum();
      Progress::Across share{across.get(), comm_.size(), {}, {}};
      Progress progress(stats_, comm_.rank() == 0 ? opts_.progress : ProgressMode::kNone, "restore",
                        opts_.progress_interval_s, std::move(share));
      RestoreFiles files(opts_, snap_, packs_, root_.get(), apply_owner_, data_of_, stats_, errors_,
                         [this](uint32_t i, std::string why) { fail(i, std::move(why)); });
      files.run(mine, threads, result);
    }
    const double busy = since(tb);
    comm_.barrier();
    if (comm_.rank() == 0) {
      ParentCache parents(root_.get());
      links_and_specials(parents);
      directory_metadata(parents);
    }
    report(result, busy, t0);
  }

 private:
  // The entries --path selects (all without it); a --path not in the snapshot ends the run.
  bool select(RunResult& result) {
    const std::vector<std::string> wanted = wanted_paths(opts_.paths);
    for (uint32_t i = 0; i < snap_.entries.size(); ++i)
      if (selected_by(snap_.entries[i].path, wanted)) chosen_.push_back(i);
    for (const std::string& w : wanted) {
      bool found = false;
      for (uint32_t i : chosen_) found = found || snap_.entries[i].path == w;
      if (!found) {
        result.fatal = "--path " + w + ": not in snapshot " + snap_.id;
        result.exit_code = kExitFatal;
        return false;
      }
    }
    return true;
  }

  // Hard links: a member whose data holder is not restored (--path) holds the data itself,
  // and the group's other chosen members link to it.
  void hard_links() {
    link_of_.assign(snap_.entries.size(), repo::kNoLink);
    data_of_.resize(snap_.entries.size());
    for (uint32_t i = 0; i < data_of_.size(); ++i) data_of_[i] = i;
    std::unordered_set<uint32_t> chosen_set(chosen_.begin(), chosen_.end());
    std::unordered_map<uint32_t, uint32_t> stand_in;
    for (uint32_t i : chosen_) {
      uint32_t leader = snap_.entries[i].link_to;
      if (leader == repo::kNoLink) continue;
      if (chosen_set.count(leader)) {
        link_of_[i] = leader;
        continue;
      }
      auto [it, fresh] = stand_in.try_emplace(leader, i);
      if (fresh)
        data_of_[i] = leader;
      else
        link_of_[i] = it->second;
    }
  }

  // DST made by rank 0 and opened by every rank (agreed). A symlink is followed only when
  // named "DST/" (checked in run_restore; O_NOFOLLOW keeps it so should DST be swapped for a
  // symlink meanwhile).
  bool open_destination(RunResult& result) {
    const Destination where = destination_of(opts_.destination);
    if (comm_.rank() == 0 && ::mkdir(where.path.c_str(), 0700) != 0 && errno != EEXIST)
      fatal_ = io::Error::from_errno(errno, "create destination " + opts_.destination).message;
    comm_.barrier();
    const std::string root_path = where.follow ? where.path + "/" : where.path;
    root_.reset(::open(root_path.c_str(),
                       O_RDONLY | O_DIRECTORY | O_CLOEXEC | (where.follow ? 0 : O_NOFOLLOW)));
    if (!root_.valid() && fatal_.empty())
      fatal_ = io::Error::from_errno(errno, "open destination " + opts_.destination).message;
    if (comm_.agree(fatal_.empty())) return true;
    result.fatal = fatal_.empty() ? "destination not usable on every rank" : fatal_;
    result.exit_code = kExitFatal;
    return false;
  }

  // Rank 0: the directories, parents first (owner-only until their metadata at the end).
  void make_directories() {
    ParentCache parents(root_.get());
    for (uint32_t i : chosen_) {
      const SnapEntry& e = snap_.entries[i];
      if (e.meta.type != io::FileType::kDirectory || e.path.empty()) continue;
      int pfd = parents.get(parent_of(e.path));
      if (pfd < 0) {
        fail(i, io::Error::from_errno(errno, "open parent of " + dst(e)).message);
        continue;
      }
      std::string name = name_of(e.path);
      if (::mkdirat(pfd, name.c_str(), 0700) != 0) {
        struct stat st;
        if (errno != EEXIST)
          fail(i, io::Error::from_errno(errno, "create directory " + dst(e)).message);
        else if (::fstatat(pfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                 !S_ISDIR(st.st_mode))
          fail(i, dst(e) + ": exists and is not a directory (left as it is)");
      }
    }
  }

  // This rank's files with data: shared out by bytes, the same way on every rank.
  std::vector<uint32_t> share() {
    std::vector<uint32_t> mine;
    std::vector<uint64_t> load(static_cast<size_t>(comm_.size()), 0);
    for (uint32_t i : chosen_) {
      const SnapEntry& e = snap_.entries[i];
      if (e.meta.type != io::FileType::kRegular || link_of_[i] != repo::kNoLink) continue;
      size_t r = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
      load[r] += e.meta.size_bytes + 4096;
      if (static_cast<int>(r) == comm_.rank()) {
        mine.push_back(i);
        stats_.bytes_total += e.meta.size_bytes;
        stats_.files_total += 1;
      }
    }
    return mine;
  }

  // Rank 0, once every rank's files are in place: hard links, symlinks, special files.
  void links_and_specials(ParentCache& parents) {
    for (uint32_t i : chosen_) {
      const SnapEntry& e = snap_.entries[i];
      if (e.meta.type == io::FileType::kRegular && link_of_[i] != repo::kNoLink) {
        link_follower(i, parents);
      } else if (e.meta.type != io::FileType::kRegular && e.meta.type != io::FileType::kDirectory) {
        create_special(i, parents);
      }
    }
  }

  // Rank 0: directory xattrs and metadata, deepest first.
  void directory_metadata(ParentCache& parents) {
    for (auto it = chosen_.rbegin(); it != chosen_.rend(); ++it) {
      const SnapEntry& e = snap_.entries[*it];
      if (e.meta.type != io::FileType::kDirectory || failed_.count(*it)) continue;
      int pfd = e.path.empty() ? root_.get() : parents.get(parent_of(e.path));
      io::UniqueFd dfd(pfd < 0 ? -1
                       : e.path.empty()
                           ? ::fcntl(root_.get(), F_DUPFD_CLOEXEC, 0)
                           : ::openat(pfd, name_of(e.path).c_str(),
                                      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!dfd.valid()) {
        fail(*it, io::Error::from_errno(errno, "open directory " + dst(e)).message);
        continue;
      }
      if (opts_.xattrs && !e.xattrs.empty()) {
        if (auto st = io::write_xattrs(e.xattrs, dfd.get(), dst(e)); !st)
          fail(*it, st.error().message);
      }
      if (auto st = io::apply_meta_fd(dfd.get(), e.meta, apply_owner_, dst(e)); !st)
        fail(*it, st.error().message);
    }
  }

  // Per-rank statistics reduced once, errors gathered on rank 0, the exit code agreed.
  void report(RunResult& result, double busy, Clock::time_point t0) {
    RankStats me;
    me.bytes = me.bytes_committed = stats_.bytes_done.load();
    me.files = stats_.files_done.load();
    me.busy_seconds = busy;
    reduce_rank_stats(comm_, me, result, comm_.size() > 1);
    WireWriter ew;
    for (const std::string& e : errors_.take()) ew.str(e);
    std::vector<std::string> all_errors = comm_.gather(ew.take(), 0);
    uint64_t signalled = stop_signal().load() != 0 ? 1 : 0;
    comm_.allreduce_max(std::span<uint64_t>(&signalled, 1));
    if (comm_.rank() == 0) {
      for (const std::string& b : all_errors) {
        WireReader r(b);
        while (!r.done()) result.errors.push_back(r.str());
      }
      for (uint32_t i : chosen_) result.count_kind(snap_.entries[i].meta.type);
      result.files += links_made_;
      result.seconds = since(t0);
      result.resumable = false;
      result.exit_code =
          exit_code_for(signalled != 0, !result.fatal.empty(), !result.errors.empty());
    }
    result.exit_code = agree_exit_code(comm_, result.exit_code);
  }

  std::string dst(const SnapEntry& e) const {
    const std::string root = destination_of(opts_.destination).path;
    return e.path.empty() ? root : io::join_path(root, e.path);
  }
  void fail(uint32_t i, std::string why) {
    {
      std::lock_guard lock(mu_);
      failed_.insert(i);
    }
    errors_.add(std::move(why));
  }

  void link_follower(uint32_t i, ParentCache& parents) {
    const SnapEntry& e = snap_.entries[i];
    const SnapEntry& leader = snap_.entries[link_of_[i]];
    if (failed_.count(link_of_[i])) {
      fail(i, dst(e) + ": not restored (its hard-linked twin " + dst(leader) + " was not)");
      return;
    }
    io::UniqueFd lp(open_beneath(root_.get(), parent_of(leader.path)));
    int pfd = parents.get(parent_of(e.path));
    if (!lp.valid() || pfd < 0) {
      fail(i, io::Error::from_errno(errno, "open parent of " + dst(e)).message);
      return;
    }
    std::string name = name_of(e.path);
    std::string tmp = ".barge-tmp.link." + std::to_string(i);
    ::unlinkat(pfd, tmp.c_str(), 0);  // left by a killed run
    if (::linkat(lp.get(), name_of(leader.path).c_str(), pfd, tmp.c_str(), 0) != 0 ||
        ::renameat(pfd, tmp.c_str(), pfd, name.c_str()) != 0) {
      int err = errno;
      ::unlinkat(pfd, tmp.c_str(), 0);
      fail(i, io::Error::from_errno(err, "link " + dst(e)).message);
      return;
    }
    ++links_made_;
  }

  void create_special(uint32_t i, ParentCache& parents) {
    const SnapEntry& e = snap_.entries[i];
    int pfd = parents.get(parent_of(e.path));
    if (pfd < 0) {
      fail(i, io::Error::from_errno(errno, "open parent of " + dst(e)).message);
      return;
    }
    std::string tmp = ".barge-tmp.special." + std::to_string(i);
    ::unlinkat(pfd, tmp.c_str(), 0);  // left by a killed run
    int rc;
    if (e.meta.type == io::FileType::kSymlink) {
      rc = ::symlinkat(e.link_target.c_str(), pfd, tmp.c_str());
    } else {
      mode_t type = e.meta.type == io::FileType::kFifo          ? S_IFIFO
                    : e.meta.type == io::FileType::kCharDevice  ? S_IFCHR
                    : e.meta.type == io::FileType::kBlockDevice ? S_IFBLK
                                                                : S_IFSOCK;
      rc = ::mknodat(pfd, tmp.c_str(), type | 0600, static_cast<dev_t>(e.meta.rdev));
    }
    io::Status st =
        rc == 0
            ? io::Status::success()
            : io::Status(io::Error::from_errno(
                  errno, std::string("create ") + io::file_type_name(e.meta.type) + " " + dst(e)));
    if (st) st = io::apply_meta_path(pfd, tmp.c_str(), e.meta, apply_owner_);
    if (st && ::renameat(pfd, tmp.c_str(), pfd, name_of(e.path).c_str()) != 0)
      st = io::Error::from_errno(errno, "rename into place " + dst(e));
    if (!st) {
      ::unlinkat(pfd, tmp.c_str(), 0);
      fail(i, st.error().message);
    }
  }

  const RestoreOptions& opts_;
  transport::Comm& comm_;
  const repo::Repository& repo_;
  const repo::Snapshot& snap_;
  PackFds packs_;
  io::UniqueFd root_;
  bool apply_owner_ = false;
  std::string fatal_;
  ErrorList errors_;
  std::mutex mu_;
  std::unordered_set<uint32_t> failed_;
  uint64_t links_made_ = 0;
  std::vector<uint32_t> chosen_;   // the entries restored, in snapshot order
  std::vector<uint32_t> link_of_;  // per entry: the entry it is a hard link to, or kNoLink
  std::vector<uint32_t> data_of_;  // per entry: the entry whose chunks hold its bytes
  LiveStats stats_;
};

// Rank 0, before anything is written: DST is not a symlink unless named "DST/", does not lie
// inside the repository, and does not hold the repository where the snapshot writes.
io::Status check_destination(const RestoreOptions& opts, const repo::Repository& r,
                             const repo::Snapshot& snap) {
  const Destination where = destination_of(opts.destination);
  if (where.path.empty()) return io::Error::plain("restore: DST is an empty path");
  struct stat st;
  if (::lstat(where.path.c_str(), &st) == 0 && S_ISLNK(st.st_mode) && !where.follow) {
    char target[4096];
    ssize_t n = ::readlink(where.path.c_str(), target, sizeof target - 1);
    target[n < 0 ? 0 : n] = '\0';
    return io::Error::plain("destination " + where.path + " is a symlink (to " + target +
                            "): name it " + where.path +
                            "/ to restore into the directory it points to");
  }
  const std::string dst = canonical_or_parent(where.path);  // resolves a DST/ symlink too
  const std::string repo = canonical_or_parent(r.path());
  if (is_inside(dst, repo))
    return io::Error::plain("destination " + opts.destination + " lies inside the repository " +
                            opts.repo + " (refusing to restore into it)");
  if (is_inside(repo, dst)) {
    // REPO below DST: refused only where this restore would write, at or below REPO.
    const std::string rel = repo.substr(dst == "/" ? 1 : dst.size() + 1);
    const std::vector<std::string> wanted = wanted_paths(opts.paths);
    for (const SnapEntry& e : snap.entries) {
      bool at_or_below =
          e.path == rel || (e.path.size() > rel.size() && e.path.compare(0, rel.size(), rel) == 0 &&
                            e.path[rel.size()] == '/');
      if (at_or_below && selected_by(e.path, wanted))
        return io::Error::plain("destination " + opts.destination + " holds the repository " +
                                opts.repo + " at " + rel + ", where snapshot " + snap.id +
                                " would write (restore elsewhere)");
    }
  }
  return io::Status::success();
}

}  // namespace

RestoreResult run_restore(const RestoreOptions& opts, transport::Comm& comm) {
  RestoreResult out;
  std::string error, id;
  std::optional<repo::Repository> r;
  auto opened = repo::Repository::open(opts.repo, false);
  if (!opened) {
    error = opened.error().message;
  } else {
    r = std::move(opened.value());
    if (comm.rank() == 0) {
      auto which = r->resolve(opts.snapshot);
      if (which)
        id = *which;
      else
        error = which.error().message;
    }
  }
  id = comm.broadcast(id, 0);
  if (!comm.agree(error.empty() && !id.empty())) {
    out.run.fatal = error.empty() ? "repository not readable on every rank" : error;
    out.run.exit_code = kExitFatal;
    return out;
  }
  auto snap = r->load_snapshot(id);
  if (!comm.agree(static_cast<bool>(snap))) {
    out.run.fatal = snap ? "snapshot not readable on every rank"
                         : snap.error().message +
                               " (restore another one with --snapshot; barge snapshots lists them)";
    out.run.exit_code = kExitFatal;
    return out;
  }
  std::string where_error;
  if (comm.rank() == 0) {
    if (auto st = check_destination(opts, *r, *snap); !st) where_error = st.error().message;
  }
  where_error = comm.broadcast(where_error, 0);
  if (!where_error.empty()) {
    out.run.fatal = where_error;
    out.run.exit_code = kExitFatal;
    return out;
  }
  out.snapshot_id = id;
  RestoreRun run(opts, comm, *r, *snap);
  run.execute(out.run);
  return out;
}

}  // namespace barge::pipeline
