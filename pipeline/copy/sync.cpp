#include "pipeline/copy/sync.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <oneapi/tbb/global_control.h>
#include <algorithm>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "io/path_ops.hpp"
#include "io/xattr.hpp"
#include "pipeline/copy/sync_compare.hpp"
#include "pipeline/core/manifest.hpp"
#include "pipeline/core/rank_stats.hpp"
#include "pipeline/dist/dist_internal.hpp"
#include "pipeline/engine/copy_internal.hpp"

namespace barge::pipeline {
namespace {

using Clock = std::chrono::steady_clock;

// rsync-style change codes: YXcstpoguax.
std::string item(char update, char type, const std::string& attrs, const std::string& rel,
                 bool dir) {
  std::string line;
  line += update;
  line += type;
  line += attrs;
  line += ' ';
  line += rel.empty() ? "./" : rel + (dir ? "/" : "");
  return line;
}

char type_code(io::FileType t) {
  switch (t) {
    case io::FileType::kRegular:
      return 'f';
    case io::FileType::kDirectory:
      return 'd';
    case io::FileType::kSymlink:
      return 'L';
    default:
      return 'D';
  }
}

// Pairs each source child with its namesake in DST (nullptr: none) in one merge of the two
// listings, both sorted by name: one comparison a step, not a binary search per child.
// dst_paired[j] tells whether DST's child j has a namesake in the source.
std::vector<const io::DirChild*> pair_children(const std::vector<io::DirChild>& src,
                                               const std::vector<io::DirChild>& dst,
                                               std::vector<uint8_t>& dst_paired) {
  std::vector<const io::DirChild*> twin(src.size(), nullptr);
  dst_paired.assign(dst.size(), 0);
  for (size_t i = 0, j = 0; i < src.size() && j < dst.size();) {
    int c = src[i].name.compare(dst[j].name);
    if (c == 0) {
      twin[i] = &dst[j];
      dst_paired[j] = 1;
      ++i;
      ++j;
    } else if (c < 0) {
      ++i;
    } else {
      ++j;
    }
  }
  return twin;
}

// Changed small files are copied during the walk, by the walking thread that found them,
// with the copy's own stages run one unit at a time (transfer_serial): the copying of one
// directory's files overlaps the listing of others, and a sync that changes a few thousand
// files needs no transfer graph for them. Single-link files of one chunk only; hard links
// and large files still go to the transfer phases, which need every rank's plan.
class WalkCopier {
 public:
  WalkCopier(const CopyOptions& opts, unsigned threads, int rank, bool apply_owner)
      : opts_(opts),
        threads_(std::max(1u, threads)),
        rank_(static_cast<uint64_t>(rank)),
        apply_owner_(apply_owner),
        backends_(io::BackendOptions{opts.backend, opts.queue_depth, nullptr}) {}

  // A fatal error here, a stop signal or another rank's stop: the walk ends early (see
  // distributed_walk).
  bool stopping() const { return stopping_.load() || stop_signal().load() != 0; }
  // This rank's own state, for the progress sums that carry it to the other ranks.
  Progress::RunState state() const {
    if (stop_signal().load() != 0) return Progress::RunState::kSignalled;
    std::lock_guard lock(mu_);
    return fatal_.empty() ? Progress::RunState::kRunning : Progress::RunState::kFailed;
  }
  void stop_for_peer() { stopping_ = true; }
  const LiveStats& stats() const { return stats_; }

  bool eligible(const io::FileMeta& m) const {
    return m.type == io::FileType::kRegular && m.nlink < 2 &&
           chunk_count_for(m.size_bytes, opts_.chunk_bytes, buffer_bytes()) == 1;
  }

