// Restore from forged snapshots: a manifest written with valid checksums (as a forger would)
// but whose entries name absolute paths, "..", or places reached through a symlink must be
// refused whole, and nothing may be written outside DST, or anywhere at all.
#include <gtest/gtest.h>

#include "pipeline/repo/repo_format.hpp"
#include "pipeline/repo/repository.hpp"
#include "tests/integration/test_util.hpp"

namespace barge::itest {
namespace {

using pipeline::repo::SnapEntry;
using pipeline::repo::Snapshot;

class ForgedSnapshot : public ::testing::Test {
 protected:
  void SetUp() override {
    make_dir(tmp_ / "src");
    write_file(tmp_ / "src/f", "payload");
    make_dir(tmp_ / "outside");
    auto r = run_barge({"backup", "-q", tmp_ / "src", tmp_ / "repo"});
    ASSERT_EQ(r.rc, 0) << r.err;
    auto repo = pipeline::repo::Repository::open(tmp_ / "repo", false);
    ASSERT_TRUE(repo);
    auto ids = repo->list_snapshots();
    ASSERT_TRUE(ids && ids->size() == 1);
    auto s = repo->load_snapshot(ids->front());
    ASSERT_TRUE(s);
    good_ = *s;
  }

  // Saves `s` under a new id and restores it into DST; returns the run.
  RunResult restore_forged(Snapshot s) {
    s.id = pipeline::repo::new_snapshot_id(good_.time_ns + (++n_) * 1000000000LL);
    auto repo = pipeline::repo::Repository::open(tmp_ / "repo", false);
    EXPECT_TRUE(repo && repo->save_snapshot(s));
    return run_barge({"restore", "-q", "--snapshot", s.id, tmp_ / "repo", tmp_ / "dst"});
  }

  SnapEntry file_like(const std::string& path) {
    SnapEntry e = good_.entries.back();  // "f", with its chunk
    e.path = path;
    return e;
  }

  TempDir tmp_;
  Snapshot good_;
  int n_ = 0;
};

TEST_F(ForgedSnapshot, GoodSnapshotRestores) {
  auto r = run_barge({"restore", "-q", tmp_ / "repo", tmp_ / "dst"});
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(read_file(tmp_ / "dst/f"), "payload");
}

TEST_F(ForgedSnapshot, TraversingPathsAreRefusedAndNothingIsWritten) {
  const std::string escape = "../outside/escaped";
  const std::string absolute = tmp_ / "outside/absolute";
  for (const std::string& p : {escape, absolute.substr(0), std::string("a/../../x")}) {
    Snapshot s = good_;
    s.entries.push_back(file_like(p));
    std::sort(s.entries.begin() + 1, s.entries.end(),
              [](const SnapEntry& a, const SnapEntry& b) { return a.path < b.path; });
    auto r = restore_forged(s);
    EXPECT_EQ(r.rc, 2) << p << ": " << r.err;
    EXPECT_NE(r.err.find("unsafe path"), std::string::npos) << r.err;
    EXPECT_TRUE(list_names(tmp_ / "outside").empty()) << p;
    EXPECT_FALSE(exists(tmp_ / "dst/f")) << "a refused snapshot restored something";
  }
}

TEST_F(ForgedSnapshot, EntriesThroughASymlinkAreRefused) {
  Snapshot s = good_;
  SnapEntry link;
  link.path = "l";
  link.meta.type = io::FileType::kSymlink;
  link.link_target = tmp_ / "outside";
  s.entries.push_back(link);
  s.entries.push_back(file_like("l/escaped"));
  auto r = restore_forged(s);
  EXPECT_EQ(r.rc, 2) << r.err;
  EXPECT_NE(r.err.find("not inside a directory"), std::string::npos) << r.err;
  EXPECT_TRUE(list_names(tmp_ / "outside").empty());
}

TEST_F(ForgedSnapshot, ASymlinkAlreadyInDstIsNotFollowed) {
  make_dir(tmp_ / "dst");
  make_symlink(tmp_ / "outside", tmp_ / "dst/d");
  Snapshot s = good_;
  SnapEntry d = good_.entries.front();  // the root directory's metadata
  d.path = "d";
  s.entries.push_back(d);
  s.entries.push_back(file_like("d/escaped"));
  std::sort(s.entries.begin() + 1, s.entries.end(),
            [](const SnapEntry& a, const SnapEntry& b) { return a.path < b.path; });
  auto r = restore_forged(s);
  EXPECT_EQ(r.rc, 1) << r.err;  // the snapshot is valid; its "d" cannot be made here
  EXPECT_NE(r.err.find("exists and is not a directory"), std::string::npos) << r.err;
  EXPECT_TRUE(list_names(tmp_ / "outside").empty());
  EXPECT_EQ(read_file(tmp_ / "dst/f"), "payload");  // the rest is restored
}

}  // namespace
}  // namespace barge::itest
