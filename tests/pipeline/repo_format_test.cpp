// Backup repository structures: round trips, and every decoder refusing damaged, truncated
// or forged input with an error instead of reading past it.
#include "pipeline/repo/repo_format.hpp"

#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>

#include "pipeline/repo/repository.hpp"
#include "tests/test_tmpdir.hpp"

namespace barge::pipeline::repo {
namespace {

SnapEntry dir(const std::string& path) {
  SnapEntry e;
  e.path = path;
  e.meta.type = io::FileType::kDirectory;
  e.meta.mode = 0755;
  return e;
}

SnapEntry file(const std::string& path, uint64_t size) {
  SnapEntry e;
  e.path = path;
  e.meta.type = io::FileType::kRegular;
  e.meta.mode = 0644;
  e.meta.size_bytes = size;
  e.meta.mtime = {1234567890, 123456789};
  e.meta.ctime = {1234567891, 5};
  return e;
}

Snapshot sample() {
  Snapshot s;
  s.id = new_snapshot_id(1700000000123456789);
  s.kind = SnapKind::kIncremental;
  s.parent = new_snapshot_id(1600000000000000000);
  s.base_full = s.parent;
  s.time_ns = 1700000000123456789;
  s.host = "node01";
  s.source = "/data/src";
  s.tag = "nightly";
  s.packs = {random_hex128(), random_hex128()};
  s.entries.push_back(dir(""));
  s.entries.push_back(dir("a"));
  SnapEntry f = file("a/f", 10000);
  BlobRef c;
  c.pack = 1;
  c.pack_offset = 32;
  c.raw_bytes = 10000;
  c.stored_bytes = 300;
  c.codec = Codec::kZstd;
  c.hash = {1, 2};
  f.chunks.push_back(c);
  f.xattrs = {{"user.k", std::string("v\0w", 3)}};
  s.entries.push_back(f);
  SnapEntry l = file("a/g", 10000);
  l.link_to = 2;
  s.entries.push_back(l);
  SnapEntry sl;
  sl.path = "a/link";
  sl.meta.type = io::FileType::kSymlink;
  sl.link_target = "../../etc/passwd";  // a symlink's target is data, never followed
  s.entries.push_back(sl);
  return s;
}

TEST(RepoFormat, SnapshotRoundTrip) {
  Snapshot s = sample();
  auto back = decode_snapshot(encode_snapshot(s));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->id, s.id);
  EXPECT_EQ(back->kind, SnapKind::kIncremental);
  EXPECT_EQ(back->parent, s.parent);
  EXPECT_EQ(back->tag, "nightly");
  ASSERT_EQ(back->entries.size(), s.entries.size());
  const SnapEntry& f = back->entries[2];
  EXPECT_EQ(f.path, "a/f");
  EXPECT_EQ(f.meta.mtime.tv_nsec, 123456789);
  EXPECT_EQ(f.meta.ctime.tv_sec, 1234567891);
  ASSERT_EQ(f.chunks.size(), 1u);
  EXPECT_EQ(f.chunks[0].stored_bytes, 300u);
  EXPECT_EQ(f.chunks[0].hash, (Hash128{1, 2}));
  EXPECT_EQ(f.xattrs[0].second, std::string("v\0w", 3));
  EXPECT_EQ(back->entries[3].link_to, 2u);
  EXPECT_EQ(back->entries[4].link_target, "../../etc/passwd");
}

TEST(RepoFormat, UnreadableCountRoundTripsInVersion2) {
  Snapshot s = sample();
  s.unreadable = 3;
  std::string bytes = encode_snapshot(s);
  uint32_t version;
  std::memcpy(&version, bytes.data() + 8, 4);
  EXPECT_EQ(version, kSnapshotVersion);
  auto back = decode_snapshot(bytes);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->unreadable, 3u);
}

// A manifest written by version 1 (no unreadable count) is still read, as complete.
TEST(RepoFormat, Version1ManifestsAreStillRead) {
  std::ifstream in(std::string(BARGE_SOURCE_DIR) + "/tests/fuzz/corpus/snapshot/seed1",
                   std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_GT(bytes.size(), kSnapshotHeaderBytes);
  ASSERT_EQ(bytes[8], 1) << "the fixture is not a version 1 manifest";
  auto s = decode_snapshot(bytes);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->unreadable, 0u);
  EXPECT_FALSE(s->entries.empty());
  auto again = decode_snapshot(encode_snapshot(*s));  // rewritten as version 2
  ASSERT_TRUE(again) << again.error().message;
  EXPECT_EQ(again->entries.size(), s->entries.size());
}

