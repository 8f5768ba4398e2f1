// run_copy: plan (resolve + walk) → create (directories, symlinks, special files) → transfer
// (the oneTBB flow graph over pool buffers) → finalize (directory metadata, deepest first)
// → report.
#include "pipeline/copy/copy.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <oneapi/tbb/enumerable_thread_specific.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <fstream>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>

#include "io/log.hpp"
#include "io/path_ops.hpp"
#include "io/xattr.hpp"
#include "pipeline/copy/tune.hpp"
#include "pipeline/core/manifest.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/engine/copy_stages.hpp"
#include "pipeline/engine/dir_pass.hpp"
#include "pipeline/engine/graph.hpp"
#include "pipeline/engine/placement.hpp"

namespace barge::pipeline {
namespace {

using Clock = std::chrono::steady_clock;

// Create phase: directories (owner-writable until finalize), symlinks and special files.
// A directory that cannot be created fails its whole subtree, named once.
void create_entries(CopyContext& ctx, RunResult& result, const std::vector<uint8_t>* actions) {
  const Plan& plan = ctx.plan;
  DirPass pass(plan, [&](const std::string& err) { ctx.errors.add(err); });
  pass.run(
      [&](uint32_t index, int parent_fd, bool parent_ok) -> int {
        const Entry& e = plan.entries[index];
        if (!parent_ok) {
          ctx.parent_ok[index] = 0;
          return -1;
        }
        std::string name = plan.name(e);
        std::string path = plan.dst_path(e);
        switch (e.meta.type) {
          case io::FileType::kDirectory: {
            if (::mkdirat(parent_fd, name.c_str(), 0700) != 0 && errno != EEXIST) {
              ctx.errors.add(io::Error::from_errno(errno, "create directory " + path).message);
              ctx.parent_ok[index] = 0;
              return -1;
            }
            int fd =
                ::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) {
              ctx.errors.add(errno == ENOTDIR || errno == ELOOP
                                 ? "cannot overwrite non-directory " + path + " with a directory"
                                 : io::Error::from_errno(errno, "open directory " + path).message);
              ctx.parent_ok[index] = 0;
              return -1;
            }
            ++result.dirs;
            return fd;
          }
          case io::FileType::kRegular:
            return -1;  // the transfer phase writes these
          case io::FileType::kSymlink:
          case io::FileType::kFifo:
          case io::FileType::kCharDevice:
          case io::FileType::kBlockDevice:
            if (!actions || ((*actions)[index] & kActCreate))
              create_special(ctx, parent_fd, index, result);
            return -1;
          default:
            ctx.errors.add(plan.src_path(e) + ": " + io::file_type_name(e.meta.type) +
                           " not copied");
            return -1;
        }
      },
      nullptr);
}

// Finalize phase: directory metadata after their contents, deepest first.
void finalize_dirs(CopyContext& ctx) {
  const Plan& plan = ctx.plan;
  DirPass pass(plan);
  pass.run(
      [&](uint32_t index, int parent_fd, bool parent_ok) -> int {
        const Entry& e = plan.entries[index];
        if (!parent_ok || e.meta.type != io::FileType::kDirectory || !ctx.parent_ok[index])
          return -1;
        std::string name = plan.name(e);
        int fd = ::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0)
          ctx.errors.add(
              io::Error::from_errno(errno, "set metadata of " + plan.dst_path(e)).message);
        return fd;
      },
      [&](uint32_t index, int fd) {
        const Entry& e = plan.entries[index];
        if (auto st = io::apply_meta_fd(fd, e.meta, ctx.apply_owner, plan.dst_path(e)); !st) {
          ctx.errors.add(st.error().message);
        }
        if (ctx.opts.xattrs) {
          if (auto st = apply_xattrs(plan, e, fd, plan.dst_path(e)); !st)
            ctx.errors.add(st.error().message);
        }
      });
}

}  // namespace

