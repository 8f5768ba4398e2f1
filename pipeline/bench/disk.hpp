// barge bench disk: an fio/IOR-class storage instrument on barge's io_uring engine.
//
// Every rank runs `threads` workers, each with its own ring at `queue_depth` and a region of
// the rank's file (--file-per-rank) or of the rank's part of one shared file (--shared-file).
// Latencies are recorded in LatencyHistograms and merged exactly across threads and ranks;
// rank 0 prints and reports. Setup failures (bad arguments, missing path, a full file
// system) are one line and exit code 2; files the run created are removed unless --keep.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "io/result.hpp"
#include "pipeline/bench/histogram.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline::bench {

enum class RwMode { kRead, kWrite, kRandRead, kRandWrite, kReadWrite, kRandRw };
std::optional<RwMode> parse_rw_mode(std::string_view name);
const char* rw_mode_name(RwMode mode);
bool is_random(RwMode mode);
bool reads_any(RwMode mode);
bool writes_any(RwMode mode);

struct DiskBenchOptions {
  std::string path;  // an existing directory: barge-bench.<rank> or barge-bench.shared inside
  RwMode rw = RwMode::kRead;
  unsigned mix_read_percent = 50;  // readwrite/randrw: share of reads (fio's rwmixread)
  uint64_t block_bytes = 1 << 20;  // --bs
  unsigned queue_depth = 32;
  uint64_t size_bytes = 0;  // per rank (IOR's block size per task)
  double runtime_s = 0;     // > 0: run this long, wrapping around the file (fio's time_based)
  double ramp_s = 0;        // operations in the first ramp_s seconds are not counted
  bool direct = false;
  unsigned threads = 1;
  bool shared_file = false;
  bool fsync_end = false;  // fsync every file at the end, inside the timed run
  bool sqpoll = false;
  bool keep = false;        // leave the files in place (a later run reuses them)
  bool preallocate = true;  // write tests: fallocate the region first (fio's fallocate=native)
  double stonewall_s = 0;   // > 0: stop issuing after S s, then wear out to the fastest's count
  double interval_s = 1;    // the timeline's step
  bool print_intervals = false;  // --interval given: print each interval live
  // Saturation search.
  bool find_knee = false;
  unsigned knee_max_depth = 256;
  double knee_gain_percent = 5;     // the knee: the first depth that adds less than this
  uint64_t latency_target_ns = 0;   // ... or whose p99 exceeds this (0: no target)
  double steady_state_percent = 0;  // > 0: stop once the interval bandwidth varies this little
  double steady_window_s = 10;      // ... over this window
  bool quiet = false;
};

// Checks what can be checked without touching the file system; the message names the flag.
io::Status validate(const DiskBenchOptions& o);

// One interval of the timeline (or the whole run): merged over threads and ranks.
struct Figures {
  uint64_t bytes = 0;
  uint64_t ops = 0;
  double seconds = 0;
  LatencyHistogram latency;
  double bandwidth() const { return seconds > 0 ? static_cast<double>(bytes) / seconds : 0; }
  double iops() const { return seconds > 0 ? static_cast<double>(ops) / seconds : 0; }
};

struct RankFigures {
  int rank = 0;
  std::string host;
  Figures whole;
};

struct DiskRun {
  unsigned queue_depth = 0;
  Figures whole;                       // every counted operation, ramp excluded
  std::optional<Figures> stonewalled;  // what was done by the stonewall
  std::vector<Figures> intervals;      // per interval, not cumulative
  std::vector<RankFigures> ranks;
  std::map<std::string, uint64_t> errors;  // by kind ("EIO", "short read", ...)
  double cpu_seconds = 0;                  // user + system, every rank
  bool buffers_registered = false;
  bool stopped_steady = false;
};

struct DiskBenchResult {
  DiskBenchOptions options;
  int rank_count = 1;
  std::vector<DiskRun> runs;   // one, or one per queue depth with --find-knee
  std::optional<size_t> knee;  // index into runs
  std::string knee_reason;
  int exit_code = 0;
};

// Collective: every rank calls it with the same options. Only rank 0's result is complete.
DiskBenchResult run_disk_bench(const DiskBenchOptions& o, transport::Comm& comm);

nlohmann::json to_json(const DiskBenchResult& r);
std::string human_summary(const DiskBenchResult& r);
// One line per interval, as printed live with --interval.
std::string interval_line(size_t index, double interval_s, const Figures& f);

}  // namespace barge::pipeline::bench
