// barge migrate's library parts: the state directory and its journal (torn and corrupt
// lines), the rule that ends the passes, the predictions, status and its metrics.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pipeline/migrate/plan.hpp"
#include "pipeline/migrate/run.hpp"
#include "pipeline/migrate/state.hpp"
#include "pipeline/migrate/status.hpp"

namespace mg = barge::pipeline::migrate;
namespace fs = std::filesystem;

namespace {

mg::PassRecord pass(unsigned n, uint64_t files, uint64_t bytes, double seconds,
                    double started = 0) {
  mg::PassRecord p;
  p.pass = n;
  p.kind = n == 1 ? "full" : "catch-up";
  p.files_changed = files;
  p.entries_changed = files;
  p.bytes_changed = bytes;
  p.seconds = seconds;
  p.started_unix = started;
  return p;
}

std::string line(const mg::PassRecord& p) { return mg::to_json(p).dump() + "\n"; }

class MigrateStateDir : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/barge-migrate-unit.XXXXXX";
    dir_ = ::mkdtemp(tmpl);
    fs::create_directories(dir_ + "/src");
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string dir_;
};

}  // namespace

TEST(MigrateJournal, ParsesLinesAndDropsATornLast) {
  std::string bytes = line(pass(1, 10, 100, 1)) + line(pass(2, 3, 30, 0.5));
  auto all = mg::parse_journal(bytes);
  ASSERT_TRUE(all) << all.error().message;
  ASSERT_EQ(all.value().size(), 2u);
  EXPECT_EQ(all.value()[1].bytes_changed, 30u);
  auto torn = mg::parse_journal(bytes + line(pass(3, 1, 1, 1)).substr(0, 20));
  ASSERT_TRUE(torn);
  EXPECT_EQ(torn.value().size(), 2u);
}

TEST(MigrateJournal, RefusesABadCompleteLineNamingIt) {
  auto bad = mg::parse_journal(line(pass(1, 1, 1, 1)) + "{\"pass\": \"x\"}\n");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message.rfind("line 2: ", 0), 0u) << bad.error().message;
  auto garbage = mg::parse_journal("not json\n");
  ASSERT_FALSE(garbage);
  EXPECT_EQ(garbage.error().message, "line 1: not a JSON object");
  auto order = mg::parse_journal(line(pass(2, 1, 1, 1)) + line(pass(1, 1, 1, 1)));
  ASSERT_FALSE(order);
  EXPECT_NE(order.error().message.find("pass 1 after pass 2"), std::string::npos);
}

TEST_F(MigrateStateDir, AppendAfterATornLineStartsANewLine) {
  auto s = mg::create_state(dir_ + "/st", dir_ + "/src", dir_ + "/dst");
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_TRUE(mg::append_pass(s.value(), pass(1, 5, 50, 1)));
  {
    std::ofstream j(dir_ + "/st/journal.jsonl", std::ios::app);
    j << "{\"pass\":2,\"kind\":\"cat";  // a kill during the write
  }
  auto again = mg::load_state(dir_ + "/st");
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again.value().passes.size(), 1u);
  ASSERT_TRUE(mg::append_pass(again.value(), pass(2, 1, 10, 1)));
  auto last = mg::load_state(dir_ + "/st");
  ASSERT_TRUE(last) << last.error().message;
  ASSERT_EQ(last.value().passes.size(), 2u);
  EXPECT_EQ(last.value().passes[1].bytes_changed, 10u);
}

TEST_F(MigrateStateDir, StateKeepsItsPairAndRefusesAnother) {
  auto s = mg::create_state(dir_ + "/st", dir_ + "/src", dir_ + "/dst");
  ASSERT_TRUE(s);
  s.value().phase = mg::kPhaseCatchingUp;
  s.value().pass_running = 3;
  ASSERT_TRUE(mg::save_state(s.value()));
  auto same = mg::create_state(dir_ + "/st", dir_ + "/src", dir_ + "/dst");
  ASSERT_TRUE(same);
  EXPECT_EQ(same.value().phase, mg::kPhaseCatchingUp);
  EXPECT_EQ(same.value().pass_running, 3u);
  fs::create_directories(dir_ + "/other");
  auto other = mg::create_state(dir_ + "/st", dir_ + "/other", dir_ + "/dst");
  ASSERT_FALSE(other);
  EXPECT_NE(other.error().message.find("holds the migration of"), std::string::npos);
  auto none = mg::load_state(dir_ + "/nothing");
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("run barge migrate plan"), std::string::npos);
  std::ofstream(dir_ + "/st/state.json") << "{\"format\": 7}";
  EXPECT_FALSE(mg::load_state(dir_ + "/st"));
}

TEST(MigrateStop, EndsWhenSmallNotShrinkingEmptyOrCounted) {
  using mg::Delta;
  std::vector<mg::PassRecord> p{pass(1, 1000, 1 << 30, 100)};
  EXPECT_EQ(mg::stop_reason(p, std::nullopt, 10), "");  // a catch-up always follows
  EXPECT_EQ(mg::stop_reason(p, std::nullopt, 1), "--max-passes 1");
  p.push_back(pass(2, 100, 1 << 20, 10));
  EXPECT_EQ(mg::stop_reason(p, std::nullopt, 10), "");
  EXPECT_NE(mg::stop_reason(p, Delta{Delta::kBytes, 2 << 20}, 10), "");
  EXPECT_EQ(mg::stop_reason(p, Delta{Delta::kFiles, 50}, 10), "");
  EXPECT_NE(mg::stop_reason(p, Delta{Delta::kSeconds, 10}, 10), "");
  p.push_back(pass(3, 50, 1 << 19, 5));
  EXPECT_EQ(mg::stop_reason(p, std::nullopt, 10), "");  // still shrinking
  EXPECT_EQ(mg::stop_reason(p, std::nullopt, 3), "--max-passes 3");
  p.push_back(pass(4, 60, 1 << 20, 6));
  EXPECT_EQ(mg::stop_reason(p, std::nullopt, 10), "the delta stopped shrinking");
  p.push_back(pass(5, 0, 0, 1));
  EXPECT_EQ(mg::stop_reason(p, std::nullopt, 10), "the last pass found nothing changed");
}