TEST(RepoFormat, EveryFlippedByteAndEveryTruncationIsRefused) {
  std::string good = encode_snapshot(sample());
  for (size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] = static_cast<char>(bad[i] ^ 0x40);
    EXPECT_FALSE(decode_snapshot(bad)) << "flip at " << i;
  }
  for (size_t n = 0; n < good.size(); ++n)
    EXPECT_FALSE(decode_snapshot(std::string_view(good).substr(0, n))) << "length " << n;
}

// A forged manifest (checksums recomputed by the forger) is still refused when its paths
// could lead outside the restore destination.
TEST(RepoFormat, ForgedPathsAreRefused) {
  for (const char* p : {"/etc/passwd", "../x", "a/../../x", "a/./f", "a//f", ".", "..", "a/"}) {
    Snapshot s = sample();
    s.entries.push_back(file(p, 0));
    std::sort(s.entries.begin() + 1, s.entries.end(),
              [](const SnapEntry& a, const SnapEntry& b) { return a.path < b.path; });
    auto r = decode_snapshot(encode_snapshot(s));
    EXPECT_FALSE(r) << p;
  }
  // Through a symlink of the snapshot, or a file, or a directory it does not describe.
  for (const char* p : {"a/link/f", "a/f/x", "b/f"}) {
    Snapshot s = sample();
    s.entries.push_back(file(p, 0));
    std::sort(s.entries.begin() + 1, s.entries.end(),
              [](const SnapEntry& a, const SnapEntry& b) { return a.path < b.path; });
    auto r = decode_snapshot(encode_snapshot(s));
    ASSERT_FALSE(r) << p;
    EXPECT_NE(r.error().message.find("not inside a directory"), std::string::npos) << p;
  }
}

TEST(RepoFormat, InconsistentEntriesAreRefused) {
  auto refused = [](auto&& change) {
    Snapshot s = sample();
    change(s);
    return !decode_snapshot(encode_snapshot(s));
  };
  EXPECT_TRUE(refused([](Snapshot& s) { std::swap(s.entries[1], s.entries[2]); }));
  EXPECT_TRUE(refused([](Snapshot& s) { s.entries[2].chunks[0].pack = 7; }));
  EXPECT_TRUE(refused([](Snapshot& s) { s.entries[2].chunks[0].raw_bytes = 10001; }));
  EXPECT_TRUE(refused([](Snapshot& s) { s.entries[2].chunks[0].raw_bytes = 0; }));
  EXPECT_TRUE(refused([](Snapshot& s) {
    s.entries[2].chunks[0].codec = Codec::kRaw;  // raw: stored must equal raw
  }));
  EXPECT_TRUE(refused([](Snapshot& s) { s.entries[3].link_to = 3; }));
  EXPECT_TRUE(refused([](Snapshot& s) { s.entries[3].link_to = 1; }));  // a directory
  EXPECT_TRUE(refused([](Snapshot& s) { s.entries[1].chunks = s.entries[2].chunks; }));
  EXPECT_TRUE(refused([](Snapshot& s) { s.packs[0] = "../../../etc"; }));
  EXPECT_TRUE(refused([](Snapshot& s) { s.id = "latest"; }));
  EXPECT_TRUE(refused([](Snapshot& s) {
    BlobRef c = s.entries[2].chunks[0];
    c.file_offset = 5000;  // overlaps the first chunk
    c.raw_bytes = 5000;
    s.entries[2].chunks.push_back(c);
  }));
}

TEST(RepoFormat, BlobHeaderRoundTripAndDamage) {
  BlobHeader h{Codec::kZstd, 4096, 100, {7, 9}};
  std::byte buf[kBlobHeaderBytes];
  encode_blob_header(h, std::span<std::byte, kBlobHeaderBytes>(buf));
  auto back = decode_blob_header(buf);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->raw_bytes, 4096u);
  EXPECT_EQ(back->hash, (Hash128{7, 9}));
  for (size_t i = 0; i < kBlobHeaderBytes; ++i) {
    std::byte bad[kBlobHeaderBytes];
    std::memcpy(bad, buf, sizeof bad);
    bad[i] ^= std::byte{1};
    EXPECT_FALSE(decode_blob_header(bad)) << i;
  }
  EXPECT_FALSE(decode_blob_header(std::span<const std::byte>(buf, kBlobHeaderBytes - 1)));
}

