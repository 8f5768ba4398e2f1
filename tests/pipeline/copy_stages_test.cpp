// The copy stage functors run by hand, without TBB: read → hash → write → commit.
#include "pipeline/engine/copy_stages.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "tests/test_tmpdir.hpp"

namespace barge::pipeline {
namespace {

std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s) c = static_cast<char>(rng() & 0xFF);
  return s;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary) << bytes;
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class StagesTest : public ::testing::Test {
 protected:
  static constexpr uint64_t kChunk = 64 * 1024;

  void SetUp() override {
    src_ = dir_.path() + "/src";
    dst_ = dir_.path() + "/dst";
    ::mkdir(src_.c_str(), 0755);
    ::mkdir(dst_.c_str(), 0755);
    opts_.chunk_bytes = kChunk;
    opts_.sources = {src_};
    opts_.destination = dst_ + "/copy";
  }

  // Plans the copy and creates the destination root directory (the create phase's job).
  void plan() {
    auto roots = resolve_roots(opts_.sources, opts_.destination);
    ASSERT_TRUE(roots.ok()) << roots.error().message;
    plan_ = walk_roots(std::move(roots.value()), 2);
    ::mkdir(opts_.destination.c_str(), 0755);
    ctx_ = std::make_unique<CopyContext>(plan_, opts_, stats_,
                                         [this]() -> io::IoBackend& { return *backend_; });
  }

  std::vector<WorkUnit*> cut() {
    UnitCutter cutter(plan_, kChunk, pool_.buffer_bytes(), 128);
    std::vector<WorkUnit*> units;
    std::vector<Extent> ext;
    while (cutter.next(ext)) {
      auto* u = new WorkUnit;
      for (const Extent& x : ext) u->items.emplace_back().ext = x;
      units.push_back(u);
    }
    return units;
  }

  void run_through_write(WorkUnit& u) {
    u.buffer = pool_.acquire();
    ReadStage{*ctx_}(u);
    HashStage{}(u);
    WriteStage{*ctx_}(u);
  }

  test::TempDir dir_;
  std::string src_, dst_;
  CopyOptions opts_;
  LiveStats stats_;
  Plan plan_;
  io::BufferPool pool_{kChunk, 8};
  std::unique_ptr<io::IoBackend> backend_ =
      io::make_backend(io::BackendOptions{io::BackendKind::kSync});
  std::unique_ptr<CopyContext> ctx_;
};

TEST_F(StagesTest, SmallAndChunkedFilesArriveIntactWithMetadata) {
  std::string small = random_bytes(1000, 1), big = random_bytes(3 * kChunk + 17, 2);
  write_file(src_ + "/small", small);
  write_file(src_ + "/big", big);
  ::chmod((src_ + "/small").c_str(), 0640);
  timespec t[2] = {{1000, 5}, {2000, 123456789}};
  ::utimensat(AT_FDCWD, (src_ + "/small").c_str(), t, 0);
  plan();
  auto units = cut();
  ASSERT_EQ(units.size(), 4u + 1);  // big in 4 chunks, small alone
  CommitStage commit(*ctx_);
  std::vector<WorkUnit*> done;
  for (WorkUnit* u : units) {
    run_through_write(*u);
    commit(u, [&](WorkUnit* d) { done.push_back(d); });
  }
  EXPECT_EQ(done.size(), units.size());
  for (WorkUnit* u : done) delete u;
  EXPECT_EQ(ctx_->errors.count(), 0u);
  EXPECT_EQ(read_file(dst_ + "/copy/small"), small);
  EXPECT_EQ(read_file(dst_ + "/copy/big"), big);
  struct stat st;
  ASSERT_EQ(::stat((dst_ + "/copy/small").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0640u);
  EXPECT_EQ(st.st_mtim.tv_sec, 2000);
  EXPECT_EQ(st.st_mtim.tv_nsec, 123456789);
  EXPECT_EQ(stats_.files_done.load(), 2u);
  EXPECT_EQ(stats_.bytes_done.load(), small.size() + big.size());
  EXPECT_EQ(pool_.free_count(), pool_.buffer_count());
}

TEST_F(StagesTest, HashStageComputesXxh3OfEachExtent) {
  std::string data = random_bytes(5000, 3);
  write_file(src_ + "/f", data);
  plan();
  auto units = cut();
  ASSERT_EQ(units.size(), 1u);
  units[0]->buffer = pool_.acquire();
  ReadStage{*ctx_}(*units[0]);
  HashStage{}(*units[0]);
  EXPECT_EQ(units[0]->items[0].hash, hash_bytes(std::as_bytes(std::span(data))));
  delete units[0];
}

TEST_F(StagesTest, AFileThatShrankIsNamedAndNeverAppearsUnderItsName) {
  write_file(src_ + "/shrinks", random_bytes(2 * kChunk + 1, 4));
  write_file(src_ + "/ok", "fine");
  plan();
  ::truncate((src_ + "/shrinks").c_str(), 10);  // changes after the walk
  auto units = cut();
  CommitStage commit(*ctx_);
  for (WorkUnit* u : units) {
    run_through_write(*u);
    commit(u, [](WorkUnit* d) { delete d; });
  }
  auto errors = ctx_->errors.take();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("shrinks"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dst_ + "/copy/shrinks"));
  EXPECT_EQ(read_file(dst_ + "/copy/ok"), "fine");
  for (const auto& e : std::filesystem::directory_iterator(dst_ + "/copy")) {
    EXPECT_EQ(e.path().filename().string().find(".barge-tmp"), std::string::npos) << e.path();
  }
}

