// barge migrate plan: measures SRC (what it holds and how it is shaped), probes the copy and
// read rates on the real SRC and DST for a few seconds, and predicts the full copy's time
// from them; after a pass, the change rate of the live source (a dry-run sync against DST)
// and the time of the next catch-up pass and of the cutover.
//
// The model: a full copy takes  N_small × t_file + B_large / R_large,  where t_file is the
// measured time per file of a random sample of the files under 64 MiB copied by the engine
// itself (their bytes included: a uniform sample by count carries the tree's mix of sizes),
// and R_large the rate of copying regions of the largest files (the files of 64 MiB or more,
// B_large bytes). The probe copies into a scratch directory in DST and removes it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "pipeline/core/plan.hpp"
#include "pipeline/engine/copy_options.hpp"
#include "pipeline/migrate/state.hpp"

namespace barge::pipeline::migrate {

struct SizeBin {
  uint64_t upper_bytes = 0;  // files of fewer bytes than this (and at least the bin before)
  uint64_t files = 0;
  uint64_t bytes = 0;
};

struct DirCount {
  std::string path;  // below SRC ("." for SRC itself)
  uint64_t entries = 0;
};

struct TreeFigures {
  uint64_t files = 0, dirs = 0, symlinks = 0, specials = 0;
  uint64_t bytes = 0;             // regular files' sizes
  uint64_t allocated_bytes = 0;   // what they occupy (st_blocks)
  uint64_t hardlinked_files = 0;  // regular files with more than one link
  uint64_t hardlink_groups = 0;   // distinct inodes among them
  uint64_t sparse_files = 0;
  uint64_t largest_file_bytes = 0;
  uint64_t max_entries_per_dir = 0;
  double mean_entries_per_dir = 0;
  uint64_t small_files = 0, small_bytes = 0;  // under 64 MiB (the sample copy's files)
  uint64_t large_files = 0, large_bytes = 0;  // 64 MiB and more (the region copy's)
  std::vector<SizeBin> size_histogram;        // powers of two; empty bins left out
  std::vector<DirCount> largest_dirs;         // the ten with the most entries
  double walk_seconds = 0;
  uint64_t walk_errors = 0;
  std::vector<std::string> error_samples;
};

struct RateFigures {
  bool probed = false;
  std::string note;  // what was probed or why not
  uint64_t sample_files = 0, sample_bytes = 0;
  double sample_seconds = 0;  // the sample copies
  uint64_t region_bytes = 0;
  double region_seconds = 0;  // the region copies
  uint64_t writeback_bytes = 0;
  double writeback_seconds = 0;  // a region copy timed with its write-back (large trees)
  uint64_t read_bytes = 0;
  double read_seconds = 0;  // read + XXH3 of the largest file's start (verify's rate)
  uint64_t read_files = 0, read_files_bytes = 0;
  double read_files_seconds = 0;  // read + XXH3 of sampled small files, in parallel
  double seconds = 0;             // the whole probe
  double seconds_per_file() const {
    return sample_files ? sample_seconds / static_cast<double>(sample_files) : 0;
  }
  double large_rate() const { return region_seconds > 0 ? region_bytes / region_seconds : 0; }
  double writeback_rate() const {
    return writeback_seconds > 0 ? writeback_bytes / writeback_seconds : 0;
  }
  double read_rate() const { return read_seconds > 0 ? read_bytes / read_seconds : 0; }
  // Verification's time per file beyond its bytes (at read_rate).
  double read_seconds_per_file() const {
    if (!read_files) return 0;
    double left = read_files_seconds - (read_rate() > 0 ? read_files_bytes / read_rate() : 0);
    return std::max(0.0, left) / static_cast<double>(read_files);
  }
};

struct Prediction {
  double full_copy_seconds = 0;
  // After a pass: what changed in SRC since the last pass started, per second.
  std::optional<double> change_bytes_per_second, change_files_per_second;
  std::optional<double> scan_seconds;      // a pass that finds nothing to copy
  std::optional<double> catch_up_seconds;  // the next catch-up pass
  std::optional<double> cutover_seconds;   // final pass + verification, if frozen now
  std::optional<double> verify_seconds;
  std::string basis;  // how the figures were reached
};

struct MigratePlanOptions {
  CopyOptions copy;  // sources[0] = SRC, destination = DST; engine knobs
  std::string state_dir;
  double probe_seconds = 4;
  bool probe = true;
  std::string json_path, html_path;
  bool quiet = false;
};

struct PlanResult {
  int exit_code = 0;
  std::string fatal;
  std::string src, dst;
  TreeFigures tree;
  RateFigures rates;
  Prediction prediction;
  std::optional<PassRecord> delta;  // the dry run after a pass: what changed since
  std::vector<PassRecord> passes;
};

TreeFigures measure_tree(const Plan& plan);
// The rate probe (at most about `seconds`), into a scratch directory inside opts.destination.
RateFigures probe_rates(const CopyOptions& opts, const Plan& plan, const TreeFigures& tree,
                        double seconds);
// Full copy from the tree and the rates; cutover and catch-up once there are passes (and,
// for the change rate, `delta`: what a dry run found changed since the last pass began, at
// `now_unix`).
Prediction predict(const TreeFigures& tree, const RateFigures& rates,
                   const std::vector<PassRecord>& passes, const std::optional<PassRecord>& delta,
                   double now_unix);

// migrate plan, the whole command: walk, measure, probe, predict, write DIR/plan.json (and
// --json, --html). A second plan after a pass measures the change rate with a dry run.
PlanResult run_plan(const MigratePlanOptions& opts);

nlohmann::json to_json(const PlanResult& r);
std::string human_plan(const PlanResult& r);
std::string html_plan(const PlanResult& r);
PlanResult plan_from_json(const nlohmann::json& j);  // DIR/plan.json read back (status)

}  // namespace barge::pipeline::migrate
