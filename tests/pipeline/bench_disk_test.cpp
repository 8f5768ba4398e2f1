// barge bench disk in one process: the block order, the option checks, and real runs on
// real files through io_uring whose figures must add up (bytes, operations, bins, intervals).
#include <fcntl.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "pipeline/bench/disk.hpp"
#include "pipeline/bench/disk_files.hpp"
#include "pipeline/bench/disk_worker.hpp"
#include "pipeline/bench/plot.hpp"
#include "tests/test_tmpdir.hpp"

namespace barge::pipeline::bench {
namespace {

TEST(BenchDisk, BlockPermutationVisitsEveryBlockOnce) {
  for (uint64_t n : {1ull, 2ull, 3ull, 17ull, 1000ull, 4096ull, 65537ull}) {
    detail::BlockPermutation perm(n, 42 + n);
    std::set<uint64_t> seen;
    uint64_t in_order = 0;
    for (uint64_t i = 0; i < n; ++i) {
      uint64_t b = perm.at(i);
      ASSERT_LT(b, n);
      seen.insert(b);
      in_order += b == i;
    }
    EXPECT_EQ(seen.size(), n);
    if (n >= 1000) {
      EXPECT_LT(in_order, n / 50) << "not shuffled";
    }
  }
}

DiskBenchOptions small(const std::string& dir, RwMode rw) {
  DiskBenchOptions o;
  o.path = dir;
  o.rw = rw;
  o.block_bytes = 64 * 1024;
  o.queue_depth = 8;
  o.size_bytes = 8 << 20;
  o.quiet = true;
  o.interval_s = 0.05;
  return o;
}

TEST(BenchDisk, OptionChecksNameTheFlag) {
  DiskBenchOptions o = small("/tmp", RwMode::kRead);
  EXPECT_TRUE(validate(o).ok());
  auto msg = [](DiskBenchOptions x) { return validate(x).error().message; };
  DiskBenchOptions bad = o;
  bad.size_bytes = 0;
  EXPECT_NE(msg(bad).find("--size"), std::string::npos);
  bad = o;
  bad.size_bytes = 1000;
  EXPECT_NE(msg(bad).find("smaller than --bs"), std::string::npos);
  bad = o;
  bad.threads = 200;  // 8 MiB over 200 threads is less than a block each
  EXPECT_NE(msg(bad).find("per thread"), std::string::npos);
  bad = o;
  bad.steady_state_percent = 5;
  EXPECT_NE(msg(bad).find("--runtime"), std::string::npos);
  bad = o;
  bad.mix_read_percent = 101;
  EXPECT_NE(msg(bad).find("--mix"), std::string::npos);
  EXPECT_EQ(parse_rw_mode("randwrite"), RwMode::kRandWrite);
  EXPECT_EQ(parse_rw_mode("rw"), RwMode::kReadWrite);
  EXPECT_FALSE(parse_rw_mode("sideways"));
}

void expect_consistent(const DiskBenchResult& r, uint64_t bytes) {
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_EQ(r.runs.size(), 1u);
  const DiskRun& run = r.runs[0];
  EXPECT_EQ(run.whole.bytes, bytes);
  EXPECT_EQ(run.whole.ops, bytes / r.options.block_bytes);
  EXPECT_EQ(run.whole.latency.count(), run.whole.ops);
  uint64_t iv_bytes = 0, iv_ops = 0;
  LatencyHistogram merged;
  for (const auto& f : run.intervals) {
    iv_bytes += f.bytes;
    iv_ops += f.ops;
    merged.merge(f.latency);
  }
  EXPECT_EQ(iv_bytes, bytes);  // the intervals partition the run, none counted twice
  EXPECT_EQ(iv_ops, run.whole.ops);
  EXPECT_EQ(merged.percentile(99), run.whole.latency.percentile(99));
  EXPECT_TRUE(run.errors.empty());
  EXPECT_GT(run.whole.seconds, 0);
}

TEST(BenchDisk, EveryModeMovesTheSizeOnceAndTheFiguresAddUp) {
  test::TempDir dir;
  auto comm = transport::make_solo_comm();
  for (RwMode rw : {RwMode::kWrite, RwMode::kRead, RwMode::kRandWrite, RwMode::kRandRead,
                    RwMode::kReadWrite, RwMode::kRandRw}) {
    DiskBenchOptions o = small(dir.path(), rw);
    o.threads = 2;
    expect_consistent(run_disk_bench(o, *comm), o.size_bytes);
    // Nothing left behind without --keep.
    EXPECT_TRUE(std::filesystem::is_empty(dir.path())) << rw_mode_name(rw);
  }
}

TEST(BenchDisk, DirectIoAndKeepReuseTheFile) {
  test::TempDir dir;
  auto comm = transport::make_solo_comm();
  DiskBenchOptions o = small(dir.path(), RwMode::kRandRead);
  o.direct = true;
  o.block_bytes = 4096;
  o.keep = true;
  expect_consistent(run_disk_bench(o, *comm), o.size_bytes);
  std::string file = dir.path() + "/barge-bench.0";
  ASSERT_TRUE(std::filesystem::exists(file));
  auto mtime = std::filesystem::last_write_time(file);
  o.keep =
      false;  // reused as it is (not laid out again), and not removed: this run did not create it
  expect_consistent(run_disk_bench(o, *comm), o.size_bytes);
  EXPECT_EQ(std::filesystem::last_write_time(file), mtime);
}

TEST(BenchDisk, DirectRunsOnAnODirectDescriptor) {
  test::TempDir dir;
  auto comm = transport::make_solo_comm();
  for (bool direct : {false, true}) {
    DiskBenchOptions o = small(dir.path(), RwMode::kRead);
    o.direct = direct;
    auto f = detail::prepare_file(o, *comm);
    ASSERT_TRUE(f.ok());
    EXPECT_EQ((::fcntl(f->fd.get(), F_GETFL) & O_DIRECT) != 0, direct);
    detail::remove_file(*f, o, *comm);
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
}

TEST(BenchDisk, TimeBasedRunWrapsAndKeepsTheTimeline) {
  test::TempDir dir;
  auto comm = transport::make_solo_comm();
  DiskBenchOptions o = small(dir.path(), RwMode::kRead);
  o.runtime_s = 0.5;
  o.interval_s = 0.1;
  DiskBenchResult r = run_disk_bench(o, *comm);
  ASSERT_EQ(r.exit_code, 0);
  const DiskRun& run = r.runs[0];
  EXPECT_GT(run.whole.bytes, o.size_bytes);  // a cached 8 MiB file is read many times over
  EXPECT_NEAR(run.whole.seconds, 0.5, 0.25);
  EXPECT_GE(run.intervals.size(), 4u);
  nlohmann::json j = to_json(r);
  for (const char* k :
       {"bandwidth_bytes_per_second", "iops", "latency_ns", "intervals", "ranks", "errors"})
    EXPECT_TRUE(j.contains(k)) << k;
  for (const char* k : {"min", "mean", "p50", "p90", "p99", "p99_9", "p99_99", "max"})
    EXPECT_TRUE(j["latency_ns"].contains(k)) << k;
  EXPECT_EQ(j["intervals"].size(), run.intervals.size());
  EXPECT_TRUE(j["intervals"][0].contains("latency_ns"));
  std::string svg = timeline_svg("t", run.intervals, o.interval_s);
  for (const char* series : {"bandwidth", "p50", "p99", "p99_9"})
    EXPECT_NE(svg.find(std::string("data-series=\"") + series + "\""), std::string::npos);
}

TEST(BenchDisk, MissingDirectoryIsOneClearError) {
  auto comm = transport::make_solo_comm();
  DiskBenchOptions o = small("/nonexistent/barge-bench-dir", RwMode::kRead);
  DiskBenchResult r = run_disk_bench(o, *comm);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_TRUE(r.runs.empty());
}

}  // namespace
}  // namespace barge::pipeline::bench
