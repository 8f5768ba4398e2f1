#include "pipeline/engine/level_tuner.hpp"

#include <fcntl.h>
#include <tbb/parallel_for.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <random>
#include <set>

#include "io/unique_fd.hpp"
#include "pipeline/core/compress.hpp"

namespace barge::pipeline {
namespace {

using Clock = std::chrono::steady_clock;

// The host's cores: busy and total jiffies since boot (/proc/stat's first line).
std::pair<uint64_t, uint64_t> cpu_jiffies() {
  std::ifstream in("/proc/stat");
  std::string cpu;
  uint64_t v[8] = {};
  in >> cpu;
  for (auto& x : v) in >> x;
  uint64_t total = 0;
  for (auto x : v) total += x;
  return {total - v[3] - v[4], total};  // less idle and iowait
}

double thread_cpu_seconds() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

}  // namespace

std::vector<std::string> read_samples(const Plan& plan, const std::vector<uint8_t>* include,
                                      uint64_t piece, uint64_t total) {
  std::vector<uint32_t> files;
  for (uint32_t f : plan.files)
    if ((!include || (*include)[f]) && plan.entries[f].meta.size_bytes > 0) files.push_back(f);
  std::mt19937_64 rng(7);
  std::shuffle(files.begin(), files.end(), rng);
  std::vector<std::string> out;
  uint64_t got = 0;
  for (size_t i = 0; i < files.size() && got < total && out.size() < 1024; ++i) {
    const Entry& e = plan.entries[files[i]];
    const uint64_t size = e.meta.size_bytes;
    const uint64_t len = std::min({size, piece, total - got});
    const uint64_t off = size > len ? rng() % (size - len) / 4096 * 4096 : 0;
    io::UniqueFd fd(::open(plan.src_path(e).c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) continue;
    std::string buf(len, '\0');
    ssize_t n = ::pread(fd.get(), buf.data(), len, static_cast<off_t>(off));
    if (n <= 0) continue;
    buf.resize(static_cast<size_t>(n));
    got += buf.size();
    out.push_back(std::move(buf));
  }
  return out;
}

std::vector<LevelSample> sample_levels(const std::vector<std::string>& samples,
                                       const std::vector<int>& levels, Clock::time_point deadline) {
  std::vector<LevelSample> out;
  uint64_t raw = 0;
  for (const auto& s : samples) raw += s.size();
  if (raw == 0) return out;
  for (int level : levels) {
    if (level == 0) {
      out.push_back({0, 1.0, 0.0, raw});
      continue;
    }
    if (Clock::now() >= deadline) break;
    std::vector<uint64_t> stored(samples.size());
    std::vector<double> seconds(samples.size());
    tbb::parallel_for(size_t{0}, samples.size(), [&](size_t i) {
      const auto& s = samples[i];
      std::vector<std::byte> buf(compress_bound(s.size()));
      // The thread's CPU time, not the wall clock: the job runs beside the samples.
      const double t = thread_cpu_seconds();
      auto n = CompressStage::compress(std::as_bytes(std::span(s.data(), s.size())), buf, level);
      seconds[i] = thread_cpu_seconds() - t;
      stored[i] = n ? std::min<uint64_t>(*n, s.size()) : s.size();
    });
    uint64_t st = 0;
    double sec = 0;
    for (size_t i = 0; i < samples.size(); ++i) {
      st += stored[i];
      sec += seconds[i];
    }
    out.push_back({level, static_cast<double>(raw) / static_cast<double>(std::max<uint64_t>(st, 1)),
                   sec / static_cast<double>(raw), raw});
  }
  return out;
}

std::unique_ptr<LevelTuner> make_level_tuner(const LevelTuneSpec& spec, TuneReport& report) {
  std::vector<int> candidates = spec.candidates;
  if (std::find(candidates.begin(), candidates.end(), spec.start_level) == candidates.end())
    candidates.push_back(spec.start_level);
  std::sort(candidates.begin(), candidates.end());
  report.chosen = TuneSetting{spec.chunk_bytes, spec.queue_depth, spec.threads, false, -1};
  report.note = spec.untuned;
  const Plan* plan = &spec.plan;
  const std::vector<uint8_t>* include = spec.include;
  const uint64_t piece = std::min<uint64_t>(spec.chunk_bytes, 1u << 20);
  const double seconds = spec.seconds;
  // Sampled on the tuner's thread while the job fills its pipeline (the job does not wait).
  auto sampler = [=] {
    const auto t = Clock::now();
    return sample_levels(read_samples(*plan, include, piece, 2u << 20), candidates,
                         t + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(seconds / 4)));
  };
  return std::make_unique<LevelTuner>(
      LevelTunerOptions{.start_level = spec.start_level,
                        .seconds = spec.seconds,
                        .window = std::clamp(spec.seconds / 8, 0.5, 5.0),
                        .stats = spec.stats,
                        .output_stage = spec.output_stage,
                        .threads = spec.threads,
                        .delivered = spec.delivered,
                        .fill = spec.fill,
                        .sampler = sampler},
      std::vector<LevelSample>{}, report);
}

LevelTuner::LevelTuner(LevelTunerOptions o, std::vector<LevelSample> samples, TuneReport& report)
    : opts_(o), samples_(std::move(samples)), report_(report), level_(o.start_level) {
  report_.method = "live (the job's own first seconds, level by level)";
  report_.chosen.compression_level = o.start_level;
}

void LevelTuner::count(int level, uint64_t raw, uint64_t stored) {
  const int i = std::clamp(level + 1, 0, kLevels - 1);
  raw_[i].fetch_add(raw, std::memory_order_relaxed);
  units_[i].fetch_add(1, std::memory_order_relaxed);
  stored_[i].fetch_add(stored, std::memory_order_relaxed);
}

void LevelTuner::start() {
  t0_ = Clock::now();
  thread_ = std::thread([this] { loop(); });
}

void LevelTuner::finish() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

bool LevelTuner::wait_for(double seconds) {
  std::unique_lock lock(mu_);
  return !cv_.wait_for(lock, std::chrono::duration<double>(seconds), [this] { return stop_; });
}

Clock::duration LevelTuner::window_duration() const {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(opts_.window));
}