  // Copies `files` (children of one directory). False, with nothing done, once the run is
  // stopping (signal, or a fatal error here): the caller hands the files to the transfer
  // phases, which end the run the agreed way.
  // replacing[i]: files[i] replaces a file DST has.
  bool copy(const Plan& walk_plan, std::vector<Entry>& files, const std::vector<uint8_t>& replacing,
            ErrorList& errors) {
    if (files.empty()) return true;
    if (stopping()) return false;
    std::call_once(pool_once_, [&] {
      size_t count = std::clamp<size_t>(opts_.memory_bytes / buffer_bytes(), 1, threads_);
      pool_ = std::make_unique<io::BufferPool>(opts_.chunk_bytes, count);
    });
    Plan mini;
    mini.roots = walk_plan.roots;
    mini.entries = std::move(files);
    files.clear();
    for (uint32_t i = 0; i < mini.entries.size(); ++i) mini.files.push_back(i);
    CopyContext ctx(mini, opts_, stats_, backends_.source());
    ctx.apply_owner = apply_owner_;
    ctx.replacing = replacing;
    ctx.temp_ids.resize(mini.entries.size());
    for (uint64_t& id : ctx.temp_ids)
      id = (uint64_t{2} << 48) | (rank_ << 32) | (next_id_.fetch_add(1) & 0xffffffffu);
    uint64_t bytes = 0;
    for (const Entry& e : mini.entries) bytes += e.meta.size_bytes;
    stats_.bytes_total += bytes;
    stats_.files_total += mini.entries.size();
    UnitCutter cutter(mini, opts_.chunk_bytes, pool_->buffer_bytes(), opts_.max_files_per_unit);
    transfer_serial(ctx, *pool_, [&](std::vector<Extent>& out) { return cutter.next(out); });
    for (auto& e : ctx.errors.take()) errors.add(std::move(e));
    for (auto& e : ctx.stopped_errors.take()) stopped_.add(std::move(e));
    if (std::string f = ctx.fatal(); !f.empty()) {
      stopping_ = true;
      std::lock_guard lock(mu_);
      if (fatal_.empty() && !ctx.resumable.load()) fatal_ = f;
    }
    return true;
  }

  // After the walk: frees the buffers (the transfer phases have their own budget) and gives
  // what was copied and the fatal error, if any, to the transfer phases.
  WalkTransfer finish() {
    pool_.reset();
    WalkTransfer out;
    out.stats = &stats_;
    out.stopped_entries = stopped_.take();
    std::lock_guard lock(mu_);
    out.fatal = fatal_;
    return out;
  }

 private:
  uint64_t buffer_bytes() const { return (opts_.chunk_bytes + 4095) / 4096 * 4096; }

  const CopyOptions& opts_;
  unsigned threads_;
  uint64_t rank_;
  bool apply_owner_;
  BackendSet backends_;
  LiveStats stats_;
  std::once_flag pool_once_;
  std::unique_ptr<io::BufferPool> pool_;
  std::atomic<uint64_t> next_id_{0};
  std::atomic<bool> stopping_{false};
  mutable std::mutex mu_;
  std::string fatal_;
  ErrorList stopped_;
};

class SyncVisitor {
 public:
  SyncVisitor(const SyncOptions& opts, ErrorList& errors, bool owner, WalkCopier* copier)
      : opts_(opts),
        errors_(errors),
        owner_(owner),
        copier_(copier),
        filter_(opts.copy.excludes, opts.copy.includes) {}