TEST(RepoFormat, PackHeaderNamesItsPack) {
  std::string name = random_hex128();
  std::string h = encode_pack_header(name);
  auto bytes = std::as_bytes(std::span(h));
  EXPECT_TRUE(check_pack_header(bytes, name));
  EXPECT_FALSE(check_pack_header(bytes, random_hex128()));
  EXPECT_FALSE(check_pack_header(bytes.first(10), name));
}

TEST(RepoFormat, ConfigRoundTripAndDamage) {
  Config c{random_hex128(), 4u << 20, 42};
  std::string b = encode_config(c);
  auto back = decode_config(b);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->repo_id, c.repo_id);
  EXPECT_EQ(back->chunk_bytes, 4u << 20);
  for (size_t i = 0; i < b.size(); ++i) {
    std::string bad = b;
    bad[i] = static_cast<char>(bad[i] ^ 2);
    EXPECT_FALSE(decode_config(bad)) << i;
  }
}

TEST(RepoFormat, SafePaths) {
  EXPECT_TRUE(is_safe_relative_path(""));
  EXPECT_TRUE(is_safe_relative_path("a/b c/.hidden/..x"));
  EXPECT_FALSE(is_safe_relative_path("/a"));
  EXPECT_FALSE(is_safe_relative_path("a/.."));
  EXPECT_FALSE(is_safe_relative_path(std::string("a\0b", 3)));
}

TEST(Repository, PacksRoundTripAndCorruptBlobsAreCaught) {
  test::TempDir tmp;
  auto r = Repository::open(tmp.path() + "/repo", true);
  ASSERT_TRUE(r) << r.error().message;
  std::vector<std::byte> raw(100000);
  for (size_t i = 0; i < raw.size(); ++i) raw[i] = static_cast<std::byte>(i % 251);
  BlobRef ref;
  ref.raw_bytes = static_cast<uint32_t>(raw.size());
  ref.stored_bytes = ref.raw_bytes;
  ref.hash = hash_bytes(raw);
  std::string pack;
  {
    PackWriter w(*r, 1 << 20);
    auto where = w.append(BlobHeader{Codec::kRaw, ref.raw_bytes, ref.stored_bytes, ref.hash}, raw);
    ASSERT_TRUE(where);
    ASSERT_TRUE(w.finish());
    pack = where->pack;
    ref.pack_offset = where->pack_offset;
  }
  std::string path = r->pack_path(pack);
  io::UniqueFd fd(::open(path.c_str(), O_RDWR));
  std::vector<std::byte> out(raw.size()), scratch;
  ASSERT_TRUE(read_blob(fd.get(), ref, out, scratch));
  EXPECT_EQ(out, raw);
  // one flipped byte in the payload
  char c;
  ASSERT_EQ(::pread(fd.get(), &c, 1, 5000), 1);
  c ^= 1;
  ASSERT_EQ(::pwrite(fd.get(), &c, 1, 5000), 1);
  auto st = read_blob(fd.get(), ref, out, scratch);
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message.find("checksum"), std::string::npos) << st.error().message;
  // truncated
  ASSERT_EQ(::ftruncate(fd.get(), 60000), 0);
  EXPECT_FALSE(read_blob(fd.get(), ref, out, scratch));
}

TEST(Repository, LockRefusesASecondWriterAndTakesOverAStaleOne) {
  test::TempDir tmp;
  auto r = Repository::open(tmp.path() + "/repo", true);
  ASSERT_TRUE(r);
  {
    auto first = RepoLock::acquire(r->path(), "backup");
    ASSERT_TRUE(first);
    auto second = RepoLock::acquire(r->path(), "backup");
    ASSERT_FALSE(second);
    EXPECT_NE(second.error().message.find("locked by barge backup"), std::string::npos)
        << second.error().message;
  }
  // a lock whose process is gone (same host)
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  { std::ofstream(r->path() + "/lock") << host << ' ' << child << " 1 backup\n"; }
  {
    auto taken = RepoLock::acquire(r->path(), "backup");
    EXPECT_TRUE(taken) << (taken ? "" : taken.error().message);
  }
  // ... or has exited and is not reaped yet (a zombie: a killed rank's lock)
  pid_t zombie = ::fork();
  if (zombie == 0) ::_exit(0);
  for (int k = 0; k < 200; ++k) {  // until it has exited (its state is Z)
    std::ifstream stat("/proc/" + std::to_string(zombie) + "/stat");
    std::string line;
    std::getline(stat, line);
    if (line.find(") Z") != std::string::npos) break;
    ::usleep(10000);
  }
  { std::ofstream(r->path() + "/lock") << host << ' ' << zombie << " 1 backup\n"; }
  auto taken = RepoLock::acquire(r->path(), "backup");
  EXPECT_TRUE(taken) << (taken ? "" : taken.error().message);
  ::waitpid(zombie, nullptr, 0);
}

