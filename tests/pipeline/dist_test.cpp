// pipeline/dist and the rank statistics on the solo communicator: the chunk coordinator's
// protocol, the one per-rank stats layout, and the copy's phases (run_phases, reached here
// through sync, which runs them even alone).
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
#include <utility>

#include <gtest/gtest.h>

#include "pipeline/copy/sync.hpp"
#include "pipeline/core/rank_stats.hpp"
#include "pipeline/dist/chunks.hpp"
#include "tests/test_tmpdir.hpp"

namespace barge::pipeline {
namespace {

namespace fs = std::filesystem;

TEST(RankStats, OneLayoutRoundTripsEveryField) {
  RankStats s;
  s.rank = 3;
  s.host = "node-7";
  s.bytes = 1;
  s.files = 2;
  s.busy_seconds = 1.5;
  s.walk_seconds = 0.25;
  s.peak_rss_bytes = 3;
  s.bytes_committed = 4;
  s.bytes_verified = 5;
  s.bytes_cloned = 10;
  s.bytes_stored = 6;
  s.dirs = 7;
  s.symlinks = 8;
  s.others = 9;
  for (int k = 0; k < kStageCount; ++k) s.stage_busy_ns[k] = 100 + k;
  WireWriter w;
  write_rank_stats(w, s);
  std::string bytes = w.take();
  WireReader r(bytes);
  RankStats t = read_rank_stats(r);
  EXPECT_TRUE(r.done());
  EXPECT_EQ(t.rank, 3);
  EXPECT_EQ(t.host, "node-7");
  EXPECT_EQ(std::make_tuple(t.bytes, t.files, t.peak_rss_bytes, t.bytes_committed, t.bytes_verified,
                            t.bytes_cloned, t.bytes_stored, t.dirs, t.symlinks, t.others),
            std::make_tuple(1u, 2u, 3u, 4u, 5u, 10u, 6u, 7u, 8u, 9u));
  EXPECT_DOUBLE_EQ(t.busy_seconds, 1.5);
  EXPECT_DOUBLE_EQ(t.walk_seconds, 0.25);
  for (int k = 0; k < kStageCount; ++k) EXPECT_EQ(t.stage_busy_ns[k], 100u + k);
  // Every truncation is refused, never read past.
  for (size_t n = 0; n < bytes.size(); ++n) {
    std::string cut = bytes.substr(0, n);
    WireReader rc(cut);
    EXPECT_THROW(read_rank_stats(rc), WireError) << n;
  }
}

TEST(RankStats, ReducedIntoTheRunsTotals) {
  auto comm = transport::make_solo_comm();
  RankStats me;
  me.bytes = 10;
  me.files = 2;
  me.bytes_committed = 8;
  me.dirs = 1;
  me.busy_seconds = 2;
  RunResult r;
  r.files = 5;  // added to, not replaced
  std::vector<RankStats> all = reduce_rank_stats(*comm, me, r, true);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].rank, 0);
  EXPECT_FALSE(all[0].host.empty());
  EXPECT_GT(all[0].peak_rss_bytes, 0u);
  EXPECT_EQ(r.files, 7u);
  EXPECT_EQ(r.bytes, 8u);
  EXPECT_EQ(r.bytes_transferred, 10u);
  EXPECT_EQ(r.dirs, 1u);
  EXPECT_DOUBLE_EQ(r.balance, 1.0);
  EXPECT_EQ(r.peak_rss_bytes, all[0].peak_rss_bytes);
  ASSERT_EQ(r.ranks.size(), 1u);
  RunResult quiet;
  reduce_rank_stats(*comm, me, quiet, false);
  EXPECT_TRUE(quiet.ranks.empty());
  EXPECT_EQ(agree_exit_code(*comm, 75), 75);
}

// Runs the coordinator on a thread and one client on this one, as rank 0 does.
std::vector<std::pair<uint32_t, uint32_t>> handed_out(
    const std::vector<uint32_t>& counts, const std::set<std::pair<uint32_t, uint32_t>>& done) {
  auto comm = transport::make_solo_comm();
  std::thread coordinator([&] {
    chunk_coordinator(*comm, counts, [&](uint32_t f, uint32_t c) { return done.count({f, c}); });
  });
  ChunkClient client(*comm, static_cast<uint32_t>(counts.size()));
  std::vector<std::pair<uint32_t, uint32_t>> got;
  uint32_t f = 0, c = 0;
  while (client.next(f, c)) got.emplace_back(f, c);
  coordinator.join();
  return got;
}

