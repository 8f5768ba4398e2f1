// The MPI copy's report, and run_phases: the phases in order.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/log.hpp"
#include "io/path_ops.hpp"
#include "io/xattr.hpp"
#include "pipeline/core/rank_stats.hpp"
#include "pipeline/core/wire.hpp"
#include "pipeline/dist/chunks.hpp"
#include "pipeline/dist/copy_run.hpp"

namespace barge::pipeline {

// report: per-rank statistics reduced once, errors and the first cause gathered, the
// manifest written by rank 0, the exit code agreed.
RunResult CopyRun::report(std::chrono::steady_clock::time_point t0, double walk_seconds) {
  CopyContext& ctx = *ctx_;
  RankStats me;
  me.bytes = stats_.bytes_done.load();
  me.files = stats_.files_done.load();
  me.busy_seconds = busy_;
  me.walk_seconds = walk_seconds;
  me.bytes_committed = stats_.bytes_committed.load();
  me.bytes_verified = stats_.bytes_verified.load();
  me.bytes_cloned = stats_.bytes_cloned.load();
  me.dirs = result_.dirs;
  me.symlinks = result_.symlinks;
  me.others = result_.others;
  for (int s = 0; s < kStageCount; ++s) me.stage_busy_ns[s] = stats_.stage_busy_ns[s].load();
  RunResult total;
  reduce_rank_stats(comm_, me, total, true);
  total.started = true;
  total.walk_seconds = walk_seconds;
  total.errors = gather_strings(comm_, ctx.errors.take());
  total.stopped_entries = gather_strings(comm_, ctx.stopped_errors.take());
  uint64_t not_copied = ctx.fatal().empty() ? 0 : stats_.files_total - stats_.files_done;
  comm_.allreduce_sum(std::span<uint64_t>(&not_copied, 1));
  // The report names the cause: a rank's own failure before "stopped because of another".
  auto fatal_if = [&](bool want) {
    return want && !ctx.fatal().empty() ? std::vector<std::string>{ctx.fatal()}
                                        : std::vector<std::string>{};
  };
  std::vector<std::string> fatals = gather_strings(comm_, fatal_if(!stopped_by_peer_));
  if (fatals.empty()) fatals = gather_strings(comm_, fatal_if(stopped_by_peer_));
  if (!fatals.empty()) total.fatal = fatals.front();
  if (!total.fatal.empty()) total.files_not_copied = not_copied;
  if (ctx.manifest) gather_manifest(total);
  total.io_backend = backends_->name();
  total.buffers_registered = backends_->registered();
  total.seconds = since(t0);
  total.exit_code = agree_exit_code(
      comm_, exit_code_for(ctx.resumable.load(), !total.fatal.empty(), !total.errors.empty()));
  total.resumable = total.exit_code == kExitResumable;
  uint64_t skipped = result_.skipped_files;
  comm_.allreduce_sum(std::span<uint64_t>(&skipped, 1));
  total.skipped_files = skipped;
  comm_.barrier();  // every rank's journal is closed... after the report
  if (total.exit_code == kExitOk && comm_.rank() == 0) Journal::remove(journal_dir_);
  return total;
}

// The manifest lists every rank's files, written once by rank 0.
void CopyRun::gather_manifest(RunResult& total) {
  WireWriter mw;
  std::vector<ManifestEntry> mine = manifest_.entries();
  mw.u64(mine.size());
  for (const ManifestEntry& m : mine) {
    mw.str(m.path);
    mw.u64(m.hash.high);
    mw.u64(m.hash.low);
  }
  // Hard-link followers: a leader's checksum may be on another rank, so they resolve here.
  for (const auto& [path, leader] : manifest_.links()) {
    mw.str(path);
    mw.str(leader);
  }
  std::vector<std::string> parts = comm_.allgather(mw.take());
  if (comm_.rank() != 0 || !total.fatal.empty()) return;
  ManifestWriter all;
  for (const std::string& part : parts) {
    WireReader r(part);
    for (uint64_t n = r.u64(); n > 0; --n) {
      std::string path = r.str();
      Hash128 h;
      h.high = r.u64();
      h.low = r.u64();
      all.add(std::move(path), h);
    }
    while (!r.done()) {
      std::string path = r.str();
      all.add_link(std::move(path), r.str());
    }
  }
  if (auto st = all.write_to(opts_.manifest_path); !st) total.fatal = st.error().message;
}

RunResult run_phases(transport::Comm& comm, const CopyOptions& opts, Plan plan,
                     std::vector<uint8_t> flags, std::chrono::steady_clock::time_point t0,
                     double walk_seconds, ErrorList& walk_errors, unsigned threads,
                     bool dirs_if_changed, const WalkTransfer* walked, const NetTransfer* net) {
  CopyRun run(comm, opts, std::move(plan), std::move(flags), walk_errors, threads, dirs_if_changed,
              walked, net);
  run.select();
  run.hard_links();
  run.plan();
  run.pool();
  run.resume();
  run.create();
  run.transfer();
  run.finalize();
  run.followers();
  run.metadata();
  return run.report(t0, walk_seconds);
}

}  // namespace barge::pipeline
