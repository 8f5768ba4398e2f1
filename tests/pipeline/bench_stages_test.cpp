// barge bench pipeline and meta in one process: every stage measured, the compressibility
// honoured, the graph end to end through the real stages; every meta phase counted.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "pipeline/bench/meta.hpp"
#include "pipeline/bench/stages.hpp"
#include "tests/test_tmpdir.hpp"

namespace barge::pipeline::bench {
namespace {

PipelineBenchResult run_small(unsigned compressible) {
  PipelineBenchOptions o;
  o.size_bytes = 16 << 20;
  o.chunk_bytes = 256 << 10;
  o.compressible_percent = compressible;
  o.levels = {1, 3};
  o.threads = 2;
  return run_pipeline_bench(o);
}

TEST(BenchPipeline, EveryStageIsMeasuredAndTheGraphRunsEndToEnd) {
  PipelineBenchResult r = run_small(50);
  std::vector<std::string> names;
  for (const auto& s : r.stages) {
    names.push_back(s.name);
    EXPECT_GE(s.bytes, 16u << 20) << s.name;
    EXPECT_GT(s.bytes_per_core_second(), 0) << s.name;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"hash", "compress-1", "compress-3", "decompress+check",
                                             "tls-encrypt", "tls-decrypt"}));
  EXPECT_NEAR(r.stages[1].ratio, 0.5, 0.1);  // half of every 4 KiB compresses away
  EXPECT_EQ(r.end_to_end_bytes, 16u << 20);
  EXPECT_GT(r.end_to_end_rate(), 0);
  EXPECT_FALSE(r.bottleneck.empty());
  nlohmann::json j = to_json(r);
  EXPECT_EQ(j["stages"].size(), 6u);
  EXPECT_EQ(j["end_to_end"]["bottleneck"], r.bottleneck);
}

TEST(BenchPipeline, RandomDataDoesNotCompress) {
  PipelineBenchResult r = run_small(0);
  EXPECT_GT(r.stages[1].ratio, 0.99);
}

TEST(BenchPipeline, OptionChecks) {
  PipelineBenchOptions o;
  EXPECT_TRUE(validate(o).ok());
  o.levels = {0};
  EXPECT_NE(validate(o).error().message.find("--levels"), std::string::npos);
  o = PipelineBenchOptions{};
  o.size_bytes = 1000;
  EXPECT_FALSE(validate(o).ok());
}

TEST(BenchMeta, EveryPhaseCountsItsOperationsAndLeavesNothing) {
  test::TempDir dir;
  auto comm = transport::make_solo_comm();
  MetaBenchOptions o;
  o.path = dir.path();
  o.files_per_rank = 300;
  o.dirs_per_rank = 50;
  o.file_bytes = 1000;
  MetaBenchResult r = run_meta_bench(o, *comm);
  ASSERT_EQ(r.exit_code, 0);
  ASSERT_EQ(r.phases.size(), 9u);
  for (const auto& p : r.phases) {
    uint64_t want = p.name.rfind("tree", 0) == 0 ? 3 : p.name.rfind("dir", 0) == 0 ? 50 : 300;
    EXPECT_EQ(p.ops, want) << p.name;
    EXPECT_EQ(p.latency.count(), want) << p.name;
    EXPECT_GT(p.ops_per_second(), 0) << p.name;
  }
  EXPECT_TRUE(r.errors.empty());
  EXPECT_TRUE(std::filesystem::is_empty(dir.path()));
  EXPECT_EQ(to_json(r)["phases"].size(), 9u);
}

}  // namespace
}  // namespace barge::pipeline::bench