TEST_F(StagesTest, VerifyCatchesBytesThatDifferFromTheSourceChecksum) {
  opts_.verify = true;
  write_file(src_ + "/f", random_bytes(3000, 5));
  plan();
  auto units = cut();
  ASSERT_EQ(units.size(), 1u);
  WorkUnit& u = *units[0];
  u.buffer = pool_.acquire();
  ReadStage{*ctx_}(u);
  HashStage{}(u);
  u.buffer.data()[10] ^= std::byte{1};  // corrupted between hash and write
  WriteStage{*ctx_}(u);
  EXPECT_TRUE(u.items[0].failed);
  auto errors = ctx_->errors.take();
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_NE(errors[0].find("checksum mismatch"), std::string::npos);
  CommitStage{*ctx_}(&u, [](WorkUnit* d) { delete d; });
  EXPECT_FALSE(std::filesystem::exists(dst_ + "/copy/f"));
}

TEST_F(StagesTest, ManifestHashesChunksInOrderEvenWhenTheyArriveOutOfOrder) {
  std::string big = random_bytes(5 * kChunk + 3, 6);
  write_file(src_ + "/big", big);
  plan();
  ManifestWriter manifest;
  ctx_->manifest = &manifest;
  auto units = cut();
  ASSERT_EQ(units.size(), 6u);
  for (WorkUnit* u : units) run_through_write(*u);
  CommitStage commit(*ctx_);
  std::vector<uint32_t> emitted;
  std::reverse(units.begin(), units.end());
  for (WorkUnit* u : units) {
    commit(u, [&](WorkUnit* d) {
      emitted.push_back(d->items[0].ext.chunk);
      delete d;
    });
    EXPECT_EQ(ctx_->errors.count(), 0u);
  }
  EXPECT_EQ(emitted, (std::vector<uint32_t>{0, 1, 2, 3, 4, 5}));
  ASSERT_EQ(manifest.size(), 1u);
  std::string path = dir_.path() + "/m";
  ASSERT_TRUE(manifest.write_to(path).ok());
  auto entries = read_manifest(path);
  ASSERT_TRUE(entries.ok());
  EXPECT_EQ((*entries)[0].hash, hash_bytes(std::as_bytes(std::span(big))));
  EXPECT_EQ(read_file(dst_ + "/copy/big"), big);
}

TEST_F(StagesTest, StoppedRunAbandonsPartFilesAndRemovesTheirTemporaries) {
  write_file(src_ + "/big", random_bytes(4 * kChunk, 7));
  plan();
  auto units = cut();
  CommitStage commit(*ctx_);
  run_through_write(*units[0]);  // first chunk written
  commit(units[0], [](WorkUnit* d) { delete d; });
  ctx_->set_fatal("test: destination full");
  for (WorkUnit* u : std::vector<WorkUnit*>(units.begin() + 1, units.end()))
    delete u;  // never sent
  for (WorkUnit* u : commit.abandon_unfinished()) delete u;
  EXPECT_FALSE(std::filesystem::exists(dst_ + "/copy/big"));
  EXPECT_TRUE(std::filesystem::is_empty(dst_ + "/copy"));
  EXPECT_EQ(ctx_->fatal(), "test: destination full");
}

}  // namespace
// The serial runner sync uses during its walk: the same stages, one unit at a time.
TEST_F(StagesTest, SerialTransferReplacesExistingFilesAtomically) {
  std::string a = random_bytes(5000, 7), b = random_bytes(kChunk, 8);
  write_file(src_ + "/a", a);
  write_file(src_ + "/b", b);
  plan();
  ::mkdir(opts_.destination.c_str(), 0755);
  write_file(opts_.destination + "/a", "old contents of a");  // replaced
  ctx_->replacing.assign(plan_.entries.size(), 0);
  for (uint32_t f : plan_.files) {
    if (plan_.name(plan_.entries[f]) == "a") ctx_->replacing[f] = 1;
  }
  UnitCutter cutter(plan_, kChunk, pool_.buffer_bytes(), 128);
  transfer_serial(*ctx_, pool_, [&](std::vector<Extent>& out) { return cutter.next(out); });
  EXPECT_EQ(ctx_->errors.count(), 0u);
  EXPECT_TRUE(ctx_->fatal().empty());
  EXPECT_EQ(read_file(opts_.destination + "/a"), a);
  EXPECT_EQ(read_file(opts_.destination + "/b"), b);
  struct stat st;
  ASSERT_EQ(::stat((opts_.destination + "/a").c_str(), &st), 0);
  EXPECT_EQ(static_cast<size_t>(st.st_size), a.size());  // blocks reserved up front, size exact
  size_t entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(opts_.destination)) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 2u) << "a temporary was left behind";
  EXPECT_EQ(stats_.files_done.load(), 2u);
  EXPECT_EQ(pool_.free_count(), pool_.buffer_count());
}

TEST_F(StagesTest, SerialTransferTakesNoWorkAfterAStopSignal) {
  write_file(src_ + "/a", random_bytes(100, 9));
  plan();
  stop_signal() = SIGUSR1;
  UnitCutter cutter(plan_, kChunk, pool_.buffer_bytes(), 128);
  transfer_serial(*ctx_, pool_, [&](std::vector<Extent>& out) { return cutter.next(out); });
  stop_signal() = 0;
  EXPECT_TRUE(ctx_->resumable.load());
  EXPECT_NE(ctx_->fatal().find("signal"), std::string::npos) << ctx_->fatal();
  EXPECT_FALSE(std::filesystem::exists(opts_.destination + "/a"));
  EXPECT_EQ(stats_.files_done.load(), 0u);
  EXPECT_EQ(pool_.free_count(), pool_.buffer_count());
}

}  // namespace barge::pipeline
