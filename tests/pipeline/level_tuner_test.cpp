#include "pipeline/engine/level_tuner.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <thread>

namespace barge::pipeline {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

std::string random_bytes(size_t n, unsigned seed) {
  std::string s(n, '\0');
  std::mt19937 rng(seed);
  for (auto& c : s) c = static_cast<char>(rng());
  return s;
}

// Text with long-range repeats: a higher zstd level finds more of them.
std::string text_bytes(size_t n) {
  static const char* words[] = {"struct",   "int",      "return",    "const",    "static",
                                "void",     "#include", "namespace", "template", "typename",
                                "unsigned", "(",        ")",         ";"};
  std::mt19937 rng(3);
  std::string s;
  while (s.size() < n) {
    s += words[rng() % 14];
    s += rng() % 9 == 0 ? "\n" : " ";
    if (rng() % 50 == 0) s += std::to_string(rng());
  }
  s.resize(n);
  return s;
}

LevelTuner::Window window(double rate, double busy, double out_busy) {
  LevelTuner::Window w;
  w.seconds = 1;
  w.raw = static_cast<uint64_t>(rate);
  w.cpu_seconds = 0.8;  // 8 ns of CPU per byte at 100 MB/s
  w.busy = busy;
  w.cores = 2;
  w.threads = 4;
  w.out_busy = out_busy;
  return w;
}

TEST(LevelTuner, ModelFollowsTheBound) {
  const LevelSample l1{1, 3.0, 2e-9, 1}, l6{6, 4.5, 8e-9, 1}, raw{0, 1.0, 0, 1};
  // The link is the bound: fewer bytes on it is faster, in proportion to the ratio.
  auto out = window(100e6, 0.3, 0.95);
  EXPECT_NEAR(LevelTuner::predict(out, l1, l6) / out.rate(), 1.5, 0.01);
  EXPECT_LT(LevelTuner::predict(out, l1, raw), out.rate());
  // The cores are the bound: cheaper compression is faster.
  auto cpu = window(100e6, 0.97, 0.2);
  EXPECT_GT(LevelTuner::predict(cpu, l1, raw), cpu.rate() * 1.1);
  EXPECT_LT(LevelTuner::predict(cpu, l1, l6), cpu.rate());
  // The job's one thread is busy (the host's other core idle): CPU-bound as well.
  auto one = window(100e6, 0.5, 0.2);
  one.threads = 1;
  one.cpu_seconds = 0.95;
  EXPECT_GT(LevelTuner::predict(one, l1, raw), one.rate() * 1.1);
  // Neither (the reading is): no level changes the rate.
  auto read = window(100e6, 0.3, 0.2);
  EXPECT_DOUBLE_EQ(LevelTuner::predict(read, l1, l6), read.rate());
  EXPECT_DOUBLE_EQ(LevelTuner::predict(read, l1, raw), read.rate());
  // Output-bound, but the cores could not compress at level 6 fast enough: capped by what
  // level 1 takes now (0.2 s a second) and at least half a core (2 x 5% idle is less):
  // 0.7 / 8 ns = 87.5 MB/s.
  auto busy_out = window(100e6, 0.95, 0.95);
  EXPECT_NEAR(LevelTuner::predict(busy_out, l1, l6), 87.5e6, 1e3);
  const LevelSample l19{19, 4.6, 1e-7, 1};  // 10 MB/s per core: (0.2 + 0.5) / 100 ns = 7 MB/s
  EXPECT_NEAR(LevelTuner::predict(busy_out, l1, l19), 7e6, 1e3);
  // With idle cores (0.2 + 2 x 0.7 = 1.6 core-seconds a second) level 6 could reach 200 MB/s:
  // the ratio (1.5x) is the bound.
  EXPECT_NEAR(LevelTuner::predict(out, l1, l6), 150e6, 1e3);
}

TEST(LevelTuner, AMeteredWindowCountsWhatTheLinkDelivered) {
  LevelTuner::Window w;
  w.seconds = 1;
  w.raw = 100'000'000;  // written into the socket buffers at 4:1 ...
  w.stored = 25'000'000;
  w.metered = true;
  w.delivered = 5'000'000;  // ... of which the link delivered 5 MB
  EXPECT_DOUBLE_EQ(w.rate(), 20e6);
  EXPECT_TRUE(w.output_bound());
  w.delivered = 25'000'000;  // everything delivered: the written rate stands
  EXPECT_DOUBLE_EQ(w.rate(), 100e6);
  EXPECT_FALSE(w.output_bound());
  w.metered = false;
  w.delivered = 0;
  EXPECT_DOUBLE_EQ(w.rate(), 100e6);
}

// A job whose output carries `wire_rate` bytes per second at most: its raw rate is that times
// the ratio of the level its units were made with, as on a slow link.
struct FakeJob {
  LevelTuner& tuner;
  LiveStats& stats;
  std::map<int, double> ratio;
  double wire_rate;
  bool output_bound;
  std::atomic<bool> stop{false};
  void run(unsigned threads) {
    while (!stop.load()) {
      const int level = tuner.level()->load();
      const double dt = 0.005;
      std::this_thread::sleep_for(std::chrono::duration<double>(dt));
      const double raw = (output_bound ? wire_rate * ratio[level] : wire_rate) * dt;
      tuner.count(level, static_cast<uint64_t>(raw), static_cast<uint64_t>(raw / ratio[level]));
      if (output_bound)
        stats.stage_busy_ns[kStageNetSend].fetch_add(static_cast<uint64_t>(threads * dt * 1e9));
    }
  }
};

TuneReport run_fake(bool output_bound, int start, std::vector<LevelSample> samples) {
  TuneReport report;
  LiveStats stats;
  constexpr unsigned kThreads = 4;
  LevelTuner tuner({.start_level = start,
                    .seconds = 1.5,
                    .window = 0.2,
                    .stats = &stats,
                    .output_stage = kStageNetSend,
                    .threads = kThreads,
                    .delivered = {},
                    .fill = {},
                    .sampler = {}},
                   samples, report);
  FakeJob job{tuner, stats, {}, 50e6, output_bound};
  for (const auto& s : samples) job.ratio[s.level] = s.ratio;
  tuner.start();
  std::thread t([&] { job.run(kThreads); });
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));
  tuner.finish();
  job.stop = true;
  t.join();
  return report;
}

