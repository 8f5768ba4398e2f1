// copy --tune's probes, also used by migrate plan to measure the copy rate: copies of
// source regions and of random samples of files into a scratch directory beside the
// destination (pipeline/copy/tune.cpp says how the tuner uses them). Internal to
// pipeline/copy and pipeline/migrate.
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pipeline/core/plan.hpp"
#include "pipeline/core/stats.hpp"
#include "pipeline/engine/copy_options.hpp"

namespace barge::pipeline::tune_detail {

inline constexpr uint64_t kLargeFile = 64ull << 20;  // region copies read files this large
inline constexpr uint64_t kAlign = 4096;

std::string mib(uint64_t bytes);
// The kernel's dirty limit: beyond it, buffered writes go at the device's pace. With
// `background`, the level at which write-back starts.
uint64_t dirty_limit_bytes(bool background = false);
// A new directory on the destination's file system where the probe may write (throws).
std::filesystem::path scratch_dir(const CopyOptions& o);

// The source bytes the region probes read: the largest files (of `min_bytes` or more), in
// turn, never twice.
class RegionCursor {
 public:
  explicit RegionCursor(const Plan& plan, uint64_t min_bytes = kLargeFile);
  // The next region of at most `len` bytes (aligned), or false when everything was read.
  bool next(uint64_t len, std::string* path, uint64_t* off, uint64_t* got);

 private:
  std::vector<std::pair<std::string, uint64_t>> files_;
  size_t file_ = 0;
  uint64_t pos_ = 0;
};

// Copies source regions into `scratch` with `s` until `deadline` or `cap` bytes: reads and
// writes through one io_uring at the setting's depth, in-flight bytes bounded by `memory`;
// with `sync`, the write-back is timed too.
TuneProbe region_copy(RegionCursor& src, const TuneSetting& s, uint64_t memory, uint64_t cap,
                      const std::filesystem::path& scratch, bool sync,
                      std::chrono::steady_clock::time_point deadline);

// Disjoint random samples of the plan's files under kLargeFile, each copied by the engine
// itself (read → hash → write → commit) into its own directory of the scratch, then removed.
class SampleCopier {
 public:
  SampleCopier(const CopyOptions& opts, const Plan& plan, std::filesystem::path scratch);
  // nullopt when fewer than 50 samples are left.
  std::optional<TuneProbe> run(const TuneSetting& s, uint64_t want_bytes, uint64_t want_files);
  void limit(double seconds) { time_limit_s_ = seconds; }
  size_t pool_size() const { return pool_.size(); }

 private:
  const CopyOptions& opts_;
  const Plan& plan_;
  std::filesystem::path scratch_;
  std::vector<uint32_t> pool_;
  size_t next_ = 0;
  unsigned runs_ = 0;
  double time_limit_s_ = 0;
};

}  // namespace barge::pipeline::tune_detail