  void visit(const Plan& plan, const DirRef& d, io::DirListing& listing, WalkOutput& out) {
    const Root& root = plan.roots[d.root];
    std::string dst_dir = io::join_path(root.dst, d.rel);
    // Both listings are sorted by name: one merge pairs them (pair_children), no map.
    std::vector<io::DirChild> dst;
    auto dst_listing = io::read_directory(dst_dir);
    if (dst_listing) {
      dst = std::move(dst_listing->children);
    } else if (dst_listing.error().errnum != ENOENT || !opts_.dry_run) {
      errors_.add(dst_listing.error().message);
      return;
    }
    io::Result<io::UniqueFd> dst_fd =
        opts_.dry_run ? io::Result<io::UniqueFd>(io::Error::plain("dry run"))
                      : io::open_dir_path(dst_dir, io::DirOpen::kParent, d.rel.empty());
    if (!opts_.dry_run && !dst_fd) {
      errors_.add(dst_fd.error().message);
      return;
    }
    std::vector<std::string> lines;
    std::vector<Entry> copy_now;  // changed small files, copied below by this thread
    std::vector<uint8_t> copy_replaces;
    const bool fast = !filter_.active() && !opts_.copy.xattrs && !opts_.checksum;
    std::vector<uint8_t> dst_paired;
    const std::vector<const io::DirChild*> twins = pair_children(listing.children, dst, dst_paired);
    for (size_t ci = 0; ci < listing.children.size(); ++ci) {
      io::DirChild& c = listing.children[ci];
      // The common case of a sync, an unchanged single-link file, is passed over before an
      // Entry (and its path) is built for it.
      if (fast && c.meta.type == io::FileType::kRegular && c.meta.nlink < 2) {
        const io::DirChild* same = twins[ci];
        if (same && same->meta.type == c.meta.type && same->meta.size_bytes == c.meta.size_bytes &&
            same_time(c.meta.mtime, same->meta.mtime) &&
            attr_diff(c.meta, same->meta, owner_, false).find_first_not_of('.') ==
                std::string::npos)
          continue;
      }
      auto child = child_entry(d, c, filter_);
      if (!child) continue;
      Entry& e = *child;
      const io::DirChild* t = twins[ci];
      auto verdict = judge(plan, e, c.name, t, opts_.dry_run ? -1 : dst_fd->get(), lines);
      if (!verdict) continue;
      const uint8_t flag = *verdict;
      const bool is_dir = e.meta.type == io::FileType::kDirectory;
      if (is_dir) out.subdirs.push_back(DirRef{d.root, e.rel});
      // Unchanged entries are forgotten, except hard-link members: their links are checked.
      if (flag == 0 && !(e.meta.type == io::FileType::kRegular && e.meta.nlink > 1)) continue;
      if (flag == kActTransfer && copier_ && copier_->eligible(e.meta)) {
        copy_now.push_back(std::move(e));
        copy_replaces.push_back(t != nullptr);
        continue;
      }
      out.entries.push_back(std::move(e));
      out.flags.push_back(flag);
    }
    if (opts_.delete_extra)
      delete_extras(d, dst, dst_paired, opts_.dry_run ? -1 : dst_fd->get(), dst_dir, lines);
    // After the deletions, so that space they free is there for the copies.
    if (!copy_now.empty() && !copier_->copy(plan, copy_now, copy_replaces, errors_)) {
      for (Entry& e : copy_now) {
        out.entries.push_back(std::move(e));
        out.flags.push_back(kActTransfer);
      }
    }
    if (!lines.empty()) {
      std::lock_guard lock(mu_);
      for (auto& l : lines) changes_.push_back(std::move(l));
    }
  }

  // The verdict on entry e (named `name` in its directory, open as dst_fd; -1 on a dry run)
  // against DST's namesake t (null: none). Something of another type there is removed
  // first (t becomes null). nullopt: nothing more to do with e (the error is named).
  std::optional<uint8_t> judge(const Plan& plan, const Entry& e, const std::string& name,
                               const io::DirChild*& t, int dst_fd,
                               std::vector<std::string>& lines) {
    if (t && t->meta.type != e.meta.type) {
      if (!opts_.dry_run) {
        if (auto st = remove_tree(dst_fd, name, plan.dst_path(e)); !st) {
          errors_.add(st.error().message);
          return std::nullopt;
        }
      }
      if (opts_.itemize || opts_.dry_run) lines.push_back("*deleting   " + e.rel);
      t = nullptr;
    }
    if (t) return compare(plan, e, *t, lines);
    const bool is_dir = e.meta.type == io::FileType::kDirectory;
    lines.push_back(item(e.meta.type == io::FileType::kRegular ? '>' : 'c', type_code(e.meta.type),
                         "+++++++++", e.rel, is_dir));
    if (!is_dir) return e.meta.type == io::FileType::kRegular ? kActTransfer : kActCreate;
    if (!opts_.dry_run && !make_dst_dir(dst_fd, plan, e, errors_)) return std::nullopt;
    return kActMeta;
  }

