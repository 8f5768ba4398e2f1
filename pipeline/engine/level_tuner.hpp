// --tune for the commands that compress (send, backup): the zstd level is chosen on the job
// itself, while it runs, so nothing is read twice and the probe costs no separate pass.
//
//  1. While the job fills its pipeline, the tuner's thread compresses 2 MiB of samples of the
//     source at each candidate level (sample_levels): the ratio and the thread-CPU per byte.
//  2. It then times the job at its starting level over a window (raw bytes per second leaving
//     the pipeline, bytes written or sent and, for send, acknowledged by TCP, the process's
//     CPU per byte, how busy the host's cores, the output stage and the send buffers are).
//  3. A model says what each other level would give: when the cores are busy the job is CPU
//     bound and a level's rate scales with its CPU per byte; otherwise the output (the link,
//     the repository) is the bound and a level's rate scales with its ratio, up to what the
//     cores can compress. The level the model rates best (if 10% better) is set for the next
//     units, and timed over a window of its own once its first units have drained through.
//  4. It is kept if measured kTuneGain faster, or if the output stayed the bound and the
//     samples shrink kTuneGain more; otherwise the level before it comes back.
//     Steps repeat while --tune-seconds lasts. Every window is a probe in the report.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "pipeline/core/plan.hpp"
#include "pipeline/core/stats.hpp"

namespace barge::pipeline {

struct LevelSample {
  int level = 0;
  double ratio = 1;         // raw bytes / stored bytes
  double cpu_per_byte = 0;  // seconds of one core per raw byte
  uint64_t bytes = 0;       // sampled
};

// Up to `total` bytes of the plan's regular files (whole small files, `piece`-sized parts of
// large ones), picked at random; files that cannot be read are passed over. `include` as
// UnitCutter's (nullptr: every file).
std::vector<std::string> read_samples(const Plan& plan, const std::vector<uint8_t>* include,
                                      uint64_t piece, uint64_t total);

// Each level of `levels` (ascending; 0: raw) over `samples`, on the TBB pool; levels not
// reached by `deadline` are left out of the answer.
std::vector<LevelSample> sample_levels(const std::vector<std::string>& samples,
                                       const std::vector<int>& levels,
                                       std::chrono::steady_clock::time_point deadline);

struct LevelTunerOptions {
  int start_level = 1;
  double seconds = 5;  // no new step starts after this
  double window = 1;   // each level is timed over this
  // The job's output stage (the network, the packs), an I/O stage of the graph that runs on
  // up to `threads` units at once: busy all that time, it is the bound.
  const LiveStats* stats = nullptr;
  int output_stage = 0;
  unsigned threads = 1;
  // send: the bytes the link delivered so far (acknowledged), so that socket buffers filling
  // up are not taken for a fast link. Empty: what is written counts as delivered.
  std::function<uint64_t()> delivered;
  // send: how full the output's buffers are (0..1); half full or more, the output is the bound.
  std::function<double()> fill;
  // Takes the samples on the tuner's thread, before its first window (instead of `samples`).
  std::function<std::vector<LevelSample>()> sampler;
};

class LevelTuner;

// What send and backup do with --tune: samples of the plan's files at each of `candidates`
// (at most a quarter of --tune-seconds), then a tuner starting at `start_level`, reporting into
// `report` (its chosen setting: chunk, depth and threads as given; `untuned` says what is not
// tuned).
struct LevelTuneSpec {
  const Plan& plan;
  const std::vector<uint8_t>* include;
  uint64_t chunk_bytes;
  unsigned queue_depth, threads;
  double seconds;
  int start_level;
  std::vector<int> candidates;
  const char* untuned;
  const LiveStats* stats;  // the job's: its output stage's busy time says if it is the bound
  int output_stage;        // kStageNetSend, kStagePackAppend
  std::function<uint64_t()> delivered = {};  // as LevelTunerOptions'
  std::function<double()> fill = {};
};
std::unique_ptr<LevelTuner> make_level_tuner(const LevelTuneSpec& spec, TuneReport& report);

class LevelTuner {
  using Clock = std::chrono::steady_clock;

 public:
  LevelTuner(LevelTunerOptions o, std::vector<LevelSample> samples, TuneReport& report);
  ~LevelTuner() { finish(); }
  LevelTuner(const LevelTuner&) = delete;
  LevelTuner& operator=(const LevelTuner&) = delete;

  // The level the compress stage follows (CompressUnitStage::follow).
  const std::atomic<int>* level() const { return &level_; }
  // A unit left the pipeline: `raw` bytes of its items, `stored` of them written or sent.
  void count(int level, uint64_t raw, uint64_t stored);
  void start();
  // Stops the timing (the job ended) and completes the report.
  void finish();

  // The model (exposed for the tests): the rate `to` would give where `from` gave `rate`.
  struct Window {
    double seconds = 0;
    uint64_t raw = 0, stored = 0;
    double cpu_seconds = 0;  // this process's
    double busy = 0;         // the host's cores, 0..1
    unsigned cores = 1;      // ... of which it has this many
    unsigned threads = 1;    // the job's (--threads)
    double out_busy = 0;     // the output stage, 0..1 of its threads
    double fill = 0;         // the output's buffers, 0..1 (the mean of the window's ends)
    bool metered = false;    // `delivered` was measured
    uint64_t delivered = 0;  // output bytes the link delivered in the window
    // Raw bytes per second the job sustains: with a meter, no more than the link delivers
    // at this level's ratio (units written into socket buffers are not yet delivered).
    // When the link is the bound, what it delivers at this level's ratio (finer grained
    // than whole units handed to it).
    double rate() const {
      if (seconds <= 0) return 0;
      const double r = static_cast<double>(raw) / seconds;
      if (!metered || stored == 0) return r;
      const double linked = static_cast<double>(delivered) / seconds * static_cast<double>(raw) /
                            static_cast<double>(stored);
      return output_bound() ? linked : std::min(r, linked);
    }
    // The cores are the bound: the host's are busy, or the job's threads are.
    bool cpu_bound() const {
      return busy >= 0.85 || (seconds > 0 && cpu_seconds / seconds >=
                                                 0.85 * std::min(threads, std::max(1u, cores)));
    }
    // The output is the bound: its stage is busy, or it is handed more than it delivers.
    bool output_bound() const {
      return out_busy >= 0.7 || fill >= 0.5 ||
             (metered && static_cast<double>(stored) > 1.1 * static_cast<double>(delivered));
    }
  };
  static double predict(const Window& w, const LevelSample& from, const LevelSample& to);

 private:
  static constexpr int kLevels = 23;
  void loop();
  std::string steps(int& best, Window& bw);
  static std::string window_text(const Window& w);
  bool wait_for(double seconds);
  bool measure(int level, Window& w);
  const LevelSample* sample(int level) const;
  uint64_t output_busy_ns() const;
  void add_probe(const std::string& change, int level, const Window& w);

  LevelTunerOptions opts_;
  std::vector<LevelSample> samples_;
  TuneReport& report_;
  std::atomic<int> level_;
  static constexpr uint64_t kMinUnits = 8;
  Clock::duration window_duration() const;
  std::atomic<uint64_t> raw_[kLevels] = {}, stored_[kLevels] = {}, units_[kLevels] = {};
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace barge::pipeline
