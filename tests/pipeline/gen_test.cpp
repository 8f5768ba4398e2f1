#include "pipeline/gen/gen.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "pipeline/core/hash.hpp"
#include "tests/test_tmpdir.hpp"

namespace barge::pipeline {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;

// The shared helper hands out a string; the tests join paths.
class TempDir {
 public:
  fs::path path() const { return dir_.path(); }

 private:
  test::TempDir dir_;
};

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary | std::ios::ate);
  std::string out(static_cast<size_t>(in.tellg()), '\0');
  in.seekg(0);
  in.read(out.data(), static_cast<std::streamsize>(out.size()));
  return out;
}

struct EntryInfo {
  char kind = '?';  // 'f', 'd', 'l'
  uint32_t mode = 0;
  int64_t mtime_ns = 0;
  uint64_t size_bytes = 0;
  std::string content;  // file bytes or link target
  friend bool operator==(const EntryInfo&, const EntryInfo&) = default;
};

// Everything a deterministic generator must reproduce, keyed by path relative to root
// (the root itself is "").
std::map<std::string, EntryInfo> snapshot(const fs::path& root) {
  std::map<std::string, EntryInfo> out;
  auto add = [&](const fs::path& p, const std::string& rel) {
    struct stat st {};
    EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
    EntryInfo e;
    e.mode = st.st_mode & 07777;
    e.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
    if (S_ISREG(st.st_mode)) {
      e.kind = 'f';
      e.size_bytes = static_cast<uint64_t>(st.st_size);
      e.content = read_all(p);
    } else if (S_ISDIR(st.st_mode)) {
      e.kind = 'd';
      if (rel.empty()) e.mode = 0;  // the root's mode is the caller's, not the generator's
    } else if (S_ISLNK(st.st_mode)) {
      e.kind = 'l';
      e.content = fs::read_symlink(p).string();
    }
    out[rel] = std::move(e);
  };
  add(root, "");
  for (const auto& de : fs::recursive_directory_iterator(root)) {
    add(de.path(), de.path().lexically_relative(root).string());
  }
  return out;
}

GenOptions options(const fs::path& dir, GenProfile profile, uint64_t total_bytes,
                   uint64_t seed = 1) {
  GenOptions o;
  o.dir = dir;
  o.profile = profile;
  o.total_bytes = total_bytes;
  o.seed = seed;
  return o;
}

GenResult gen_ok(const GenOptions& o) {
  auto r = run_gen(o);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
  return r.ok() ? r.value() : GenResult{};
}