  // Entry e against what DST holds under its name (of the same type): what the run must do
  // with it (0: nothing), its change line added to `lines`.
  uint8_t compare(const Plan& plan, const Entry& e, const io::DirChild& t,
                  std::vector<std::string>& lines) const {
    const bool is_dir = e.meta.type == io::FileType::kDirectory;
    const char tc = type_code(e.meta.type);
    bool differs = false;
    if (opts_.checksum && e.meta.type == io::FileType::kRegular &&
        e.meta.size_bytes == t.meta.size_bytes) {
      auto sum = hash_file(AT_FDCWD, plan.src_path(e));
      differs = !sum || content_differs(e, t, &sum.value(), plan.dst_path(e));
    } else {
      differs = content_differs(e, t, nullptr, plan.dst_path(e));
    }
    std::string attrs = attr_diff(e.meta, t.meta, owner_, differs && !is_dir && opts_.checksum);
    if (opts_.copy.xattrs && !differs) {
      auto a = io::read_xattrs(plan.src_path(e));
      auto b = io::read_xattrs(plan.dst_path(e));
      if (!a || !b || !(a.value() == b.value())) attrs += 'x';
    }
    if (differs) {
      lines.push_back(
          item(e.meta.type == io::FileType::kRegular ? '>' : 'c', tc, attrs, e.rel, false));
      return e.meta.type == io::FileType::kRegular ? kActTransfer : kActCreate;
    }
    if (attrs.find_first_not_of('.') != std::string::npos) {
      lines.push_back(item('.', tc, attrs, e.rel, is_dir));
      return kActMeta;
    }
    return is_dir ? kActMeta : 0;  // a directory's contents may still change its mtime
  }

  // --delete: what DST holds that SRC lacks (excluded names protected) is removed.
  void delete_extras(const DirRef& d, const std::vector<io::DirChild>& dst,
                     const std::vector<uint8_t>& dst_paired, int dst_fd, const std::string& dst_dir,
                     std::vector<std::string>& lines) {
    for (size_t j = 0; j < dst.size(); ++j) {
      if (dst_paired[j]) continue;
      const io::DirChild& child = dst[j];
      const std::string& name = child.name;
      std::string rel = io::join_path(d.rel, name);
      if (filter_.excluded(rel, child.meta.type == io::FileType::kDirectory)) continue;
      lines.push_back("*deleting   " + rel +
                      (child.meta.type == io::FileType::kDirectory ? "/" : ""));
      if (!opts_.dry_run) {
        if (auto st = remove_tree(dst_fd, name, io::join_path(dst_dir, name)); !st)
          errors_.add(st.error().message);
      }
    }
  }

  std::vector<std::string> take_changes() {
    std::lock_guard lock(mu_);
    return std::move(changes_);
  }
  void add_change(std::string line) {
    std::lock_guard lock(mu_);
    changes_.push_back(std::move(line));
  }

