#include "pipeline/progress.hpp"

#include <unistd.h>

#include <cstdio>

namespace barge::pipeline {

Progress::Progress(const LiveStats& stats, ProgressMode mode, std::string verb)
    : stats_(stats), mode_(mode), verb_(std::move(verb)), start_(std::chrono::steady_clock::now()) {
  if (mode_ == ProgressMode::kAuto)
    mode_ = ::isatty(STDERR_FILENO) ? ProgressMode::kTty : ProgressMode::kPlain;
  if (mode_ != ProgressMode::kNone) thread_ = std::thread([this] { loop(); });
}

Progress::~Progress() { stop(); }

void Progress::stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
  if (mode_ == ProgressMode::kTty) std::fputs("\r\033[K", stderr);
}

std::string Progress::human_bytes(double bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (bytes >= 1024 && u < 5) {
    bytes /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", bytes, kUnits[u]);
  return buf;
}

std::string Progress::line(double elapsed_s) const {
  double done = static_cast<double>(stats_.bytes_done.load(std::memory_order_relaxed));
  double total = static_cast<double>(stats_.bytes_total.load(std::memory_order_relaxed));
  uint64_t files = stats_.files_done.load(std::memory_order_relaxed);
  uint64_t files_total = stats_.files_total.load(std::memory_order_relaxed);
  double rate = elapsed_s > 0 ? done / elapsed_s : 0;
  char eta[32] = "--";
  if (rate > 0 && total >= done) {
    double left = (total - done) / rate;
    std::snprintf(eta, sizeof eta, "%d:%02d", static_cast<int>(left) / 60,
                  static_cast<int>(left) % 60);
  }
  char buf[256];
  std::snprintf(buf, sizeof buf, "%s %s / %s, %llu / %llu files, %s/s, ETA %s", verb_.c_str(),
                human_bytes(done).c_str(), human_bytes(total).c_str(),
                static_cast<unsigned long long>(files),
                static_cast<unsigned long long>(files_total), human_bytes(rate).c_str(), eta);
  return buf;
}

void Progress::loop() {
  auto period =
      mode_ == ProgressMode::kTty ? std::chrono::milliseconds(500) : std::chrono::seconds(5);
  std::unique_lock lock(mu_);
  while (!cv_.wait_for(lock, period, [&] { return stopping_; })) {
    double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    std::string l = line(elapsed);
    if (mode_ == ProgressMode::kTty) {
      std::fprintf(stderr, "\r\033[K%s", l.c_str());
    } else {
      std::fprintf(stderr, "barge: %s\n", l.c_str());
    }
    std::fflush(stderr);
  }
}

}  // namespace barge::pipeline
