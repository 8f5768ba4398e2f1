#include "pipeline/core/progress.hpp"

#include <exception>

#include <unistd.h>

#include <cstdio>

namespace barge::pipeline {

Progress::Progress(const LiveStats& stats, ProgressMode mode, std::string verb, double interval_s)
    : Progress(stats, mode, std::move(verb), interval_s, Across{}) {}

Progress::Progress(const LiveStats& stats, ProgressMode mode, std::string verb, double interval_s,
                   Across across)
    : stats_(stats),
      mode_(mode),
      verb_(std::move(verb)),
      across_(std::move(across)),
      start_(std::chrono::steady_clock::now()) {
  if (mode_ == ProgressMode::kAuto)
    mode_ = ::isatty(STDERR_FILENO) ? ProgressMode::kTty : ProgressMode::kPlain;
  if (interval_s <= 0) interval_s = mode_ == ProgressMode::kTty ? 0.5 : 5.0;
  interval_ = std::chrono::milliseconds(static_cast<int64_t>(interval_s * 1000));
  if (mode_ != ProgressMode::kNone || across_.sum) thread_ = std::thread([this] { loop(); });
}

Progress::~Progress() {
  // Unwinding: the other ranks wait elsewhere, not in our rounds; waiting for them to stop
  // would hang this rank before main can end the job.
  if (std::uncaught_exceptions() > 0) abandon_ = true;
  stop();
}

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

Progress::Counters Progress::local() const {
  return {stats_.bytes_done.load(std::memory_order_relaxed),
          stats_.bytes_total.load(std::memory_order_relaxed),
          stats_.files_done.load(std::memory_order_relaxed),
          stats_.files_total.load(std::memory_order_relaxed)};
}

std::string Progress::line(double elapsed_s) const { return line(local(), elapsed_s); }

std::string Progress::line(const Counters& c, double elapsed_s) const {
  double done = static_cast<double>(c.bytes_done);
  double total = static_cast<double>(c.bytes_total);
  uint64_t files = c.files_done;
  uint64_t files_total = c.files_total;
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

bool Progress::sum_across(Counters& c, bool stopping) {
  RunState mine = across_.state ? across_.state() : RunState::kRunning;
  uint64_t v[7] = {c.bytes_done,
                   c.bytes_total,
                   c.files_done,
                   c.files_total,
                   stopping ? 1u : 0u,
                   mine == RunState::kSignalled ? 1u : 0u,
                   mine == RunState::kFailed ? 1u : 0u};
  across_.sum->start(v);
  while (!across_.sum->test(v)) {
    if (abandon_.load()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  c = {v[0], v[1], v[2], v[3]};
  if (mine == RunState::kRunning) check_peers(v[5], v[6]);
  return v[4] >= static_cast<uint64_t>(across_.ranks);
}

void Progress::check_peers(uint64_t signalled, uint64_t failed) {
  if (peer_stop_seen_ || (signalled == 0 && failed == 0) || !across_.on_peer_stop) return;
  peer_stop_seen_ = true;
  across_.on_peer_stop(failed > 0 ? RunState::kFailed : RunState::kSignalled);
}

void Progress::loop() {
  auto print_period = interval_;
  // Across ranks a round runs four times a second (it also carries the stop of any rank, so
  // that the others stop within a fraction of a second), and every rank keeps taking part
  // until all have stopped, so that all run the same number of rounds.
  auto tick = across_.sum ? std::min(print_period, std::chrono::milliseconds(250)) : print_period;
  auto last_print = start_;
  std::unique_lock lock(mu_);
  for (;;) {
    bool stopping = cv_.wait_for(lock, tick, [&] { return stopping_; });
    Counters c = local();
    if (across_.sum && abandon_.load()) break;
    if (across_.sum) {
      lock.unlock();
      bool all_stopped = sum_across(c, stopping);
      lock.lock();
      if (all_stopped) break;
    } else if (stopping) {
      break;
    }
    auto now = std::chrono::steady_clock::now();
    if (stopping || mode_ == ProgressMode::kNone || now - last_print < print_period - tick / 2)
      continue;
    last_print = now;
    std::string l = line(c, std::chrono::duration<double>(now - start_).count());
    if (mode_ == ProgressMode::kTty) {
      std::fprintf(stderr, "\r\033[K%s", l.c_str());
    } else {
      std::fprintf(stderr, "barge: %s\n", l.c_str());
    }
    std::fflush(stderr);
  }
}

}  // namespace barge::pipeline