 private:
  const SyncOptions& opts_;
  ErrorList& errors_;
  bool owner_;
  WalkCopier* copier_;  // null: every change goes to the transfer phases
  PathFilter filter_;
  std::mutex mu_;
  std::vector<std::string> changes_;
};

// Itemized changes, every rank's, sorted by path. Collective.
std::vector<std::string> gather_changes(transport::Comm& comm,
                                        const std::vector<std::string>& mine) {
  std::vector<std::string> all = gather_strings(comm, mine);
  auto path_of = [](const std::string& l) { return l.substr(l.find(' ') + 1); };
  std::stable_sort(all.begin(), all.end(), [&](const std::string& a, const std::string& b) {
    return path_of(a) < path_of(b);
  });
  return all;
}

}  // namespace

SyncResult run_sync(const SyncOptions& opts, transport::Comm& comm) {
  SyncResult out;
  auto t0 = Clock::now();
  auto roots = resolve_agreed(opts.copy, comm, true);
  if (!roots) {
    out.run.exit_code = kExitFatal;
    out.run.fatal = roots.error().message;
    return out;
  }
  raise_fd_limit();
  unsigned threads = opts.copy.threads ? opts.copy.threads : default_threads_per_rank();
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  ErrorList walk_errors;
  std::vector<uint8_t> flags;
  bool owner = io::can_chown();
  // Copies during the walk unless the run needs the transfer phases' whole view: a resumed
  // run (journal), a checksum manifest (written in one piece), or nothing to change.
  std::optional<WalkCopier> copier;
  if (!opts.dry_run && !opts.copy.resume && opts.copy.manifest_path.empty())
    copier.emplace(opts.copy, threads, comm.rank(), owner);
  SyncVisitor visitor(opts, walk_errors, owner, copier ? &*copier : nullptr);
  // Copying during the walk shows progress as the transfer phase does, and the same sums
  // carry a rank's failure or stop signal to the others.
  std::unique_ptr<transport::AsyncSum> walk_sum;
  std::optional<Progress> walk_progress;
  if (copier) {
    walk_sum = comm.make_async_sum();
    Progress::Across share{walk_sum.get(), comm.size(), [&] { return copier->state(); },
                           [&](Progress::RunState) { copier->stop_for_peer(); }};
    walk_progress.emplace(copier->stats(),
                          comm.rank() == 0 ? opts.copy.progress : ProgressMode::kNone, "sync",
                          opts.copy.progress_interval_s, std::move(share));
  }
  Plan plan = distributed_walk(
      comm, roots.value(), threads, walk_errors,
      [&](const Plan& p, const DirRef& d, io::DirListing& listing, WalkOutput& o) {
        visitor.visit(p, d, listing, o);
      },
      [&](const Plan& p, Entry& e) -> std::optional<uint8_t> {
        if (e.meta.type != io::FileType::kDirectory) return std::nullopt;
        struct stat st;
        bool exists = ::stat(p.roots[e.root].dst.c_str(), &st) == 0;
        if (!exists) {
          visitor.add_change(item('c', 'd', "+++++++++", "", true));
          if (opts.dry_run) return kActMeta;
          auto parent = io::open_dir_path(p.dst_parent(e), io::DirOpen::kParent, true);
          if (!parent) {
            walk_errors.add(parent.error().message);
            return std::nullopt;
          }
          if (!make_dst_dir(parent->get(), p, e, walk_errors)) return std::nullopt;
        }
        return kActMeta;
      },
      flags,
      copier ? std::function<bool()>([&] { return copier->stopping(); }) : std::function<bool()>());
  if (walk_progress) walk_progress->stop();
  double walk_seconds = std::chrono::duration<double>(Clock::now() - t0).count();

  out.changes = gather_changes(comm, visitor.take_changes());

  if (opts.dry_run) {
    out.run.started = true;
    out.run.walk_seconds = walk_seconds;
    out.run.seconds = walk_seconds;
    out.run.errors = walk_errors.take();
    out.run.exit_code = agree_exit_code(comm, out.run.errors.empty() ? kExitOk : kExitPartial);
    return out;
  }
  WalkTransfer walked;
  if (copier) walked = copier->finish();
  out.run = run_phases(comm, opts.copy, std::move(plan), std::move(flags), t0, walk_seconds,
                       walk_errors, threads, true, &walked);
  return out;
}

}  // namespace barge::pipeline
