// PlannedCopy::time_limit_s (copy --tune's probes): the transfer stops when the time is up,
// names the reason, and every file it left under its name is complete.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "pipeline/copy/copy.hpp"
#include "pipeline/core/plan.hpp"
#include "tests/test_tmpdir.hpp"

namespace barge::pipeline {
namespace {

namespace fs = std::filesystem;

std::string content(int i) { return std::string(4096 + i % 97, static_cast<char>('a' + i % 26)); }

RunResult copy_with_limit(const std::string& src, const std::string& dst, double limit) {
  CopyOptions o;
  o.sources = {src};
  o.destination = dst;
  o.progress = ProgressMode::kNone;
  o.threads = 1;
  o.queue_depth = 1;
  auto roots = resolve_roots(o.sources, o.destination);
  EXPECT_TRUE(roots.ok());
  Plan plan = walk_roots(std::move(roots.value()), 1);
  PlannedCopy how;
  how.time_limit_s = limit;
  return copy_planned(o, plan, RunResult{}, std::chrono::steady_clock::now(), how);
}

TEST(CopyTimeLimit, StopsWhenTheTimeIsUpAndLeavesOnlyCompleteFiles) {
  test::TempDir dir;
  const std::string src = dir.path() + "/src";
  fs::create_directories(src);
  constexpr int kFiles = 1500;
  for (int i = 0; i < kFiles; ++i) std::ofstream(src + "/f" + std::to_string(i)) << content(i);
  RunResult cut = copy_with_limit(src, dir.path() + "/cut", 0.01);
  EXPECT_EQ(cut.fatal, kProbeTimeUp);
  EXPECT_NE(cut.exit_code, kExitOk);
  EXPECT_LT(cut.files, static_cast<uint64_t>(kFiles));
  uint64_t present = 0;
  for (const auto& e : fs::directory_iterator(dir.path() + "/cut")) {
    const std::string name = e.path().filename().string();
    ASSERT_EQ(name.rfind('f', 0), 0u) << "a temporary left under " << name;
    std::ifstream in(e.path());
    std::stringstream ss;
    ss << in.rdbuf();
    EXPECT_EQ(ss.str(), content(std::stoi(name.substr(1)))) << name;
    ++present;
  }
  EXPECT_EQ(present, cut.files);
  // Without a limit the same copy completes.
  RunResult full = copy_with_limit(src, dir.path() + "/full", 0);
  EXPECT_EQ(full.exit_code, kExitOk) << full.fatal;
  EXPECT_EQ(full.files, static_cast<uint64_t>(kFiles));
}

}  // namespace
}  // namespace barge::pipeline
