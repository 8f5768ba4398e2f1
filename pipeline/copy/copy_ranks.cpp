// run_copy_ranks: the copy across ranks. Resolves the placement all ranks agree on, walks
// SRC together (destination directories made as they are found), then runs the copy's
// phases (pipeline/dist/dist_copy.hpp).
#include <oneapi/tbb/global_control.h>
#include <chrono>
#include <optional>

#include "io/log.hpp"
#include "io/path_ops.hpp"
#include "pipeline/copy/copy.hpp"
#include "pipeline/copy/tune.hpp"
#include "pipeline/dist/dist_internal.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/engine/journal.hpp"

namespace barge::pipeline {
namespace {

// --tune: every rank probes its share of the walk at once (pipeline/copy/tune.hpp), then the
// phases run with the choice.
RunResult run_tuned(transport::Comm& comm, const CopyOptions& opts, Plan plan,
                    std::vector<uint8_t> flags, std::chrono::steady_clock::time_point t0,
                    double walk_seconds, ErrorList& walk_errors, unsigned threads) {
  TuneReport report;
  CopyOptions chosen =
      tune_copy(opts, plan, TuneLimits{.seconds = opts.tune_seconds, .default_threads = threads},
                report, &comm);
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, chosen.threads);
  RunResult r = run_phases(comm, chosen, std::move(plan), std::move(flags), t0, walk_seconds,
                           walk_errors, chosen.threads, false);
  if (comm.rank() == 0) r.tune = std::move(report);
  return r;
}

}  // namespace

RunResult run_copy_ranks(const CopyOptions& opts, transport::Comm& comm) {
  if (comm.size() == 1) return run_copy(opts);
  auto t0 = std::chrono::steady_clock::now();
  auto roots = resolve_agreed(opts, comm, false);
  std::string journal_dir = Journal::dir_for(opts.destination);
  if (roots && opts.resume) {
    if (auto saved = Journal::resume_roots(journal_dir, opts.sources, opts.destination))
      roots = *saved;
  }
  if (roots && comm.rank() == 0) {
    if (!opts.resume) Journal::remove(journal_dir);
    if (auto st = Journal::save_roots(journal_dir, roots.value()); !st) {
      io::log_warn(st.error().message + " (a stopped run will not be resumable)");
    }
  }
  if (!roots) {
    RunResult result;
    result.exit_code = kExitFatal;
    result.fatal = roots.error().message;
    return result;
  }
  raise_fd_limit();
  unsigned threads = opts.threads ? opts.threads : default_threads_per_rank();
  std::optional<tbb::global_control> gc;
  gc.emplace(tbb::global_control::max_allowed_parallelism, threads);
  ErrorList walk_errors;
  std::vector<uint8_t> flags;
  PathFilter filter(opts.excludes, opts.includes);
  auto type_flag = [](const Entry& e) -> uint8_t {
    switch (e.meta.type) {
      case io::FileType::kRegular:
        return kActTransfer;
      case io::FileType::kDirectory:
        return kActMeta;
      default:
        return kActCreate;
    }
  };
  Plan plan = distributed_walk(
      comm, roots.value(), threads, walk_errors,
      [&](const Plan& p, const DirRef& d, io::DirListing& listing, WalkOutput& out) {
        auto dst_fd = io::open_dir_path(io::join_path(p.roots[d.root].dst, d.rel),
                                        io::DirOpen::kParent, d.rel.empty());
        for (io::DirChild& c : listing.children) {
          auto child = child_entry(d, c, filter);
          if (!child) continue;
          Entry& e = *child;
          if (e.meta.type == io::FileType::kDirectory) {
            // Created now, before anyone can be handed it: children always find their parent.
            if (!dst_fd) {
              walk_errors.add(dst_fd.error().message);
              continue;
            }
            if (!make_dst_dir(dst_fd->get(), p, e, walk_errors)) continue;
            out.subdirs.push_back(DirRef{d.root, e.rel});
          }
          out.flags.push_back(type_flag(e));
          out.entries.push_back(std::move(e));
        }
      },
      [&](const Plan& p, Entry& e) -> std::optional<uint8_t> {
        if (e.meta.type == io::FileType::kDirectory) {
          auto parent = io::open_dir_path(p.dst_parent(e), io::DirOpen::kParent, true);
          if (!parent) {
            walk_errors.add(parent.error().message);
            return std::nullopt;
          }
          if (!make_dst_dir(parent->get(), p, e, walk_errors)) return std::nullopt;
        }
        return type_flag(e);
      },
      flags);
  const double walk_seconds = since(t0);
  if (!opts.tune)
    return run_phases(comm, opts, std::move(plan), std::move(flags), t0, walk_seconds, walk_errors,
                      threads, false);
  gc.reset();  // the probe sets its own thread counts
  return run_tuned(comm, opts, std::move(plan), std::move(flags), t0, walk_seconds, walk_errors,
                   threads);
}

}  // namespace barge::pipeline