namespace {

// validate → placement (its record applied) → with --resume, the roots of the run being
// resumed; then the journal made afresh (unless resuming) with the roots, so even a run
// killed during the walk can be resumed. nullopt: `result` holds why the run cannot start.
std::optional<std::vector<Root>> placed_roots(const CopyOptions& opts, RunResult& result) {
  auto refuse = [&](std::string why) {
    result.exit_code = kExitFatal;
    result.fatal = std::move(why);
    return std::nullopt;
  };
  if (auto st = validate(opts); !st) return refuse(st.error().message);
  const std::string journal_dir = Journal::dir_for(opts.destination);
  auto placed = resolve_placement(opts.sources, opts.destination);
  io::Result<std::vector<Root>> roots =
      placed ? io::Result<std::vector<Root>>(placed->roots) : placed.error();
  if (roots && opts.resume) {
    // The placement of the run being resumed, when its sources are these.
    if (auto saved = Journal::resume_roots(journal_dir, opts.sources, opts.destination))
      roots = *saved;
  }
  if (!roots) return refuse(roots.error().message);
  if (placed) {
    if (placed->honoured) io::log_info(placed->note);
    if (auto st = apply_placement_record(placed.value(), opts.destination); !st)
      return refuse(st.error().message);
  }
  result.started = true;
  if (!opts.resume) Journal::remove(journal_dir);
  if (auto st = Journal::save_roots(journal_dir, roots.value()); !st)
    io::log_warn(st.error().message + " (a stopped run will not be resumable)");
  return std::move(roots.value());
}

// copy's transfer: the files `include` selects (with --resume, less what is done), read →
// hash → write → commit, large files' chunks journaled.
void transfer_files(CopyContext& ctx, io::BufferPool& pool, unsigned threads,
                    std::vector<uint8_t> include, RunResult& result) {
  const CopyOptions& opts = ctx.opts;
  const std::string journal_dir = Journal::dir_for(opts.destination);
  JournalState journal_state;
  std::vector<const std::unordered_set<uint32_t>*> done_chunks;
  if (opts.resume) {
    journal_state = Journal::load(journal_dir);
    result.skipped_files = plan_resume(ctx, include, journal_state, done_chunks);
  }
  std::unique_ptr<Journal> journal = open_journal(ctx, include, journal_dir);
  JournalFlusher flusher(ctx.journal, ctx);
  UnitCutter cutter(ctx.plan, opts.chunk_bytes, pool.buffer_bytes(), opts.max_files_per_unit,
                    &include);
  if (opts.resume) {
    cutter.set_skip(
        [&](uint32_t f, uint32_t c) { return done_chunks[f] && done_chunks[f]->count(c) > 0; });
  }
  transfer(ctx, pool, threads, [&](std::vector<Extent>& out) { return cutter.next(out); });
}

// The report's counts, cause and exit code once the run is over.
void finish(RunResult& result, CopyContext& ctx, const LiveStats& stats, const BackendSet& backends,
            Clock::time_point t0) {
  if (!ctx.fatal().empty())
    result.files_not_copied =
        ctx.plan.files.size() - stats.files_done.load() - result.skipped_files;
  result.fatal = ctx.fatal();
  result.errors = ctx.errors.take();
  result.stopped_entries = ctx.stopped_errors.take();
  result.bytes = stats.bytes_committed.load();
  result.bytes_transferred = stats.bytes_done.load();
  result.files = stats.files_done.load();
  result.bytes_verified = stats.bytes_verified.load();
  result.bytes_cloned = stats.bytes_cloned.load();
  for (int s = 0; s < kStageCount; ++s) result.stage_busy_ns[s] = stats.stage_busy_ns[s].load();
  result.io_backend = backends.name();
  result.buffers_registered = backends.registered();
  result.seconds = since(t0);
  result.peak_rss_bytes = peak_rss_bytes();
  result.resumable = ctx.resumable.load();
  result.exit_code = exit_code_for(result.resumable, !result.fatal.empty(), !result.errors.empty());
  if (result.exit_code == kExitOk) Journal::remove(Journal::dir_for(ctx.opts.destination));
}

}  // namespace

RunResult run_copy(const CopyOptions& opts) {
  RunResult result;
  auto t0 = Clock::now();
  std::optional<std::vector<Root>> roots = placed_roots(opts, result);
  if (!roots) return result;
  raise_fd_limit();
  unsigned threads = opts.threads ? opts.threads : default_threads();
  Plan plan;
  {
    // More threads than cores: I/O stages block in the kernel while hash stages compute.
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    PathFilter filter(opts.excludes, opts.includes);
    plan = walk_roots(std::move(*roots), threads, filter);
  }
  result.walk_seconds = since(t0);
  CopyOptions chosen = opts;
  if (opts.tune) {
    result.tune.emplace();
    chosen = tune_copy(opts, plan, TuneLimits{.seconds = opts.tune_seconds}, *result.tune);
  }
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism,
                         chosen.threads ? chosen.threads : default_threads());
  return copy_planned(chosen, plan, std::move(result), t0, {});
}