uint64_t LevelTuner::output_busy_ns() const {
  return opts_.stats ? opts_.stats->stage_busy_ns[opts_.output_stage].load() : 0;
}

const LevelSample* LevelTuner::sample(int level) const {
  for (const auto& s : samples_)
    if (s.level == level) return &s;
  return nullptr;
}

double LevelTuner::predict(const Window& w, const LevelSample& from, const LevelSample& to) {
  if (w.raw == 0 || w.seconds <= 0) return 0;
  const double k0 = w.cpu_seconds / static_cast<double>(w.raw);  // CPU per byte, all stages
  const double k = std::max(0.0, k0 - from.cpu_per_byte) + to.cpu_per_byte;
  const double cpu_scale = k > 0 ? k0 / k : 10.0;
  if (w.output_bound()) {
    // Fewer bytes out is faster, as far as the cores go: compressing at `to` may take what
    // compressing at `from` takes now plus the idle cores, or half a core when they look
    // busy (spinning threads and other processes count there; the level's window checks it).
    const double cores = std::max(0.5, (1 - std::clamp(w.busy, 0.0, 1.0)) * std::max(1u, w.cores));
    const double cap = to.cpu_per_byte > 0
                           ? (w.rate() * from.cpu_per_byte + cores) / to.cpu_per_byte
                           : w.rate() * cpu_scale / std::max(w.busy, 0.05);
    return std::min(cap, w.rate() * to.ratio / from.ratio);
  }
  if (w.cpu_bound()) return w.rate() * cpu_scale;
  return w.rate();  // the reading is the bound: no level changes it
}

// The level's first units must have left the pipeline (the ones before them were made at the
// previous level), then it is timed over a window.
bool LevelTuner::measure(int level, Window& w) {
  const int i = std::clamp(level + 1, 0, kLevels - 1);
  const uint64_t before = raw_[i].load();
  const auto give_up = Clock::now() + std::chrono::seconds(30);
  while (raw_[i].load() == before) {
    if (Clock::now() > give_up || !wait_for(0.02)) return false;
  }
  if (!wait_for(opts_.window / 4)) return false;
  const uint64_t r0 = raw_[i].load(), s0 = stored_[i].load();
  const double c0 = process_cpu_seconds();
  const auto j0 = cpu_jiffies();
  const uint64_t b0 = output_busy_ns();
  const uint64_t d0 = opts_.delivered ? opts_.delivered() : 0;
  const double f0 = opts_.fill ? opts_.fill() : 0;
  const uint64_t u0 = units_[i].load();
  const auto t = Clock::now();
  if (!wait_for(opts_.window)) return false;
  // A window holds at least kMinUnits of the level's units (a few units of a slow link are
  // too coarse a measure), up to four windows.
  while (units_[i].load() < u0 + kMinUnits && Clock::now() < t + 4 * window_duration())
    if (!wait_for(opts_.window / 10)) return false;
  w.seconds = std::chrono::duration<double>(Clock::now() - t).count();
  w.raw = raw_[i].load() - r0;
  w.stored = stored_[i].load() - s0;
  w.cpu_seconds = process_cpu_seconds() - c0;
  w.cores = std::thread::hardware_concurrency();
  w.threads = opts_.threads;
  if (opts_.fill) w.fill = (f0 + opts_.fill()) / 2;
  if (opts_.delivered) {
    w.metered = true;
    w.delivered = opts_.delivered() - d0;
  }
  w.out_busy = std::min(1.0, static_cast<double>(output_busy_ns() - b0) / 1e9 / w.seconds /
                                 std::max(1u, opts_.threads));
  const auto j1 = cpu_jiffies();
  w.busy = j1.second > j0.second ? static_cast<double>(j1.first - j0.first) /
                                       static_cast<double>(j1.second - j0.second)
                                 : 0;
  return w.raw > 0;
}

