// Progress reporting: one live line on a TTY (bytes, files, rate, ETA), a plain line every
// few seconds otherwise (batch logs), nothing with --quiet. Runs on its own thread and only
// reads LiveStats.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>

#include "pipeline/stats.hpp"

namespace barge::pipeline {

enum class ProgressMode { kAuto, kTty, kPlain, kNone };

class Progress {
 public:
  // kAuto picks kTty when stderr is a terminal, else kPlain.
  Progress(const LiveStats& stats, ProgressMode mode, std::string verb);
  ~Progress();
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;
  void stop();  // prints the final line (TTY mode clears the live line)

  // Formats "1.5 GiB" style sizes; exposed for tests and reports.
  static std::string human_bytes(double bytes);
  std::string line(double elapsed_s) const;

 private:
  void loop();

  const LiveStats& stats_;
  ProgressMode mode_;
  std::string verb_;
  std::chrono::steady_clock::time_point start_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace barge::pipeline
