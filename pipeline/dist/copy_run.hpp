// The MPI copy's run object (run_phases, pipeline/dist/dist_internal.hpp): one method per
// phase. Internal to pipeline/dist: copy_run_plan.cpp (select … resume), copy_run_move.cpp
// (create … metadata), copy_run_report.cpp (report, run_phases).
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "pipeline/dist/dist_internal.hpp"
#include "pipeline/engine/copy_internal.hpp"

namespace barge::pipeline {

class CopyRun {
 public:
  CopyRun(transport::Comm& comm, const CopyOptions& opts, Plan plan, std::vector<uint8_t> flags,
          ErrorList& walk_errors, unsigned threads, bool dirs_if_changed,
          const WalkTransfer* walked, const NetTransfer* net)
      : comm_(comm),
        opts_(opts),
        plan_(std::move(plan)),
        flags_(std::move(flags)),
        walk_errors_(walk_errors),
        threads_(threads),
        dirs_if_changed_(dirs_if_changed),
        walked_(walked),
        net_(net),
        local_count_(static_cast<uint32_t>(plan_.entries.size())),
        journal_dir_(Journal::dir_for(opts.destination)) {}

  // Every rank calls these in this order.
  void select();
  void hard_links();
  void plan();
  void pool();
  void resume();
  void create();
  void transfer();
  void finalize();
  void followers();
  void metadata();
  RunResult report(std::chrono::steady_clock::time_point t0, double walk_seconds);

 private:
  bool mine(uint32_t g) const { return owner_[g] == static_cast<uint32_t>(comm_.rank()); }
  void count_totals();
  void create_large_parts();
  void put_large_in_place(uint32_t g, DirFdCache& dirs);
  void gather_manifest(RunResult& total);
  void stopped_by(Progress::RunState peer);
  void with_progress(transport::AsyncSum& across, const char* verb,
                     const std::function<void()>& body);
  void transfer_from_net();

  transport::Comm& comm_;
  const CopyOptions& opts_;
  Plan plan_;
  std::vector<uint8_t> flags_;
  ErrorList& walk_errors_;
  const unsigned threads_;
  const bool dirs_if_changed_;
  const WalkTransfer* walked_;
  const NetTransfer* net_;      // null: the bytes are read here
  const uint32_t local_count_;  // entries this rank walked; shared large files follow them
  const std::string journal_dir_;
  RunResult result_;

  // select, hard links, plan
  std::vector<uint8_t> include_;  // cut into units by this rank
  JournalState journal_state_;
  std::vector<uint32_t> in_place_files_;
  std::vector<uint32_t> followers_;
  std::unordered_map<uint32_t, std::string> leader_of_;  // follower → leader's destination
  std::unordered_map<uint32_t, std::string> leader_manifest_of_;  // ... and manifest path
  uint32_t my_large_ = 0;
  std::vector<uint32_t> owner_;   // per shared large file (run-wide id g = entry - local_count_)
  std::vector<uint32_t> origin_;  // per shared large file: its entry here (owner), or kNoOrigin
  std::vector<uint32_t> chunk_counts_;
  uint32_t global_count_ = 0;

  // pool, resume
  std::unique_ptr<io::BufferPool> pool_;
  std::unique_ptr<BackendSet> backends_;
  LiveStats stats_;
  std::unique_ptr<CopyContext> ctx_;
  ManifestWriter manifest_;
  std::vector<const std::unordered_set<uint32_t>*> done_chunks_;
  std::unique_ptr<Journal> journal_;

  // create … metadata
  std::atomic<bool> stopped_by_peer_{false};  // this rank stopped because another did
  std::optional<io::ScopedUmask> umask0_;
  bool create_ok_ = false;
  bool all_ok_ = false;
  double busy_ = 0;
};

}  // namespace barge::pipeline