TEST(Repository, ResolveTakesUniquePrefixesOfTheIdOrOfItsShortId) {
  test::TempDir tmp;
  auto r = Repository::open(tmp.path() + "/repo", true);
  ASSERT_TRUE(r);
  std::vector<std::string> ids;
  for (int i = 0; i < 3; ++i) {
    Snapshot s;
    s.id = new_snapshot_id(1700000000000000000 + i * 1000000000LL);
    s.entries.push_back(dir(""));
    ASSERT_TRUE(r->save_snapshot(s));
    ids.push_back(s.id);
  }
  for (const std::string& id : ids) {
    auto whole = r->resolve(id);
    ASSERT_TRUE(whole) << whole.error().message;
    EXPECT_EQ(*whole, id);
    auto short_id = r->resolve(id.substr(21));  // what the PARENT column shows
    ASSERT_TRUE(short_id) << short_id.error().message;
    EXPECT_EQ(*short_id, id);
  }
  auto latest = r->resolve("latest");
  ASSERT_TRUE(latest);
  EXPECT_EQ(*latest, ids.back());
  auto ambiguous = r->resolve("2023");
  ASSERT_FALSE(ambiguous);
  EXPECT_NE(ambiguous.error().message.find("ambiguous, matches 3 snapshots"), std::string::npos)
      << ambiguous.error().message;
  EXPECT_FALSE(r->resolve("zz"));
}

TEST(Repository, ALockHeldOnAnotherHostIsNamedAndNeverOfferedForRemoval) {
  test::TempDir tmp;
  auto r = Repository::open(tmp.path() + "/repo", true);
  ASSERT_TRUE(r);
  { std::ofstream(r->path() + "/lock") << "node17 4242 1700000000 backup\n"; }
  auto l = RepoLock::acquire(r->path(), "backup");
  ASSERT_FALSE(l);
  const std::string& m = l.error().message;
  EXPECT_NE(m.find("locked by barge backup on node17, pid 4242, since"), std::string::npos) << m;
  EXPECT_EQ(m.find("remove"), std::string::npos) << m;
  EXPECT_TRUE(std::ifstream(r->path() + "/lock").good()) << "a foreign lock was removed";
  // an empty lock (an earlier version's, never finished): named, once it is not being written
  { std::ofstream(r->path() + "/lock", std::ios::trunc); }
  struct timespec old_times[2] = {{1700000000, 0}, {1700000000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, (r->path() + "/lock").c_str(), old_times, 0), 0);
  auto empty = RepoLock::acquire(r->path(), "backup");
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message.find("holds no barge lock line"), std::string::npos)
      << empty.error().message;
}

TEST(Repository, ANewRepositoryKeepsACopyOfItsConfig) {
  test::TempDir tmp;
  auto r = Repository::open(tmp.path() + "/repo", true, 64 << 10);
  ASSERT_TRUE(r);
  std::ifstream a(r->path() + "/config", std::ios::binary),
      b(r->path() + "/config.bak", std::ios::binary);
  std::string config((std::istreambuf_iterator<char>(a)), std::istreambuf_iterator<char>());
  std::string copy((std::istreambuf_iterator<char>(b)), std::istreambuf_iterator<char>());
  EXPECT_EQ(config.size(), 48u);
  EXPECT_EQ(config, copy);
  // without a config, the error points at `barge repair`
  ASSERT_EQ(::unlink((r->path() + "/config").c_str()), 0);
  auto again = Repository::open(r->path(), false);
  ASSERT_FALSE(again);
  EXPECT_NE(again.error().message.find("barge repair"), std::string::npos) << again.error().message;
  auto create = Repository::open(r->path(), true);  // nor is it created over
  ASSERT_FALSE(create);
  EXPECT_NE(create.error().message.find("barge repair"), std::string::npos);
}

TEST(Repository, ANonRepositoryIsNeverTakenOver) {
  test::TempDir tmp;
  std::ofstream(tmp.path() + "/precious") << "data";
  auto r = Repository::open(tmp.path(), true);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("not empty"), std::string::npos);
}

}  // namespace
}  // namespace barge::pipeline::repo