namespace {
// PlannedCopy::time_limit_s: stops the transfer once the time is up (a watchdog thread).
class TimeLimit {
 public:
  TimeLimit(CopyContext& ctx, double seconds) {
    if (seconds <= 0) return;
    thread_ = std::thread([this, &ctx, seconds] {
      std::unique_lock lock(mu_);
      if (!cv_.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return done_; }))
        ctx.set_fatal(kProbeTimeUp);
    });
  }
  ~TimeLimit() { cancel(); }
  void cancel() {
    {
      std::lock_guard lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) thread_.join();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};
}  // namespace

RunResult copy_planned(const CopyOptions& opts, const Plan& plan, RunResult result,
                       std::chrono::steady_clock::time_point t0, const PlannedCopy& how) {
  unsigned threads = opts.threads ? opts.threads : default_threads();
  // The pool never needs more buffers than the data has units: small runs stay small (and
  // register, pin and touch less memory).
  io::BufferPool pool(opts.chunk_bytes,
                      pool_buffer_count(plan, {.memory_bytes = opts.memory_bytes,
                                               .chunk_bytes = opts.chunk_bytes,
                                               .buffer_bytes = opts.chunk_bytes,
                                               .files_per_unit = opts.max_files_per_unit,
                                               .min_buffers = how.min_units,
                                               .buffers_per_unit = how.buffers_per_unit}));
  BackendSet backends(io::BackendOptions{opts.backend, opts.queue_depth, &pool});
  LiveStats stats;
  CopyContext ctx(plan, opts, stats, backends.source());
  ctx.apply_owner = io::can_chown();
  ManifestWriter manifest;
  if (!opts.manifest_path.empty()) ctx.manifest = &manifest;
  for (auto& e : plan.walk_errors) ctx.errors.add(e.message);
  // Hard-link groups: the leader is copied, the others linked to it afterwards.
  const std::vector<uint32_t> leader = hard_link_leaders(plan);
  std::vector<uint32_t> followers;
  for (uint32_t f : plan.files) {
    if (leader[f] != kLeadsItself) {
      followers.push_back(f);
    } else if (!how.actions || ((*how.actions)[f] & kActTransfer)) {
      stats.bytes_total += plan.entries[f].meta.size_bytes;
      ++stats.files_total;
    }
  }
  if (!how.actions) stats.files_total += followers.size();  // a sync links only what differs
  {
    // New files are created with their final permission bits; see CommitStage::finalize.
    io::ScopedUmask umask0(0);
    Progress progress(stats, opts.progress, how.verb, opts.progress_interval_s);
    create_entries(ctx, result, how.actions);
    std::vector<uint8_t> include = ctx.parent_ok;
    for (uint32_t f : followers) include[f] = 0;
    if (how.actions) {
      for (uint32_t f : plan.files)
        if (!((*how.actions)[f] & kActTransfer)) include[f] = 0;
    }
    TimeLimit limit(ctx, how.time_limit_s);
    try {
      if (how.transfer) {
        how.transfer(ctx, pool, threads, include);
      } else {
        transfer_files(ctx, pool, threads, include, result);
      }
    } catch (const std::exception& ex) {
      ctx.set_fatal(std::string("transfer: ") + ex.what());
    }
    limit.cancel();
    stats.files_done += link_followers(
        ctx, followers, [&](uint32_t f) { return plan.dst_path(plan.entries[leader[f]]); },
        [&](uint32_t f) { return plan.manifest_path(plan.entries[leader[f]]); },
        [&](uint32_t f) {
          return ctx.parent_ok[leader[f]] && !ctx.file_failed(leader[f]) && ctx.fatal().empty();
        },
        how.actions != nullptr);
    if (how.actions)
      apply_meta_changes(ctx, *how.actions, static_cast<uint32_t>(plan.entries.size()));
    finalize_dirs(ctx);
    progress.stop();
  }
  if (ctx.manifest && ctx.fatal().empty()) {
    if (auto st = manifest.write_to(opts.manifest_path); !st) ctx.set_fatal(st.error().message);
  }
  finish(result, ctx, stats, backends, t0);
  return result;
}

}  // namespace barge::pipeline