TEST(LevelTuner, OnASlowLinkTakesTheLevelThatShrinksMost) {
  // Compression costs nothing here (the fake job's CPU is its own sleeping thread).
  auto report = run_fake(
      true, 1, {{0, 1.0, 0, 1}, {1, 2.0, 1e-12, 1}, {3, 2.1, 1e-12, 1}, {6, 3.0, 1e-12, 1}});
  EXPECT_EQ(report.chosen.compression_level, 6) << report.note;
  ASSERT_GE(report.probes.size(), 2u);
  EXPECT_EQ(report.probes[0].change, "level 1 (start)");
  EXPECT_EQ(report.probes[1].setting.compression_level, 6);
  EXPECT_GT(report.probes[1].rate(), report.probes[0].rate() * 1.3);
  EXPECT_NE(report.note.find("sample level 6: ratio 3.00"), std::string::npos) << report.note;
}

TEST(LevelTuner, KeepsTheStartWhenNoLevelCanHelp) {
  // Not output-bound: the rate does not depend on the level. On an idle machine no level is
  // even tried; on a busy one (the model then expects a cheaper level to win) the one tried
  // is not faster, and the start comes back.
  auto report = run_fake(false, 3, {{1, 2.0, 1e-9, 1}, {3, 2.1, 2e-9, 1}, {6, 3.0, 5e-9, 1}});
  EXPECT_EQ(report.chosen.compression_level, 3) << report.note;
  ASSERT_GE(report.probes.size(), 1u) << report.note;
  EXPECT_EQ(report.probes[0].change, "level 3 (start)");
  for (size_t i = 1; i < report.probes.size(); ++i)
    EXPECT_LT(report.probes[i].setting.compression_level, 3) << report.note;
}

