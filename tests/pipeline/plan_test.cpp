#include "pipeline/core/plan.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "tests/test_tmpdir.hpp"

namespace barge::pipeline {
namespace {

void write_file(const std::string& path, size_t bytes) {
  std::ofstream out(path, std::ios::binary);
  out << std::string(bytes, 'x');
}

class PlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.path();
    ::mkdir((root_ + "/src").c_str(), 0755);
    ::mkdir((root_ + "/src/sub").c_str(), 0755);
    write_file(root_ + "/src/a", 10);
    write_file(root_ + "/src/sub/b", 20);
    ::symlink("a", (root_ + "/src/link").c_str());
    ::mkdir((root_ + "/existing").c_str(), 0755);
    write_file(root_ + "/file", 5);
  }
  test::TempDir dir_;
  std::string root_;
};

TEST_F(PlanTest, NewDestinationBecomesTheCopy) {
  auto r = resolve_roots({root_ + "/src"}, root_ + "/new");
  ASSERT_TRUE(r.ok()) << r.error().message;
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].dst, root_ + "/new");
  EXPECT_EQ((*r)[0].manifest_prefix, "");
}

TEST_F(PlanTest, ExistingDirectoryReceivesSourcesByName) {
  auto r = resolve_roots({root_ + "/src/", root_ + "/file"}, root_ + "/existing");
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ((*r)[0].dst, root_ + "/existing/src");
  EXPECT_EQ((*r)[1].dst, root_ + "/existing/file");
  EXPECT_EQ((*r)[1].manifest_prefix, "file");
}

TEST_F(PlanTest, RejectsBadPlacementsWithAClearMessage) {
  auto several = resolve_roots({root_ + "/src", root_ + "/file"}, root_ + "/nope");
  ASSERT_FALSE(several.ok());
  EXPECT_NE(several.error().message.find("several sources"), std::string::npos);
  auto missing = resolve_roots({root_ + "/missing"}, root_ + "/x");
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.error().message.find("missing"), std::string::npos);
  auto inside = resolve_roots({root_ + "/src"}, root_ + "/src/sub/copy");
  ASSERT_FALSE(inside.ok());
  EXPECT_NE(inside.error().message.find("into itself"), std::string::npos);
  auto onto_file = resolve_roots({root_ + "/src"}, root_ + "/file");
  ASSERT_FALSE(onto_file.ok());
  EXPECT_NE(onto_file.error().message.find("non-directory"), std::string::npos);
  auto no_parent = resolve_roots({root_ + "/src"}, root_ + "/a/b/c");
  EXPECT_FALSE(no_parent.ok());
}

// "SRC/." (and sync, whose root is SRC/.) names the entries below as SRC/x: error messages
// used to read "src/./noread".
TEST_F(PlanTest, PathsBelowAMergingRootHaveNoDotComponent) {
  auto roots = resolve_roots({root_ + "/src/."}, root_ + "/existing");
  ASSERT_TRUE(roots.ok()) << roots.error().message;
  Plan plan = walk_roots(std::move(roots.value()), 2);
  ASSERT_TRUE(plan.walk_errors.empty());
  ASSERT_EQ(plan.entries.size(), 5u);
  EXPECT_EQ(plan.src_path(plan.entries[4]), root_ + "/src/sub/b");
  EXPECT_EQ(plan.src_parent(plan.entries[4]), root_ + "/src/sub");
  EXPECT_EQ(plan.dst_path(plan.entries[4]), root_ + "/existing/sub/b");
  EXPECT_EQ(plan.src_path(plan.entries[0]), root_ + "/src/.");  // the root itself: as named
}

TEST_F(PlanTest, WalkListsEntriesInPreOrderWithParents) {
  auto roots = resolve_roots({root_ + "/src"}, root_ + "/new");
  ASSERT_TRUE(roots.ok());
  Plan plan = walk_roots(std::move(roots.value()), 2);
  ASSERT_TRUE(plan.walk_errors.empty());
  ASSERT_EQ(plan.entries.size(), 5u);  // src, a, link, sub, sub/b
  EXPECT_EQ(plan.entries[0].rel, "");
  EXPECT_EQ(plan.entries[0].parent, kNoParent);
  for (size_t i = 1; i < plan.entries.size(); ++i) EXPECT_LT(plan.entries[i].parent, i);
  EXPECT_EQ(plan.entries[3].rel, "sub");
  EXPECT_EQ(plan.entries[4].rel, "sub/b");
  EXPECT_EQ(plan.entries[4].parent, 3u);
  EXPECT_EQ(plan.entries[2].link_target, "a");
  EXPECT_EQ(plan.files.size(), 2u);
  EXPECT_EQ(plan.total_file_bytes, 30u);
  EXPECT_EQ(plan.dst_path(plan.entries[4]), root_ + "/new/sub/b");
  EXPECT_EQ(plan.name(plan.entries[0]), "new");
}