double zstd3_ratio(const std::string& bytes) {
  std::string out(ZSTD_compressBound(bytes.size()), '\0');
  const size_t n = ZSTD_compress(out.data(), out.size(), bytes.data(), bytes.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  return static_cast<double>(n) / static_cast<double>(bytes.size());
}

TEST(GenProfileTest, ParsesNames) {
  EXPECT_EQ(parse_gen_profile("small"), GenProfile::kSmall);
  EXPECT_EQ(parse_gen_profile("large"), GenProfile::kLarge);
  EXPECT_EQ(parse_gen_profile("mixed"), GenProfile::kMixed);
  EXPECT_EQ(parse_gen_profile("Mixed"), std::nullopt);
  EXPECT_EQ(parse_gen_profile(""), std::nullopt);
  EXPECT_EQ(to_string(GenProfile::kLarge), "large");
}

TEST(GenOptionsTest, ValidateRejectsBadRanges) {
  GenOptions o = options("/tmp/x", GenProfile::kSmall, 0);
  EXPECT_FALSE(validate_gen_options(o).ok());
  o.total_bytes = 1;
  EXPECT_TRUE(validate_gen_options(o).ok());
  o.compressibility = 1.5;
  EXPECT_FALSE(validate_gen_options(o).ok());
  o.compressibility = -0.1;
  EXPECT_FALSE(validate_gen_options(o).ok());
}

TEST(GenPlanTest, SmallProfileCountsAndLayout) {
  const GenPlan plan = plan_gen(options("unused", GenProfile::kSmall, 1 * kGiB));
  // Mean ~10.1 KiB: 1 GiB is on the order of 100k files.
  EXPECT_GT(plan.files.size(), 80000u);
  EXPECT_LT(plan.files.size(), 130000u);
  uint64_t total = 0, empty = 0, max_bytes = 0;
  for (const auto& f : plan.files) {
    total += f.size_bytes;
    empty += f.size_bytes == 0;
    max_bytes = std::max(max_bytes, f.size_bytes);
  }
  EXPECT_EQ(total, 1 * kGiB);
  EXPECT_GT(empty, plan.files.size() / 100);  // ~2% empty files
  EXPECT_LT(max_bytes, 32 * kKiB);
  std::map<std::string, uint64_t> per_dir;
  for (uint64_t i = 0; i < plan.files.size(); ++i) {
    const fs::path p = plan.file_path(i);
    ASSERT_EQ(std::distance(p.begin(), p.end()), 3) << p;  // d000/d00/f...
    ++per_dir[p.parent_path().string()];
  }
  const std::set<std::string> planned(plan.dirs.begin(), plan.dirs.end());
  for (const auto& [dir, n] : per_dir) {
    EXPECT_LE(n, 1000u) << dir;
    EXPECT_TRUE(planned.count(dir)) << dir;
    EXPECT_TRUE(planned.count(fs::path(dir).parent_path().string())) << dir;
  }
}

TEST(GenPlanTest, LargeProfileSplitsInto2GiBFiles) {
  auto sizes = [](uint64_t total, uint64_t count = 0) {
    GenOptions o = options("unused", GenProfile::kLarge, total);
    o.file_count = count;
    std::vector<uint64_t> out;
    const GenPlan plan = plan_gen(o);
    for (const auto& f : plan.files) out.push_back(f.size_bytes);
    EXPECT_TRUE(plan.dirs.empty());
    return out;
  };
  EXPECT_EQ(sizes(8 * kGiB), (std::vector<uint64_t>{2 * kGiB, 2 * kGiB, 2 * kGiB, 2 * kGiB}));
  EXPECT_EQ(sizes(5 * kGiB), (std::vector<uint64_t>{2 * kGiB, 2 * kGiB, 1 * kGiB}));
  EXPECT_EQ(sizes(100 * kMiB), (std::vector<uint64_t>{100 * kMiB}));
  EXPECT_EQ(sizes(10, 3), (std::vector<uint64_t>{4, 3, 3}));
}

TEST(GenPlanTest, FileCountOverrideKeepsTotal) {
  for (GenProfile profile : {GenProfile::kSmall, GenProfile::kLarge, GenProfile::kMixed}) {
    for (uint64_t count : {1u, 2u, 5u, 1234u}) {
      GenOptions o = options("unused", profile, 300 * kMiB + 7);
      o.file_count = count;
      const GenPlan plan = plan_gen(o);
      uint64_t total = 0;
      for (const auto& f : plan.files) total += f.size_bytes;
      EXPECT_EQ(plan.files.size(), count) << to_string(profile);
      EXPECT_EQ(total, o.total_bytes) << to_string(profile);
    }
  }
}

TEST(GenPlanTest, MixedProfileHasClassesLinksAndVariedCompressibility) {
  GenOptions o = options("unused", GenProfile::kMixed, 4 * kGiB);
  o.compressibility = 0.5;
  const GenPlan plan = plan_gen(o);
  uint64_t small = 0, medium = 0, large = 0, total = 0;
  double weighted = 0;
  bool random_file = false, text_file = false;
  for (const auto& f : plan.files) {
    total += f.size_bytes;
    weighted += static_cast<double>(f.size_bytes) * f.compressibility;
    if (f.size_bytes < 1 * kMiB)
      small += f.size_bytes;
    else if (f.size_bytes < 256 * kMiB)
      medium += f.size_bytes;
    else
      large += f.size_bytes;
    random_file |= f.compressibility == 0.0;
    text_file |= f.compressibility == 1.0;
  }
  EXPECT_EQ(total, 4 * kGiB);
  EXPECT_NEAR(static_cast<double>(small) / total, 0.2, 0.02);
  EXPECT_GT(medium, 0u);
  EXPECT_GT(large, 0u);
  EXPECT_NEAR(weighted / static_cast<double>(total), 0.5, 0.01);
  EXPECT_TRUE(random_file);
  EXPECT_TRUE(text_file);
  EXPECT_GE(plan.symlinks.size(), 2u);
  EXPECT_NE(std::find(plan.dirs.begin(), plan.dirs.end(), "empty0"), plan.dirs.end());
}

TEST(GenTest, DeterministicTree) {
  TempDir tmp;
  GenOptions o = options(tmp.path() / "a", GenProfile::kMixed, 6 * kMiB, 42);
  o.compressibility = 0.4;
  o.threads = 2;
  const GenResult ra = gen_ok(o);
  o.dir = tmp.path() / "b";
  o.threads = 1;  // scheduling must not matter
  const GenResult rb = gen_ok(o);
  EXPECT_EQ(ra.files, rb.files);
  EXPECT_EQ(ra.bytes, 6 * kMiB);
  EXPECT_GE(ra.symlinks, 2u);

  const auto a = snapshot(tmp.path() / "a");
  const auto b = snapshot(tmp.path() / "b");
  EXPECT_EQ(a.size(), ra.files + ra.dirs + ra.symlinks + 1);
  ASSERT_EQ(a.size(), b.size());
  for (const auto& [rel, ea] : a) {
    auto it = b.find(rel);
    ASSERT_NE(it, b.end()) << rel;
    EXPECT_TRUE(ea == it->second) << rel;
  }
  // Mtimes carry nanoseconds, not just seconds.
  bool has_ns = false;
  for (const auto& [rel, e] : a) has_ns |= e.mtime_ns % 1000000000 != 0;
  EXPECT_TRUE(has_ns);
  // Symlinks are relative and land on regular files inside the tree.
  for (const auto& [rel, e] : a) {
    if (e.kind != 'l') continue;
    EXPECT_FALSE(fs::path(e.content).is_absolute()) << rel;
    const fs::path target = (fs::path(rel).parent_path() / e.content).lexically_normal();
    ASSERT_TRUE(a.count(target.string())) << rel << " -> " << e.content;
    EXPECT_EQ(a.at(target.string()).kind, 'f');
  }
  EXPECT_EQ(a.at("empty0").kind, 'd');
}

// Files above 64 MiB are written as parallel segments; the last one to finish stamps the file.
TEST(GenTest, DeterministicSegmentedFile) {
  TempDir tmp;
  GenOptions o = options(tmp.path() / "a", GenProfile::kLarge, 64 * kMiB + 100 * kKiB + 3, 9);
  o.compressibility = 0.25;
  o.threads = 2;
  gen_ok(o);
  o.dir = tmp.path() / "b";
  o.threads = 1;
  gen_ok(o);
  const auto a = snapshot(tmp.path() / "a");
  const auto b = snapshot(tmp.path() / "b");
  ASSERT_EQ(a.size(), 2u);  // root and one file
  const EntryInfo& fa = a.at("f000000");
  EXPECT_EQ(fa.size_bytes, o.total_bytes);
  EXPECT_EQ(fa.mode, 0644u);
  EXPECT_TRUE(fa == b.at("f000000"));
  // Both segments were generated, not left as a hole of zeros.
  EXPECT_NE(fa.content.substr(64 * kMiB, 4096), std::string(4096, '\0'));
  EXPECT_NE(fa.content.substr(0, 4096), std::string(4096, '\0'));
}

TEST(GenTest, DifferentSeedsDiffer) {
  TempDir tmp;
  GenOptions o = options(tmp.path() / "a", GenProfile::kLarge, 256 * kKiB, 1);
  gen_ok(o);
  o.dir = tmp.path() / "b";
  o.seed = 2;
  gen_ok(o);
  const auto a = snapshot(tmp.path() / "a");
  const auto b = snapshot(tmp.path() / "b");
  ASSERT_TRUE(a.count("f000000") && b.count("f000000"));
  EXPECT_EQ(a.at("f000000").size_bytes, b.at("f000000").size_bytes);
  EXPECT_NE(a.at("f000000").content, b.at("f000000").content);
  EXPECT_NE(a.at("f000000").mtime_ns, b.at("f000000").mtime_ns);
}

TEST(GenTest, SmallProfileOnDisk) {
  TempDir tmp;
  const GenResult r = gen_ok(options(tmp.path() / "s", GenProfile::kSmall, 2 * kMiB));
  const auto tree = snapshot(tmp.path() / "s");
  uint64_t files = 0, bytes = 0;
  std::map<std::string, uint64_t> per_dir;
  for (const auto& [rel, e] : tree) {
    if (e.kind != 'f') continue;
    ++files;
    bytes += e.size_bytes;
    ++per_dir[fs::path(rel).parent_path().string()];
    EXPECT_EQ(e.mode, 0644u) << rel;
  }
  EXPECT_EQ(files, r.files);
  EXPECT_EQ(bytes, 2 * kMiB);
  EXPECT_GT(files, 150u);  // 2 MiB / ~10 KiB
  EXPECT_LT(files, 260u);
  for (const auto& [dir, n] : per_dir) EXPECT_FALSE(dir.empty());
}

TEST(GenTest, CompressibilityMatchesZstd3) {
  for (double ratio : {0.0, 0.3, 0.5, 0.8, 1.0}) {
    TempDir tmp;
    GenOptions o = options(tmp.path() / "c", GenProfile::kLarge, 3 * kMiB + 12345);
    o.compressibility = ratio;
    gen_ok(o);
    const double got = zstd3_ratio(read_all(tmp.path() / "c" / "f000000"));
    EXPECT_NEAR(got, 1.0 - ratio, 0.05) << "R=" << ratio;
  }
}

TEST(GenTest, MixedTreeCompressibilityByBytes) {
  TempDir tmp;
  GenOptions o = options(tmp.path() / "m", GenProfile::kMixed, 8 * kMiB, 7);
  o.compressibility = 0.6;
  gen_ok(o);
  uint64_t raw = 0;
  double packed = 0;
  for (const auto& [rel, e] : snapshot(tmp.path() / "m")) {
    if (e.kind != 'f' || e.size_bytes == 0) continue;
    raw += e.size_bytes;
    packed += zstd3_ratio(e.content) * static_cast<double>(e.size_bytes);
  }
  EXPECT_NEAR(packed / static_cast<double>(raw), 0.4, 0.1);
}

// Counts 4 KiB blocks (at 4 KiB offsets) whose bytes also occur in another file.
uint64_t cross_file_duplicates(const fs::path& root) {
  std::map<std::pair<uint64_t, uint64_t>, std::string> owner;
  uint64_t dups = 0;
  for (const auto& [rel, e] : snapshot(root)) {
    if (e.kind != 'f') continue;
    for (size_t off = 0; off + 4 * kKiB <= e.content.size(); off += 4 * kKiB) {
      const Hash128 h = hash_bytes(std::as_bytes(std::span(e.content.data() + off, 4 * kKiB)));
      auto [it, inserted] = owner.try_emplace({h.high, h.low}, rel);
      if (!inserted && it->second != rel) ++dups;
    }
  }
  return dups;
}

TEST(GenTest, NotDedupableAcrossFiles) {
  for (double ratio : {0.0, 0.7}) {
    TempDir tmp;
    GenOptions o = options(tmp.path() / "n", GenProfile::kSmall, 3 * kMiB);
    o.compressibility = ratio;
    o.file_count = 40;  // ~77 KiB files: several 4 KiB blocks each, across 64 KiB blocks
    gen_ok(o);
    EXPECT_EQ(cross_file_duplicates(tmp.path() / "n"), 0u) << "R=" << ratio;
  }
}

TEST(GenTest, DedupableRepeatsBlocks) {
  TempDir tmp;
  GenOptions o = options(tmp.path() / "d", GenProfile::kLarge, 8 * kMiB);
  o.file_count = 8;
  o.dedupable = true;
  o.compressibility = 0.3;
  gen_ok(o);
  EXPECT_GT(cross_file_duplicates(tmp.path() / "d"), 100u);
}

TEST(GenTest, RefusesNonEmptyDir) {
  TempDir tmp;
  std::ofstream(tmp.path() / "keep") << "x";
  auto r = run_gen(options(tmp.path(), GenProfile::kSmall, 1 * kMiB));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(tmp.path().string()), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("not empty"), std::string::npos) << r.error().message;
  EXPECT_EQ(read_all(tmp.path() / "keep"), "x");
}

TEST(GenTest, ExistingEmptyDirIsUsed) {
  TempDir tmp;
  const GenResult r = gen_ok(options(tmp.path(), GenProfile::kLarge, 1000));
  EXPECT_EQ(r.files, 1u);
  EXPECT_EQ(fs::file_size(tmp.path() / "f000000"), 1000u);
}

TEST(GenTest, UnwritablePathReportsPathAndReason) {
  TempDir tmp;
  std::ofstream(tmp.path() / "file") << "x";
  // Works as root too: no permission bit can make a regular file a directory.
  const fs::path under_file = tmp.path() / "file" / "sub";
  auto r = run_gen(options(under_file, GenProfile::kSmall, 1 * kMiB));
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find(under_file.string()), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("Not a directory"), std::string::npos) << r.error().message;

  auto r2 = run_gen(options(tmp.path() / "file", GenProfile::kSmall, 1 * kMiB));
  ASSERT_FALSE(r2.ok());
  EXPECT_NE(r2.error().message.find("not a directory"), std::string::npos) << r2.error().message;
}

}  // namespace
}  // namespace barge::pipeline
