// Progress reporting: one live line on a TTY (bytes, files, rate, ETA), a plain line every
// few seconds otherwise (batch logs), nothing with --quiet. Runs on its own thread and only
// reads LiveStats. In a multi-rank run every rank runs one, summing the counters of all
// ranks about once a second with a non-blocking reduction; rank 0 prints the sums.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "pipeline/core/stats.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline {

enum class ProgressMode { kAuto, kTty, kPlain, kNone };

class Progress {
 public:
  // A multi-rank run: every rank constructs its Progress at the same point with the run's
  // AsyncSum; stop() returns once every rank has called it (the rounds end together). How
  // each rank's run stands travels with the sums, so that one rank's failure or stop signal
  // stops every rank within a fraction of a second, not at the end of the phase.
  enum class RunState : uint8_t { kRunning, kSignalled, kFailed };
  struct Across {
    transport::AsyncSum* sum = nullptr;
    int ranks = 1;
    std::function<RunState()> state;  // this rank's, sampled each round
    // Called on the progress thread, once, when another rank has stopped and this one runs.
    std::function<void(RunState)> on_peer_stop;
  };

  // kAuto picks kTty when stderr is a terminal, else kPlain. interval_s: seconds between
  // lines (0: 0.5 on a terminal, 5 otherwise).
  Progress(const LiveStats& stats, ProgressMode mode, std::string verb, double interval_s = 0);
  Progress(const LiveStats& stats, ProgressMode mode, std::string verb, double interval_s,
           Across across);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void stop();  // prints the final line (TTY mode clears the live line)

  // Formats "1.5 GiB" style sizes; exposed for tests and reports.
  static std::string human_bytes(double bytes);
  struct Counters {
    uint64_t bytes_done = 0, bytes_total = 0, files_done = 0, files_total = 0;
  };
  std::string line(double elapsed_s) const;  // this process's counters
  std::string line(const Counters& c, double elapsed_s) const;

 private:
  void loop();
  Counters local() const;
  // One reduction round; returns the sums and whether every rank has stopped.
  bool sum_across(Counters& c, bool stopping);
  void check_peers(uint64_t signalled, uint64_t failed);

  const LiveStats& stats_;
  ProgressMode mode_;
  std::string verb_;
  Across across_;
  bool peer_stop_seen_ = false;
  std::chrono::milliseconds interval_;
  std::chrono::steady_clock::time_point start_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  // Set when the Progress is destroyed by an exception: the rounds across ranks are given
  // up at once (the other ranks may never come to the next one; main ends the job).
  std::atomic<bool> abandon_{false};
  std::thread thread_;
};

}  // namespace barge::pipeline