TEST(ChunkCoordinator, HandsOutEveryChunkOnceInOrder) {
  auto got = handed_out({3, 9, 1}, {});
  std::vector<std::pair<uint32_t, uint32_t>> want;
  for (uint32_t c = 0; c < 3; ++c) want.emplace_back(0, c);
  for (uint32_t c = 0; c < 9; ++c) want.emplace_back(1, c);
  want.emplace_back(2, 0);
  EXPECT_EQ(got, want);
}

TEST(ChunkCoordinator, ResumedChunksAreSkippedButNeverTheLast) {
  auto got = handed_out({4, 2}, {{0, 1}, {0, 3}, {1, 0}, {1, 1}});
  std::vector<std::pair<uint32_t, uint32_t>> want{{0, 0}, {0, 2}, {0, 3}, {1, 1}};
  EXPECT_EQ(got, want);
}

TEST(ChunkCoordinator, AStoppedRankDrainsAndNamesWhatItWillNotWrite) {
  auto comm = transport::make_solo_comm();
  std::vector<uint32_t> counts{kChunksPerBatch + 1, 1, 2};
  std::thread coordinator(
      [&] { chunk_coordinator(*comm, counts, [](uint32_t, uint32_t) { return false; }); });
  ChunkClient client(*comm, 3);
  uint32_t f = 9, c = 9;
  ASSERT_TRUE(client.next(f, c));
  EXPECT_EQ(std::make_pair(f, c), std::make_pair(0u, 0u));
  std::vector<uint32_t> abandoned;
  client.drain([&](uint32_t file) { abandoned.push_back(file); });
  coordinator.join();  // returns: the protocol ran to its end
  // The rest of file 0's first batch is this rank's already; the next batches are named.
  EXPECT_EQ(abandoned, (std::vector<uint32_t>{0, 1, 2}));
  EXPECT_FALSE(client.next(f, c));
}

void write(const fs::path& p, size_t bytes, char seed) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  for (size_t i = 0; i < bytes; ++i) out.put(static_cast<char>(seed + i * 31 % 251));
}

std::string read(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

// The phases alone: small files, a large file cut into chunks handed out by the
// coordinator, a hard-link pair, a symlink, then a rerun that finds nothing to do.
TEST(CopyPhases, SoloSyncRunsEveryPhase) {
  test::TempDir tmp;
  const fs::path src = fs::path(tmp.path()) / "src", dst = fs::path(tmp.path()) / "dst";
  write(src / "a", 5000, 'a');
  write(src / "d/b", 1, 'b');
  write(src / "big", 3 * 65536 + 17, 'c');
  fs::create_hard_link(src / "a", src / "d/a-link");
  fs::create_symlink("a", src / "sym");
  auto comm = transport::make_solo_comm();
  SyncOptions opts;
  opts.copy.sources = {src.string()};
  opts.copy.destination = dst.string();
  opts.copy.chunk_bytes = 65536;
  opts.copy.memory_bytes = 4 * 65536;
  opts.copy.progress = ProgressMode::kNone;
  opts.copy.manifest_path = (fs::path(tmp.path()) / "M").string();
  SyncResult r = run_sync(opts, *comm);
  ASSERT_EQ(r.run.exit_code, kExitOk) << r.run.fatal;
  for (const char* f : {"a", "d/b", "big", "d/a-link"})
    EXPECT_EQ(read(dst / f), read(src / f)) << f;
  struct stat x {
  }, y{};
  ASSERT_EQ(::stat((dst / "a").c_str(), &x), 0);
  ASSERT_EQ(::stat((dst / "d/a-link").c_str(), &y), 0);
  EXPECT_EQ(x.st_ino, y.st_ino);
  EXPECT_EQ(fs::read_symlink(dst / "sym"), "a");
  EXPECT_EQ(r.run.files, 4u);
  EXPECT_EQ(r.run.bytes, 5000u + 1 + 3 * 65536 + 17);
  ASSERT_EQ(r.run.ranks.size(), 1u);
  EXPECT_NE(read(opts.copy.manifest_path).find("big"), std::string::npos);
  // Nothing left behind: no temporaries, no journal.
  for (const auto& e : fs::recursive_directory_iterator(tmp.path()))
    EXPECT_EQ(e.path().filename().string().find(".barge"), std::string::npos) << e.path();
  opts.copy.manifest_path.clear();
  SyncResult again = run_sync(opts, *comm);
  EXPECT_EQ(again.run.exit_code, kExitOk);
  EXPECT_EQ(again.run.bytes_transferred, 0u);
}

}  // namespace
}  // namespace barge::pipeline