Plan synthetic_plan(const std::vector<uint64_t>& sizes) {
  Plan plan;
  plan.roots.push_back(Root{"s", "d", ""});
  plan.entries.push_back(Entry{"", 0, kNoParent, {}, {}, {}});
  plan.entries[0].meta.type = io::FileType::kDirectory;
  for (size_t i = 0; i < sizes.size(); ++i) {
    Entry e{"f" + std::to_string(i), 0, 0, {}, {}, {}};
    e.meta.type = io::FileType::kRegular;
    e.meta.size_bytes = sizes[i];
    plan.files.push_back(static_cast<uint32_t>(plan.entries.size()));
    plan.entries.push_back(e);
  }
  return plan;
}

TEST(UnitCutter, BatchesSmallFilesAndSplitsLargeOnes) {
  constexpr uint64_t kChunk = 64 * 1024;
  Plan plan = synthetic_plan({0, 100, kChunk - 1, kChunk, kChunk + 1, 3 * kChunk + 5, 10});
  UnitCutter cutter(plan, kChunk, kChunk, 128);
  std::vector<std::vector<Extent>> units;
  std::vector<Extent> u;
  while (cutter.next(u)) units.push_back(u);
  // {0,100} fit together; kChunk-1 needs its own buffer; kChunk alone; kChunk+1 → 2 chunks;
  // 3*kChunk+5 → 4 chunks; 10 alone at the end.
  ASSERT_EQ(units.size(), 1u + 1 + 1 + 2 + 4 + 1);
  EXPECT_EQ(units[0].size(), 2u);
  EXPECT_EQ(units[0][1].buf_offset_bytes, 0u);  // a 0-byte file takes no room
  uint64_t covered = 0;
  for (const auto& unit : units) {
    uint64_t used = 0;
    for (const Extent& x : unit) {
      EXPECT_EQ(x.buf_offset_bytes % 4096, 0u);
      EXPECT_LE(x.buf_offset_bytes + x.length_bytes, kChunk);
      used += x.length_bytes;
      covered += x.length_bytes;
    }
    EXPECT_LE(used, kChunk);
  }
  EXPECT_EQ(covered, 100 + kChunk - 1 + kChunk + kChunk + 1 + 3 * kChunk + 5 + 10);
  EXPECT_EQ(units[3][0].chunk_count, 2u);
  EXPECT_EQ(units[4][0].offset_bytes, kChunk);
  EXPECT_EQ(units[4][0].length_bytes, 1u);
  EXPECT_EQ(units[8][0].length_bytes, 5u);
}

TEST(UnitCutter, RespectsMaxFilesAndIncludeFlags) {
  Plan plan = synthetic_plan(std::vector<uint64_t>(10, 1));
  std::vector<uint8_t> include(plan.entries.size(), 1);
  include[3] = 0;
  UnitCutter cutter(plan, 1 << 20, 1 << 20, 4, &include);
  std::vector<Extent> u;
  size_t units = 0, extents = 0;
  while (cutter.next(u)) {
    ++units;
    extents += u.size();
    EXPECT_LE(u.size(), 4u);
    for (const Extent& x : u) EXPECT_NE(x.file, 3u);
  }
  EXPECT_EQ(extents, 9u);
  EXPECT_EQ(units, 3u);
}

}  // namespace
}  // namespace barge::pipeline

namespace barge::pipeline {
namespace {

TEST(PathFilter, RsyncLikePatterns) {
  PathFilter f({"*.tmp", "cache/", "logs/*.log", "**/deep"}, {"keep.tmp"});
  EXPECT_TRUE(f.excluded("a.tmp", false));
  EXPECT_TRUE(f.excluded("x/y/b.tmp", false));
  EXPECT_FALSE(f.excluded("x/keep.tmp", false)) << "an include wins over an exclude";
  EXPECT_TRUE(f.excluded("cache", true));
  EXPECT_TRUE(f.excluded("x/cache", true)) << "a name pattern matches at any depth";
  EXPECT_FALSE(f.excluded("x/cache", false)) << "'cache/' names directories only";
  EXPECT_TRUE(f.excluded("logs/a.log", false));
  EXPECT_FALSE(f.excluded("x/logs/a.log", false)) << "a path pattern is anchored at the root";
  EXPECT_FALSE(f.excluded("logs/sub/a.log", false)) << "'*' does not cross '/'";
  EXPECT_TRUE(f.excluded("a/b/deep", true)) << "'**' crosses '/'";
  EXPECT_TRUE(f.excluded("deep", true));
  EXPECT_FALSE(f.excluded("data.bin", false));
  EXPECT_FALSE(PathFilter().excluded("anything", false));
}

TEST(PoolBuffers, MemoryBoundsTheCountAndWorkCapsIt) {
  // As many as memory holds when the work could use more.
  EXPECT_EQ(pool_buffers(256ull << 20, 4 << 20, 1000, 2), 64u);
  // No more than the work can keep busy.
  EXPECT_EQ(pool_buffers(256ull << 20, 4 << 20, 3, 2), 3u);
  // At least the minimum, even when memory holds fewer.
  EXPECT_EQ(pool_buffers(1 << 20, 4 << 20, 1000, 2), 2u);
  EXPECT_EQ(pool_buffers(256ull << 20, 4 << 20, 0, 1), 1u);
}

}  // namespace
}  // namespace barge::pipeline
