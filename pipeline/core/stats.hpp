// Counters shared by a run's stages, and the result a command hands back to the CLI.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "io/metadata.hpp"

namespace barge::pipeline {

// Seconds of the steady clock since t0.
inline double since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Exit codes, stable for users' scripts.
inline constexpr int kExitOk = 0;
inline constexpr int kExitPartial = 1;     // some entries failed, each named on stderr
inline constexpr int kExitFatal = 2;       // usage or fatal error
inline constexpr int kExitResumable = 75;  // stopped by SIGTERM/SIGUSR1/SIGINT: rerun with --resume

// The one exit-code rule: a stop by a signal (resumable) before a fatal error before
// per-entry failures. Across ranks the highest code wins (agreed_exit_code).
constexpr int exit_code_for(bool resumable, bool fatal, bool entry_errors) {
  return resumable ? kExitResumable : fatal ? kExitFatal : entry_errors ? kExitPartial : kExitOk;
}

// Set (to the signal number) by the CLI's handler for SIGTERM, SIGUSR1 and SIGINT; a run
// that sees it stops taking new work, finishes what is in flight, flushes its journal and
// returns kExitResumable.
std::atomic<int>& stop_signal();

enum Stage {
  kStageRead,
  kStageHash,
  kStageWrite,
  kStageVerify,
  kStageCommit,
  kStageCompress,
  kStagePackAppend,
  kStagePackFetch,
  kStageDecompress,
  kStageNetSend,
  kStageNetReceive,
  kStageCount
};
const char* stage_name(int stage);

// Live counters, updated by stages with relaxed atomics and sampled by progress.
struct LiveStats {
  std::atomic<uint64_t> bytes_done{0};       // progress: chunks through the pipeline
  std::atomic<uint64_t> bytes_committed{0};  // report: bytes of files in place under their names
  std::atomic<uint64_t> files_done{0};
  std::atomic<uint64_t> bytes_total{0};
  std::atomic<uint64_t> files_total{0};
  std::atomic<uint64_t> stage_busy_ns[kStageCount] = {};
  std::atomic<uint64_t> bytes_verified{0};
  std::atomic<uint64_t> bytes_cloned{0};  // copy --reflink: shared with the source's extents
  // Counts the work `done` did as done here, and in the totals (sync: the walk's copies).
  void add_done(const LiveStats& done);
};

// Errors named per entry; thread-safe.
class ErrorList {
 public:
  void add(std::string message);
  std::vector<std::string> take();
  size_t count() const;

 private:
  mutable std::mutex mu_;
  std::vector<std::string> items_;
};

// One rank's share of a multi-rank run (report "ranks" array).
struct RankStats {
  int rank = 0;
  std::string host;
  uint64_t bytes = 0;       // bytes this rank moved (chunks and small files it wrote)
  uint64_t files = 0;       // files this rank put in place
  double busy_seconds = 0;  // time in the transfer phase until its last unit was done
  double walk_seconds = 0;
  uint64_t peak_rss_bytes = 0;
  // Summed into the run's totals (reduce_rank_stats, pipeline/core/rank_stats.hpp).
  uint64_t bytes_committed = 0;  // bytes of the files this rank put in place
  uint64_t bytes_verified = 0;
  uint64_t bytes_cloned = 0;
  uint64_t bytes_stored = 0;  // backup: bytes of the packs this rank wrote
  uint64_t dirs = 0, symlinks = 0, others = 0;
  uint64_t stage_busy_ns[kStageCount] = {};
};

// --tune: what the probe tried on the actual source and destination, and what it chose.
// A tuned setting replaces the one before only when measured this much faster (noise on
// these machines is several percent between windows).
inline constexpr double kTuneGain = 1.10;
struct TuneSetting {
  uint64_t chunk_bytes = 0;
  unsigned queue_depth = 0;
  unsigned threads = 0;
  bool direct = false;         // O_DIRECT reads and writes
  int compression_level = -1;  // send, backup: zstd level (0: raw; -1: not tuned)
};
struct TuneProbe {
  std::string change;  // "defaults", "direct on", "chunk 1 MiB", ...
  TuneSetting setting;
  uint64_t bytes = 0;
  uint64_t files = 0;
  double seconds = 0;
  double rate() const { return seconds > 0 ? static_cast<double>(bytes) / seconds : 0; }
};
struct TuneReport {
  std::string method;  // "region copy", "sample copy", "none"
  std::string note;    // why nothing was probed, or how the choice was made
  TuneSetting chosen;
  std::vector<TuneProbe> probes;
  double seconds = 0;  // the whole probe, included in the run's seconds
};

struct RunResult {
  int exit_code = kExitOk;
  bool started = false;             // false: refused before touching anything (usage error)
  std::string fatal;                // set when the run stopped early or never started
  std::vector<std::string> errors;  // per-entry failures
  // Entries given up because the run stopped (a full disk fails every file in flight the
  // same way): listed in the report, only counted on stderr, where the cause is said once.
  std::vector<std::string> stopped_entries;
  uint64_t files_not_copied = 0;  // after a stop: files of the plan not in place
  uint64_t bytes = 0;
  uint64_t files = 0;
  uint64_t dirs = 0;
  uint64_t symlinks = 0;
  uint64_t others = 0;
  uint64_t bytes_verified = 0;
  uint64_t bytes_cloned = 0;  // of bytes_transferred: cloned (FICLONERANGE), not written
  uint64_t bytes_transferred =
      0;  // bytes read and written by this run (less than bytes on --resume)
  double seconds = 0;
  double walk_seconds = 0;
  uint64_t stage_busy_ns[kStageCount] = {};
  std::string io_backend;
  bool buffers_registered = false;
  uint64_t peak_rss_bytes = 0;
  uint64_t skipped_files = 0;  // --resume: already in place, not copied again
  uint64_t bytes_skipped = 0;  // send/recv --resume: bytes the receiver held already
  uint64_t bytes_resent = 0;   // send: bytes sent more than once (retries after a lost link)
  bool resumable = false;      // stopped by a signal; --resume finishes the job
  // send --sync: entries removed from DST (--delete, or in the way of another type) and
  // regular files DST already held; in the report as "sync" only when set.
  struct SyncCounts {
    uint64_t deleted = 0;
    uint64_t unchanged_files = 0;
  };
  std::optional<SyncCounts> sync;
  std::optional<TuneReport> tune;     // --tune
  std::vector<RankStats> ranks;       // multi-rank runs only
  std::vector<RankStats> send_ranks;  // send under mpirun/srun: each sending rank's share
  double balance = 1.0;               // min / max busy seconds over ranks (1 = perfectly even)
  // Counts one entry of this type among dirs, symlinks or others (regular files: none).
  void count_kind(io::FileType type) {
    if (type == io::FileType::kDirectory)
      ++dirs;
    else if (type == io::FileType::kSymlink)
      ++symlinks;
    else if (type != io::FileType::kRegular)
      ++others;
  }
};

nlohmann::json to_json(const RunResult& r, const std::string& command);
nlohmann::json tune_json(const TuneReport& t);
uint64_t peak_rss_bytes();
double process_cpu_seconds();  // user + system of this process, so far

}  // namespace barge::pipeline