TEST(LevelTuner, AJobThatEndsAtOnceKeepsItsLevel) {
  TuneReport report;
  LevelTunerOptions o;
  o.start_level = 2;
  LevelTuner tuner(o, {}, report);
  tuner.start();
  tuner.finish();
  EXPECT_EQ(report.chosen.compression_level, 2);
  EXPECT_TRUE(report.probes.empty());
  EXPECT_NE(report.note.find("ended before a window"), std::string::npos) << report.note;
}

TEST(LevelTuner, SamplesMeasureRatioAndCost) {
  std::vector<std::string> text, noise;
  for (int i = 0; i < 8; ++i) {
    text.push_back(text_bytes(256 << 10));
    noise.push_back(random_bytes(256 << 10, i));
  }
  auto t = sample_levels(text, {0, 1, 9}, Clock::now() + std::chrono::seconds(30));
  ASSERT_EQ(t.size(), 3u);
  EXPECT_EQ(t[0].level, 0);
  EXPECT_DOUBLE_EQ(t[0].ratio, 1.0);
  EXPECT_GT(t[1].ratio, 2.0);
  EXPECT_GE(t[2].ratio, t[1].ratio);
  EXPECT_GT(t[2].cpu_per_byte, t[1].cpu_per_byte);
  EXPECT_EQ(t[1].bytes, 8u * (256 << 10));
  auto n = sample_levels(noise, {1, 3}, Clock::now() + std::chrono::seconds(30));
  ASSERT_EQ(n.size(), 2u);
  EXPECT_NEAR(n[0].ratio, 1.0, 0.01);  // random bytes do not shrink (stored raw)
  // Past the deadline only the raw "level" (nothing to time) is given.
  auto late = sample_levels(text, {0, 1, 3}, Clock::now() - std::chrono::seconds(1));
  ASSERT_EQ(late.size(), 1u);
  EXPECT_EQ(late[0].level, 0);
}

TEST(LevelTuner, ReadSamplesHonoursIncludeAndTotal) {
  const fs::path dir = fs::temp_directory_path() / ("level_tuner_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  Plan plan;
  for (uint32_t k = 0; k < 6; ++k) {
    const fs::path f = dir / std::to_string(k);
    std::ofstream(f) << std::string((k + 1) << 16, static_cast<char>('a' + k));
    io::FileMeta meta;
    meta.size_bytes = (k + 1) << 16;
    plan.roots.push_back(Root{f.string(), (dir / "x").string(), ""});
    plan.entries.push_back(Entry{"", k, kNoParent, meta, "", nullptr});
    plan.files.push_back(k);
  }
  fs::remove(dir / "5");                           // a file that vanished is passed over
  std::vector<uint8_t> include{1, 0, 1, 0, 1, 1};  // 5 is included but gone
  auto s = read_samples(plan, &include, 1 << 20, 64 << 20);
  uint64_t total = 0;
  for (const auto& x : s) {
    total += x.size();
    EXPECT_TRUE(x[0] == 'a' || x[0] == 'c' || x[0] == 'e') << x[0];
  }
  EXPECT_EQ(s.size(), 3u);
  EXPECT_EQ(total, (1u + 3u + 5u) << 16);
  // The total bounds the bytes; a piece bounds each one.
  auto few = read_samples(plan, nullptr, 1 << 16, 100000);
  total = 0;
  for (const auto& x : few) {
    EXPECT_LE(x.size(), 1u << 16);
    total += x.size();
  }
  EXPECT_EQ(total, 100000u);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace barge::pipeline