void LevelTuner::add_probe(const std::string& change, int level, const Window& w) {
  TuneProbe p;
  p.change = change;
  p.setting = report_.chosen;
  p.setting.compression_level = level;
  p.seconds = w.seconds;
  p.bytes = static_cast<uint64_t>(w.rate() * w.seconds);  // what the job sustains
  std::lock_guard lock(mu_);
  report_.probes.push_back(p);
}

// The steps after the start was timed: the level the model rates best is tried, and kept
// or undone, until --tune-seconds; returns why they ended.
std::string LevelTuner::steps(int& best, Window& bw) {
  const auto end = t0_ + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(opts_.seconds));
  std::set<int> tried{best};
  while (Clock::now() < end) {
    const LevelSample* from = sample(best);
    const LevelSample* pick = nullptr;
    double pred = 0;
    for (const auto& s : samples_)
      if (from && !tried.count(s.level) && predict(bw, *from, s) > pred) {
        pred = predict(bw, *from, s);
        pick = &s;
      }
    if (!pick || pred < bw.rate() * kTuneGain) return "no other level predicted 10% faster";
    tried.insert(pick->level);
    level_.store(pick->level);
    Window cw;
    if (!measure(pick->level, cw)) {
      level_.store(best);
      return "the job ended while level " + std::to_string(pick->level) + " was timed";
    }
    add_probe("level " + std::to_string(pick->level), pick->level, cw);
    // Kept when measured 10% faster; or when the output stayed the bound at the new level
    // and the samples (the same bytes at every level, unlike two windows of different
    // files) shrink 10% more: the link then carries as many bytes, each worth more.
    const bool ratio_win = bw.output_bound() && cw.output_bound() &&
                           pick->ratio > from->ratio * kTuneGain &&
                           cw.rate() > bw.rate() / kTuneGain;
    if (cw.rate() > bw.rate() * kTuneGain || ratio_win) {
      best = pick->level;
      bw = cw;
    } else {
      level_.store(best);
    }
  }
  return "--tune-seconds ended the steps";
}

// What the chosen level's window saw, for the report's note.
std::string LevelTuner::window_text(const Window& w) {
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "; at the chosen level the cores were %.0f%% busy, the output stage %.0f%%, "
                "its buffers %.0f%% full, %.1f MB/s handed to it%s",
                w.busy * 100, w.out_busy * 100, w.fill * 100,
                static_cast<double>(w.stored) / w.seconds / 1e6,
                w.metered ? "" : " (all delivered)");
  std::string text = buf;
  if (w.metered) {
    std::snprintf(buf, sizeof buf, " and %.1f MB/s delivered",
                  static_cast<double>(w.delivered) / w.seconds / 1e6);
    text += buf;
  }
  return text;
}

void LevelTuner::loop() {
  int best = opts_.start_level;
  Window bw;
  std::string note;
  // The samples are taken while the job fills its pipeline, in the first window.
  double warm_up = opts_.window;
  if (opts_.sampler) {
    const auto t = Clock::now();
    samples_ = opts_.sampler();
    warm_up = std::max(0.0, warm_up - std::chrono::duration<double>(Clock::now() - t).count());
    char buf[128];
    std::snprintf(buf, sizeof buf, "sampled %llu KiB of the source at each level in %.2f s; ",
                  static_cast<unsigned long long>(samples_.empty() ? 0 : samples_[0].bytes >> 10),
                  std::chrono::duration<double>(Clock::now() - t).count());
    note = buf;
  }
  // The pipeline fills first; then the starting level is timed.
  if (!wait_for(warm_up) || !measure(best, bw)) {
    note += "the job ended before a window could be timed: level " + std::to_string(best) + " kept";
  } else {
    add_probe("level " + std::to_string(best) + " (start)", best, bw);
    note += steps(best, bw);
    note += window_text(bw);
  }
  std::lock_guard lock(mu_);
  report_.seconds = std::chrono::duration<double>(Clock::now() - t0_).count();
  report_.chosen.compression_level = best;
  for (const auto& s : samples_) {
    if (s.level == 0) continue;
    char buf[96];
    std::snprintf(buf, sizeof buf, "; sample level %d: ratio %.2f, %.0f MB/s per core", s.level,
                  s.ratio, s.cpu_per_byte > 0 ? 1e-6 / s.cpu_per_byte : 0.0);
    note += buf;
  }
  report_.note = report_.note.empty() ? note : report_.note + "; " + note;
}

}  // namespace barge::pipeline