TEST(MigratePredict, FullCopyFromPerFileCostAndByteRate) {
  mg::TreeFigures t;
  t.files = 10000;
  t.bytes = 3000ull << 20;
  t.small_files = 9999;
  t.large_files = 1;
  t.large_bytes = 1000ull << 20;
  mg::RateFigures r;
  r.sample_files = 1000;
  r.sample_bytes = 100ull << 20;
  r.sample_seconds = 1.5;  // 1 s of it is the bytes at 100 MiB/s: 0.5 ms per file
  r.region_bytes = 200ull << 20;
  r.region_seconds = 2;  // 100 MiB/s
  r.read_bytes = 400ull << 20;
  r.read_seconds = 1;
  mg::Prediction p = mg::predict(t, r, {}, std::nullopt, 0);
  EXPECT_NEAR(p.full_copy_seconds, 10000 * 0.0005 + 30, 1e-6);
  ASSERT_TRUE(p.verify_seconds);
  EXPECT_NEAR(*p.verify_seconds, 7.5, 1e-6);
  EXPECT_FALSE(p.cutover_seconds);
  // Without a region rate: the sample's time per file, the large file at its byte rate.
  r.region_bytes = 0;
  r.region_seconds = 0;
  p = mg::predict(t, r, {}, std::nullopt, 0);
  EXPECT_NEAR(p.full_copy_seconds, 10000 * 0.0015 + 1000 / (100 / 1.5), 1e-6);
}

TEST(MigratePredict, CutoverFromTheChangeRate) {
  mg::TreeFigures t;
  t.files = 1000;
  t.bytes = 1000ull << 20;
  t.small_files = 1000;
  t.small_bytes = t.bytes;
  mg::RateFigures r;
  r.sample_files = 100;
  r.sample_bytes = 100ull << 20;
  r.sample_seconds = 1;  // 10 ms per file, bytes included
  r.read_bytes = 1000ull << 20;
  r.read_seconds = 2;
  // Pass 2 began 100 s after pass 1 and found 50 files: 0.5 files/s.
  std::vector<mg::PassRecord> passes{pass(1, 1000, 1000ull << 20, 90, 1000),
                                     pass(2, 50, 50ull << 20, 4, 1100)};
  mg::Prediction p = mg::predict(t, r, passes, std::nullopt, 1104);
  ASSERT_TRUE(p.change_files_per_second && p.cutover_seconds && p.catch_up_seconds);
  EXPECT_NEAR(*p.change_files_per_second, 0.5, 1e-9);
  EXPECT_NEAR(*p.scan_seconds, 3.5, 1e-9);  // 4 s less 50 files x 10 ms
  EXPECT_NEAR(*p.catch_up_seconds, 3.5 + 0.5 * 0.01 * 4, 1e-9);
  EXPECT_NEAR(*p.cutover_seconds, 3.5 + 0.5 * 0.01 * 4 + 2, 1e-9);
  // A dry run 60 s after pass 2 began found 6 files: its scan time and that rate are used.
  mg::PassRecord dry = pass(3, 6, 6ull << 20, 2.5);
  p = mg::predict(t, r, passes, dry, 1160);
  EXPECT_NEAR(*p.change_files_per_second, 0.1, 1e-9);
  EXPECT_NEAR(*p.cutover_seconds, 2.5 + 0.1 * 0.01 * 60 + 2, 1e-9);
}

TEST(MigrateStatus, PhasesAndMetrics) {
  mg::State s;
  s.src = "/a";
  s.dst = "/b";
  mg::PlanResult plan;
  plan.tree.files = 1000;
  plan.tree.bytes = 1 << 30;
  plan.tree.small_files = 1000;
  plan.rates.sample_files = 100;
  plan.rates.sample_seconds = 1;
  plan.prediction.full_copy_seconds = 10;
  s.phase = mg::kPhaseCopying;
  s.pass_running = 1;
  s.pass_started_unix = 100;
  mg::MigrateStatus st = mg::compute_status(s, plan, 104);
  ASSERT_TRUE(st.predicted_remaining_seconds);
  EXPECT_NEAR(*st.predicted_remaining_seconds, 6, 1e-9);
  EXPECT_NEAR(st.pass_elapsed_seconds, 4, 1e-9);
  nlohmann::json j = mg::to_json(st);
  for (const char* k : {"phase", "passes", "bytes_done", "predicted_remaining_seconds"})
    EXPECT_TRUE(j.contains(k)) << k;
  std::string m = mg::prometheus_metrics(st);
  EXPECT_NE(m.find("barge_migrate_phase{phase=\"copying\"} 1\n"), std::string::npos) << m;
  EXPECT_NE(m.find("barge_migrate_phase{phase=\"ready\"} 0\n"), std::string::npos);
  EXPECT_NE(m.find("# TYPE barge_migrate_bytes_done_total counter\n"), std::string::npos);
  EXPECT_NE(m.find("barge_migrate_pass_elapsed_seconds 4\n"), std::string::npos) << m;
  s.phase = mg::kPhaseDone;
  s.pass_running = 0;
  s.passes = {pass(1, 1000, 1 << 30, 9, 100)};
  st = mg::compute_status(s, plan, 200);
  EXPECT_EQ(*st.predicted_remaining_seconds, 0);
  EXPECT_EQ(st.bytes_done, 1u << 30);
}
