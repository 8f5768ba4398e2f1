// Integration tests for `barge copy`: the real binary (BARGE_BINARY) on real trees, checked
// by an independent walker (tests/integration/test_util.hpp) and cross-checked with rsync.
// Runs as root (ownership, tmpfs mounts); unprivileged cases drop to uid/gid 65534.
#include <gtest/gtest.h>
#include <linux/io_uring.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <xxhash.h>

#include <functional>
#include <nlohmann/json.hpp>
#include <set>

#include "tests/integration/test_util.hpp"

namespace barge::itest {
namespace {

constexpr size_t kKiB = 1024;
constexpr size_t kMiB = 1024 * 1024;
constexpr size_t kChunk = 64 * kKiB;  // every test that cuts chunks uses --chunk-size 64K
constexpr uid_t kNobody = 65534;

// ---------------------------------------------------------------------------------------
// Fixtures and helpers

std::string describe(const RunResult& r) {
  return "exit " + std::to_string(r.rc) + ", stderr:\n" + r.err +
         (r.out.empty() ? "" : "stdout:\n" + r.out);
}

std::vector<std::string> nonempty_lines(const std::string& text) {
  std::vector<std::string> out;
  for (auto& l : lines_of(text)) {
    if (!l.empty()) out.push_back(l);
  }
  return out;
}

nlohmann::json load_json(const std::string& path) {
  std::string text = read_all(path);
  if (text.empty()) throw std::runtime_error("report " + path + " is missing or empty");
  return nlohmann::json::parse(text);
}

// Every path below root (relative), with its type letter: a snapshot to show nothing was
// written.
std::set<std::string> snapshot(const std::string& root) {
  std::set<std::string> out;
  std::function<void(int, const std::string&)> rec = [&](int dirfd, const std::string& rel) {
    for (const std::string& n : list_names(dirfd)) {
      std::string path = rel.empty() ? n : rel + "/" + n;
      struct stat st;
      if (::fstatat(dirfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
      out.insert(path + (S_ISDIR(st.st_mode) ? "/" : ""));
      if (S_ISDIR(st.st_mode)) {
        int fd = ::openat(dirfd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd >= 0) {
          Fd owned(fd);
          rec(fd, path);
        }
      }
    }
  };
  Fd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.valid()) rec(fd.get(), "");
  return out;
}

void expect_trees_equal(const std::string& src, const std::string& dst, CompareOptions opts = {}) {
  TreeComparer cmp(opts);
  auto diffs = cmp.compare(src, dst);
  EXPECT_TRUE(diffs.empty()) << "trees differ (" << cmp.entries_compared()
                             << " entries compared):\n"
                             << join_lines(diffs);
  auto temps = find_temp_files(dst);
  EXPECT_TRUE(temps.empty()) << "temporary files left behind:\n" << join_lines(temps);
}

// rsync as a second opinion: with --checksum, ns mtimes, ACLs/xattrs, hard links, deletes.
void expect_rsync_clean(const std::string& src, const std::string& dst) {
  std::string rsync = find_program("rsync");
  if (rsync.empty()) {
    ADD_FAILURE() << "rsync is not installed (the cross-check needs it)";
    return;
  }
  auto r = run_command({rsync, "-aHAXn", "--delete", "--itemize-changes", "--modify-window=-1",
                        "--checksum", src + "/", dst + "/"});
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "") << "rsync sees differences between " << src << " and " << dst;
}

// An I/O backend choice: how it is requested, and what the report must then say.
struct BackendCase {
  std::string name;
  std::vector<std::string> args;
  std::vector<std::pair<std::string, std::string>> env;
  std::string expect_backend;  // "auto": io_uring where the kernel offers it, else pread/pwrite
};

const BackendCase kAuto{"auto", {}, {}, "auto"};

// What the automatic choice must pick here: io_uring when the kernel lets this process set
// up a ring (not disabled by sysctl, not filtered by seccomp), the fallback otherwise.
std::string auto_backend() {
  io_uring_params p{};
  long fd = ::syscall(__NR_io_uring_setup, 4, &p);
  if (fd < 0) return "pread/pwrite";
  ::close(static_cast<int>(fd));
  return "io_uring";
}
const BackendCase kUring{"uring", {"--io-backend", "uring"}, {}, "io_uring"};
const BackendCase kSyncFlag{"sync_flag", {"--io-backend", "sync"}, {}, "pread/pwrite"};
const BackendCase kSyncEnv{"sync_env", {}, {{"BARGE_IO_BACKEND", "sync"}}, "pread/pwrite"};

std::string backend_name(const testing::TestParamInfo<BackendCase>& info) {
  return info.param.name;
}
void PrintTo(const BackendCase& b, std::ostream* os) { *os << b.name; }

RunOptions options_for(const BackendCase& b) {
  RunOptions o;
  o.env = b.env;
  if (b.env.empty()) o.unset_env.push_back("BARGE_IO_BACKEND");
  return o;
}

// Runs barge copy with the backend's flags; skips when io_uring was forced and is missing.
RunResult copy_with(const BackendCase& b, std::vector<std::string> args) {
  args.insert(args.begin(), b.args.begin(), b.args.end());
  args.insert(args.begin(), "copy");
  return run_barge(args, options_for(b));
}

#define SKIP_IF_URING_MISSING(r)                                                    \
  do {                                                                              \
    if ((r).rc == 2 && (r).err.find("io_uring unavailable") != std::string::npos) { \
      GTEST_SKIP() << "io_uring is not available on this kernel: " << (r).err;      \
    }                                                                               \
  } while (0)

// A tree with every kind of entry barge copies, odd modes and owners, and distinct
// nanosecond mtimes on everything (directories stamped after their contents).
void build_rich_tree(const std::string& root) {
  make_dir(root, 0755);
  write_file(root + "/empty", "");
  write_file(root + "/hello.txt", "hello, barge\n");
  write_file(root + "/page-1", pattern_bytes(4095, 1));
  write_file(root + "/page", pattern_bytes(4096, 2));
  write_file(root + "/page+1", pattern_bytes(4097, 3));
  write_file(root + "/multi-chunk", pattern_bytes(3 * kChunk + 5, 4));
  write_file(root + "/mode000", "no permissions at all\n", 0000);
  write_file(root + "/mode444", "read only\n", 0444);
  write_file(root + "/mode600", "private\n", 0600);
  make_dir(root + "/a");
  make_dir(root + "/a/b");
  make_dir(root + "/a/b/c");
  write_file(root + "/a/b/c/leaf", pattern_bytes(12345, 5));
  write_file(root + "/a/top", pattern_bytes(100, 6));
  make_dir(root + "/empty-dir", 0711);
  make_dir(root + "/private-dir", 0700);
  write_file(root + "/private-dir/inside", "inside\n", 0640);
  make_dir(root + "/readonly-dir");
  write_file(root + "/readonly-dir/frozen", pattern_bytes(70000, 7));
  set_mode(root + "/readonly-dir", 0555);
  // Ownership before special bits: chown clears setuid/setgid.
  write_file(root + "/setuid", "#!/bin/sh\n", 0755);
  set_owner(root + "/setuid", 1234, 5678);
  set_mode(root + "/setuid", 04755);
  write_file(root + "/setgid", "x", 0755);
  set_owner(root + "/setgid", 0, 5678);
  set_mode(root + "/setgid", 02755);
  make_dir(root + "/sticky");
  set_owner(root + "/sticky", 1234, 5678);
  set_mode(root + "/sticky", 01777);
  make_dir(root + "/setgid-dir");
  set_owner(root + "/setgid-dir", 4321, 8765);
  set_mode(root + "/setgid-dir", 02775);
  write_file(root + "/setgid-dir/owned", pattern_bytes(5000, 8), 0664);
  set_owner(root + "/setgid-dir/owned", 1234, 5678);
  write_file(root + "/a/b/other-owner", "theirs\n", 0644);
  set_owner(root + "/a/b/other-owner", 4321, 0);
  // Symlinks: kept as links, never followed.
  make_symlink("a/b/c/leaf", root + "/rel-link");
  make_symlink("does/not/exist", root + "/dangling");
  make_symlink("/etc/passwd", root + "/absolute");
  make_symlink("self-loop", root + "/self-loop");
  make_symlink("loop-b", root + "/loop-a");
  make_symlink("loop-a", root + "/loop-b");
  make_symlink("a", root + "/dir-link");
  make_symlink("../..", root + "/a/b/up-link");
  make_symlink("hello.txt", root + "/owned-link");
  set_owner(root + "/owned-link", 1234, 5678);
  // Fifos.
  make_fifo(root + "/fifo", 0640);
  make_fifo(root + "/a/owned-fifo", 0600);
  set_owner(root + "/a/owned-fifo", 1234, 5678);
  set_owner(root + "/a", 1234, 5678);
  set_owner(root, 1234, 5678);
  stamp_times(root, 42);
}

// ---------------------------------------------------------------------------------------
// The main tree, once per backend

class CopyBackendTest : public testing::TestWithParam<BackendCase> {};

TEST_P(CopyBackendTest, RichTreeCopiedExactly) {
  TempDir t;
  build_rich_tree(t / "src");
  auto r = copy_with(GetParam(), {"-q", "--chunk-size", "64K", "--report", t / "report.json",
                                  t / "src", t / "dst"});
  SKIP_IF_URING_MISSING(r);
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(r.err, "") << "--quiet run printed something";
  expect_trees_equal(t / "src", t / "dst");
  expect_rsync_clean(t / "src", t / "dst");
  auto j = load_json(t / "report.json");
  EXPECT_EQ(j["exit_code"], 0);
  EXPECT_EQ(j["files"].get<uint64_t>(), regular_files(t / "src").size());
  uint64_t bytes = 0;
  for (auto& [p, s] : regular_files(t / "src")) bytes += s;
  EXPECT_EQ(j["bytes"].get<uint64_t>(), bytes);
  std::string want =
      GetParam().expect_backend == "auto" ? auto_backend() : GetParam().expect_backend;
  EXPECT_EQ(j["io_backend"], want);
}

// Chunk-boundary sizes and a file far larger than the memory bound (backpressure), with
// --verify and a checksum manifest.
TEST_P(CopyBackendTest, ChunkBoundariesAndBackpressure) {
  TempDir t;
  make_dir(t / "src");
  const std::vector<size_t> sizes = {0,           1, kChunk - 1, kChunk, kChunk + 1, 3 * kChunk + 5,
                                     5 * kMiB + 3};
  uint64_t total = 0;
  for (size_t s : sizes) {
    write_file(t / ("src/size-" + std::to_string(s)), pattern_bytes(s, s + 11));
    total += s;
  }
  stamp_times(t / "src", 7);
  auto r = copy_with(GetParam(), {"-q", "--chunk-size", "64K", "--memory", "1M", "--verify",
                                  "--report", t / "report.json", t / "src", t / "dst"});
  SKIP_IF_URING_MISSING(r);
  ASSERT_EQ(r.rc, 0) << describe(r);
  expect_trees_equal(t / "src", t / "dst");
  auto j = load_json(t / "report.json");
  EXPECT_EQ(j["bytes"].get<uint64_t>(), total);
  EXPECT_EQ(j["bytes_verified"].get<uint64_t>(), total)
      << "--verify must re-read every byte written";
  EXPECT_EQ(j["files"].get<uint64_t>(), sizes.size());
}

INSTANTIATE_TEST_SUITE_P(Backends, CopyBackendTest,
                         testing::Values(kAuto, kUring, kSyncFlag, kSyncEnv), backend_name);

// ---------------------------------------------------------------------------------------
// Placement (cp's rules)

TEST(CopyPlacement, MissingDestinationBecomesTheCopy) {
  TempDir t;
  build_rich_tree(t / "src");
  write_file(t / "file", pattern_bytes(777, 1), 0640);
  stamp_times(t / "file", 3);
  make_symlink("somewhere", t / "link");
  auto r = run_barge({"copy", "-q", t / "src", t / "dir-copy"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  auto r2 = run_barge({"copy", "-q", t / "file", t / "file-copy"});
  ASSERT_EQ(r2.rc, 0) << describe(r2);
  auto r3 = run_barge({"copy", "-q", t / "link", t / "link-copy"});
  ASSERT_EQ(r3.rc, 0) << describe(r3);
  expect_trees_equal(t / "src", t / "dir-copy");
  EXPECT_FALSE(exists(t / "dir-copy/src")) << "SRC must become DST, not land inside it";
  expect_trees_equal(t / "file", t / "file-copy");
  expect_trees_equal(t / "link", t / "link-copy");
}

TEST(CopyPlacement, ExistingDirectoryReceivesSourcesUnderTheirNames) {
  TempDir t;
  build_rich_tree(t / "src");
  write_file(t / "file", pattern_bytes(5000, 2));
  make_symlink("dangling-target", t / "link");
  make_fifo(t / "pipe");
  make_dir(t / "dst");
  write_file(t / "dst/already-there", "keep me\n");
  auto r = run_barge({"copy", "-q", t / "src", t / "file", t / "link", t / "pipe", t / "dst"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(list_names(t / "dst"),
            (std::vector<std::string>{"already-there", "file", "link", "pipe", "src"}));
  expect_trees_equal(t / "src", t / "dst/src");
  expect_trees_equal(t / "file", t / "dst/file");
  expect_trees_equal(t / "link", t / "dst/link");
  expect_trees_equal(t / "pipe", t / "dst/pipe");
  EXPECT_EQ(read_file(t / "dst/already-there"), "keep me\n");
  // A trailing slash on DST changes nothing.
  make_dir(t / "dst2");
  auto r2 = run_barge({"copy", "-q", t / "src/", t / "dst2/"});
  ASSERT_EQ(r2.rc, 0) << describe(r2);
  expect_trees_equal(t / "src", t / "dst2/src");
}

TEST(CopyPlacement, RerunOverwritesChangedFilesAndKeepsOthers) {
  TempDir t;
  build_rich_tree(t / "src");
  make_dir(t / "dst");
  auto r = run_barge({"copy", "-q", t / "src", t / "dst"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  // Damage the copy: different content, a read-only destination file, a replaced link.
  write_file(t / "dst/src/hello.txt", "changed and longer than before\n", 0400);
  write_file(t / "dst/src/a/b/c/leaf", "short");
  ::unlink((t / "dst/src/dangling").c_str());
  make_symlink("elsewhere", t / "dst/src/dangling");
  write_file(t / "dst/src/extra", "not in the source\n");
  auto r2 = run_barge({"copy", "-q", "--chunk-size", "64K", t / "src", t / "dst"});
  ASSERT_EQ(r2.rc, 0) << describe(r2);
  ASSERT_EQ(::unlink((t / "dst/src/extra").c_str()), 0)
      << "files only in DST are kept (cp semantics)";
  // The unlink touched the directory's mtime; compare everything but that one.
  TreeComparer cmp;
  auto diffs = cmp.compare(t / "src", t / "dst/src");
  diffs.erase(
      std::remove_if(diffs.begin(), diffs.end(),
                     [&](const std::string& d) { return d.rfind(t / "dst/src: mtime", 0) == 0; }),
      diffs.end());
  EXPECT_TRUE(diffs.empty()) << join_lines(diffs);
  EXPECT_TRUE(find_temp_files(t / "dst").empty());
}

// `cp -a SRC/. DST` (and `cp -a . DST` inside SRC) copies the *contents* of SRC into an
// existing DST: the idiom for merging a tree into a directory.
TEST(CopyPlacement, DotSourceCopiesContentsIntoExistingDirectory) {
  TempDir t;
  build_rich_tree(t / "src");
  make_dir(t / "into1");
  make_dir(t / "into2");
  auto r = run_barge({"copy", "-q", t / "src/.", t / "into1"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  RunOptions in_src;
  in_src.cwd = t / "src";
  auto r2 = run_barge({"copy", "-q", ".", "../into2"}, in_src);
  ASSERT_EQ(r2.rc, 0) << describe(r2);
  for (const char* into : {"into1", "into2"}) {
    EXPECT_FALSE(exists(t / (std::string(into) + "/src")))
        << into << ": contents went into a subdirectory";
    EXPECT_EQ(list_names(t / into), list_names(t / "src")) << into;
    for (const auto& name : list_names(t / "src")) {
      TreeComparer cmp;
      auto diffs = cmp.compare(t / ("src/" + name), t / (std::string(into) + "/" + name));
      EXPECT_TRUE(diffs.empty()) << join_lines(diffs);
      if (!diffs.empty()) break;
    }
  }
}

// A directory SRC onto a missing DST given with a trailing slash creates DST (as cp does).
TEST(CopyPlacement, DirectoryOntoMissingDestinationWithTrailingSlash) {
  TempDir t;
  build_rich_tree(t / "src");
  auto r = run_barge({"copy", "-q", t / "src", t / "newdir/"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  expect_trees_equal(t / "src", t / "newdir");
}

// ---------------------------------------------------------------------------------------
// Hard names and shapes

TEST(CopyNames, SpacesNewlinesNonUtf8AndLongComponents) {
  TempDir t;
  std::string src = t / "src";
  make_dir(src);
  const std::string long_name(255, 'n');
  const std::vector<std::string> names = {
      "with space",        "new\nline",         "tab\there",       "bad\xff\xfe utf8",
      "\xc3\xa9t\xc3\xa9", "-starts-with-dash", "back\\slash",     ".hidden",
      "*?[glob]",          long_name,           "carriage\rreturn"};
  uint64_t seed = 100;
  for (const auto& n : names) {
    write_file(src + "/" + n, pattern_bytes(seed * 37, seed), 0644);
    ++seed;
  }
  const std::string long_dir(255, 'd');
  make_dir(src + "/" + long_dir);
  make_dir(src + "/" + long_dir + "/dir with\nnewline\xff");
  write_file(src + "/" + long_dir + "/dir with\nnewline\xff/" + std::string(255, 'f'),
             pattern_bytes(2 * kChunk + 1, 9));
  make_symlink(long_name, src + "/" + std::string(255, 'l'));
  make_symlink("target\nwith newline \xff", src + "/odd target link");
  make_symlink(std::string(4000, 'x'), src + "/long target link");
  make_fifo(src + "/fifo \xfe\nname");
  stamp_times(src, 5);
  auto r = run_barge({"copy", "-q", "--chunk-size", "64K", src, t / "dst"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  expect_trees_equal(src, t / "dst");
  expect_rsync_clean(src, t / "dst");
}

// Depth 300 with 20-byte names: full paths exceed PATH_MAX (4096) several times over.
TEST(CopyShapes, DeepTreeBeyondPathMax) {
  TempDir t;
  make_dir(t / "src");
  {
    Fd cur(::open((t / "src").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_TRUE(cur.valid());
    for (int depth = 0; depth < 300; ++depth) {
      char name[32];
      std::snprintf(name, sizeof name, "level-%014d", depth);  // 20 bytes
      ASSERT_EQ(::mkdirat(cur.get(), name, 0755), 0) << errno_text("mkdirat");
      if (depth % 37 == 0) write_file_at(cur.get(), "file", pattern_bytes(depth * 100 + 1, depth));
      cur = open_dir_at(cur.get(), name);
    }
    write_file_at(cur.get(), std::string(255, 'z'), pattern_bytes(3 * kChunk + 5, 77), 0600);
    write_file_at(cur.get(), "empty", "");
    ASSERT_EQ(::symlinkat("../../file-up-there", cur.get(), "link"), 0);
    ASSERT_EQ(::mkfifoat(cur.get(), "fifo", 0644), 0);
    ASSERT_EQ(::fchownat(cur.get(), "empty", 1234, 5678, 0), 0);
  }
  stamp_times(t / "src", 300);
  auto r = run_barge({"copy", "-q", "--chunk-size", "64K", t / "src", t / "dst"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  TreeComparer cmp;
  auto diffs = cmp.compare(t / "src", t / "dst");
  EXPECT_TRUE(diffs.empty()) << join_lines(diffs);
  EXPECT_GE(cmp.entries_compared(), 300u + 4u);
  EXPECT_TRUE(find_temp_files(t / "dst").empty());
}

TEST(CopyShapes, ManySmallFilesInManyDirectories) {
  TempDir t;
  make_dir(t / "src");
  const size_t sizes[] = {0, 1, 100, 4095, 4096, 4097, 20000};
  for (int d = 0; d < 20; ++d) {
    std::string dir = t / ("src/d" + std::to_string(d));
    make_dir(dir);
    make_dir(dir + "/sub");
    for (int i = 0; i < 60; ++i) {
      std::string p = dir + (i % 3 ? "/" : "/sub/") + "f" + std::to_string(i);
      write_file(p, pattern_bytes(sizes[(d + i) % 7], d * 1000 + i));
    }
  }
  stamp_times(t / "src", 9);
  auto r = run_barge({"copy", "-q", "--chunk-size", "64K", "--threads", "3", t / "src", t / "dst"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  expect_trees_equal(t / "src", t / "dst");
}

// ---------------------------------------------------------------------------------------
// Report, manifest, summary line

TEST(CopyReport, VerifyReportHasTheDocumentedKeys) {
  TempDir t;
  build_rich_tree(t / "src");
  auto r = run_barge({"copy", "-q", "--verify", "--chunk-size", "64K", "--report",
                      t / "report.json", t / "src", t / "dst"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  expect_trees_equal(t / "src", t / "dst");
  auto j = load_json(t / "report.json");
  for (const char* key : {"bytes", "files", "seconds", "rates", "stage_busy_seconds", "errors",
                          "exit_code", "io_backend", "bytes_verified"}) {
    EXPECT_TRUE(j.contains(key)) << "report lacks '" << key << "': " << j.dump();
  }
  uint64_t bytes = 0;
  for (auto& [p, s] : regular_files(t / "src")) bytes += s;
  EXPECT_EQ(j["bytes"].get<uint64_t>(), bytes);
  EXPECT_EQ(j["bytes_verified"].get<uint64_t>(), bytes);
  EXPECT_EQ(j["files"].get<uint64_t>(), regular_files(t / "src").size());
  EXPECT_EQ(j["exit_code"], 0);
  EXPECT_TRUE(j["errors"].is_array() && j["errors"].empty());
  EXPECT_GT(j["seconds"].get<double>(), 0.0);
  EXPECT_LT(j["seconds"].get<double>(), 600.0);
  EXPECT_TRUE(j["rates"].is_object());
  EXPECT_TRUE(j["stage_busy_seconds"].is_object());
  EXPECT_TRUE(j["stage_busy_seconds"].contains("verify"));
  EXPECT_FALSE(exists(t / "report.json.tmp"));
}

std::string xxh128_hex(const std::string& bytes) {
  XXH128_hash_t h = XXH3_128bits(bytes.data(), bytes.size());
  XXH128_canonical_t c;
  XXH128_canonicalFromHash(&c, h);
  std::string out;
  char buf[3];
  for (unsigned char b : c.digest) {
    std::snprintf(buf, sizeof buf, "%02x", b);
    out += buf;
  }
  return out;
}

// The manifest lists every regular file once with the XXH3-128 of its content, computed
// here independently with libxxhash.
TEST(CopyReport, ChecksumManifestMatchesContent) {
  TempDir t;
  make_dir(t / "src");
  make_dir(t / "src/sub");
  std::map<std::string, std::string> files = {{"a", pattern_bytes(0, 1)},
                                              {"b c", pattern_bytes(kChunk + 1, 2)},
                                              {"sub/big", pattern_bytes(2 * kMiB + 7, 3)},
                                              {"sub/page", pattern_bytes(4096, 4)}};
  for (auto& [p, b] : files) write_file(t / ("src/" + p), b);
  make_symlink("a", t / "src/link");
  make_dir(t / "dst");
  auto r = run_barge({"copy", "-q", "--chunk-size", "64K", "--memory", "512K",
                      "--checksum-manifest", t / "manifest", t / "src", t / "dst"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  expect_trees_equal(t / "src", t / "dst/src");
  std::map<std::string, std::string> listed;
  for (const auto& line : lines_of(read_file(t / "manifest"))) {
    if (line.empty() || line[0] == '#') continue;
    auto sep = line.find("  ");
    ASSERT_NE(sep, std::string::npos) << "bad manifest line: " << line;
    EXPECT_TRUE(listed.emplace(line.substr(sep + 2), line.substr(0, sep)).second)
        << "listed twice: " << line;
  }
  std::map<std::string, std::string> expected;
  // DST existed, so paths are relative to DST and start with the source's name.
  for (auto& [p, b] : files) expected["src/" + p] = xxh128_hex(b);
  EXPECT_EQ(listed, expected);
}

TEST(CopyOutput, SummaryLineWithoutQuietWhenStderrIsNotATty) {
  TempDir t;
  build_rich_tree(t / "src");
  auto r = run_barge({"copy", t / "src", t / "dst"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  auto lines = nonempty_lines(r.err);
  ASSERT_FALSE(lines.empty()) << "no summary line on stderr";
  const std::string& last = lines.back();
  EXPECT_EQ(last.rfind("barge: copy: ", 0), 0u) << last;
  std::string files = std::to_string(regular_files(t / "src").size()) + " files";
  EXPECT_NE(last.find(files), std::string::npos)
      << "summary should count " << files << ": " << last;
  EXPECT_EQ(r.err.find('\r'), std::string::npos) << "TTY control codes written to a non-TTY";
  EXPECT_EQ(r.err.find("\033["), std::string::npos) << "TTY control codes written to a non-TTY";
  EXPECT_EQ(r.out, "");
}

TEST(CopyOutput, QuietPrintsNothingOnSuccess) {
  TempDir t;
  build_rich_tree(t / "src");
  auto r = run_barge({"copy", "--quiet", "--verify", t / "src", t / "dst"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out, "");
  auto r2 = run_barge({"copy", "--progress", "none", "-q", t / "src", t / "dst2"});
  ASSERT_EQ(r2.rc, 0) << describe(r2);
  EXPECT_EQ(r2.err, "");
  expect_trees_equal(t / "src", t / "dst");
}

// ---------------------------------------------------------------------------------------
// Bad input: one line naming the problem, exit 2, nothing written

struct UsageCase {
  std::string name;
  // Prepares the case under `dir`; returns barge's arguments after "copy".
  std::function<std::vector<std::string>(const std::string& dir)> setup;
  std::vector<std::string> stderr_must_contain;  // "{dir}" is replaced by the temp dir
  std::optional<uid_t> as_uid = std::nullopt;
};

void PrintTo(const UsageCase& c, std::ostream* os) { *os << c.name; }

std::string expand(std::string s, const std::string& dir) {
  auto pos = s.find("{dir}");
  if (pos != std::string::npos) s.replace(pos, 5, dir);
  return s;
}

class CopyUsageTest : public testing::TestWithParam<UsageCase> {
 protected:
  // Prepares the case in `t`, runs barge, and checks exit code, message and that nothing was
  // written; returns the run for further checks.
  RunResult run_case(const TempDir& t) {
    if (::chmod(t.path().c_str(), 0755) != 0) throw std::runtime_error(errno_text("chmod"));
    make_dir(t / "src");
    write_file(t / "src/f", "data\n");
    make_dir(t / "src/sub");
    write_file(t / "file", "existing file\n");
    make_dir(t / "out", 0777);
    const UsageCase& c = GetParam();
    std::vector<std::string> args = c.setup(t.path());
    auto before = snapshot(t.path());
    std::string file_before = read_file(t / "file");
    args.insert(args.begin(), "copy");
    RunOptions o;
    o.as_uid = c.as_uid;
    auto r = run_barge(args, o);
    EXPECT_EQ(r.rc, 2) << describe(r);
    EXPECT_NE(r.err, "") << "no message at all";
    for (const auto& s : c.stderr_must_contain) {
      EXPECT_NE(r.err.find(expand(s, t.path())), std::string::npos)
          << "stderr should mention '" << expand(s, t.path()) << "':\n"
          << r.err;
    }
    EXPECT_EQ(snapshot(t.path()), before) << "a usage error must write nothing";
    EXPECT_EQ(read_file(t / "file"), file_before);
    return r;
  }
};

TEST_P(CopyUsageTest, ExitsTwoNamesTheProblemAndWritesNothing) {
  TempDir t;
  run_case(t);
}

// The issue asks for one clear line: no summary or progress after the error.
TEST_P(CopyUsageTest, PrintsExactlyOneLine) {
  TempDir t;
  auto r = run_case(t);
  EXPECT_EQ(nonempty_lines(r.err).size(), 1u) << "expected exactly one line on stderr, got:\n"
                                              << r.err;
}

const UsageCase kUsageCases[] = {
    {"missing_source",
     [](const std::string& d) {
       return std::vector<std::string>{d + "/nope", d + "/dst"};
     },
     {"{dir}/nope", "No such file"},
     std::nullopt},
    {"one_of_several_sources_missing",
     [](const std::string& d) {
       return std::vector<std::string>{d + "/src", d + "/nope", d + "/out"};
     },
     {"{dir}/nope"},
     std::nullopt},
    {"unreadable_source_directory",
     [](const std::string& d) {
       make_dir(d + "/locked", 0700);
       write_file(d + "/locked/secret", "s");
       return std::vector<std::string>{d + "/locked", d + "/out/dst"};
     },
     {"{dir}/locked", "Permission denied"},
     kNobody},
    {"unreadable_source_file",
     [](const std::string& d) {
       write_file(d + "/secret", "s", 0600);
       return std::vector<std::string>{d + "/secret", d + "/out/dst"};
     },
     {"{dir}/secret", "Permission denied"},
     kNobody},
    {"destination_inside_source",
     [](const std::string& d) {
       return std::vector<std::string>{d + "/src", d + "/src/sub/new"};
     },
     {"{dir}/src"},
     std::nullopt},
    {"destination_is_source",
     [](const std::string& d) {
       return std::vector<std::string>{d + "/src", d};
     },
     {"{dir}/src"},
     std::nullopt},
    {"destination_inside_source_via_symlink",
     [](const std::string& d) {
       make_symlink(d + "/src/sub", d + "/alias");
       return std::vector<std::string>{d + "/src", d + "/alias/new"};
     },
     {"{dir}/src"},
     std::nullopt},
    {"directory_onto_existing_file",
     [](const std::string& d) {
       return std::vector<std::string>{d + "/src", d + "/file"};
     },
     {"{dir}/file"},
     std::nullopt},
    {"several_sources_onto_missing_destination",
     [](const std::string& d) {
       return std::vector<std::string>{d + "/src", d + "/file", d + "/newdir"};
     },
     {"{dir}/newdir"},
     std::nullopt},
    {"several_sources_onto_file",
     [](const std::string& d) {
       return std::vector<std::string>{d + "/src", d + "/src/f", d + "/file"};
     },
     {"{dir}/file"},
     std::nullopt},
    {"destination_parent_missing",
     [](const std::string& d) {
       return std::vector<std::string>{d + "/src", d + "/no/such/dst"};
     },
     {"{dir}/no/such"},
     std::nullopt},
    // A trailing slash says DST must be a directory (cp: "Not a directory").
    {"file_onto_file_with_trailing_slash",
     [](const std::string& d) {
       return std::vector<std::string>{d + "/src/f", d + "/file/"};
     },
     {"{dir}/file"},
     std::nullopt},
    {"file_onto_missing_destination_with_trailing_slash",
     [](const std::string& d) {
       return std::vector<std::string>{d + "/src/f", d + "/newname/"};
     },
     {"{dir}/newname"},
     std::nullopt},
    {"unknown_flag",
     [](const std::string& d) {
       return std::vector<std::string>{"--frobnicate", d + "/src", d + "/dst"};
     },
     {"--frobnicate"},
     std::nullopt},
    {"memory_not_a_size",
     [](const std::string& d) {
       return std::vector<std::string>{"--memory", "abc", d + "/src", d + "/dst"};
     },
     {"--memory", "abc"},
     std::nullopt},
    {"chunk_size_zero",
     [](const std::string& d) {
       return std::vector<std::string>{"--chunk-size", "0", d + "/src", d + "/dst"};
     },
     {"--chunk-size"},
     std::nullopt},
    {"chunk_size_not_a_multiple_of_4k",
     [](const std::string& d) {
       return std::vector<std::string>{"--chunk-size", "5000", d + "/src", d + "/dst"};
     },
     {"--chunk-size"},
     std::nullopt},
    {"memory_smaller_than_two_chunks",
     [](const std::string& d) {
       return std::vector<std::string>{"--memory", "1K", d + "/src", d + "/dst"};
     },
     {"--memory"},
     std::nullopt},
    {"only_one_path",
     [](const std::string& d) { return std::vector<std::string>{d + "/src"}; },
     {},
     std::nullopt},
};

INSTANTIATE_TEST_SUITE_P(BadInput, CopyUsageTest, testing::ValuesIn(kUsageCases),
                         [](const testing::TestParamInfo<UsageCase>& i) { return i.param.name; });

// ---------------------------------------------------------------------------------------
// Per-entry failures: the rest is copied, the bad ones are named, exit 1

TEST(CopyFailures, UnreadableEntriesAreNamedAndTheRestIsCopied) {
  // As root, permissions never block a read: run barge as nobody on a tree nobody owns,
  // with one file and one directory chmod 000.
  TempDir t;
  ASSERT_EQ(::chmod(t.path().c_str(), 0777), 0);
  std::string src = t / "src";
  make_dir(src);
  make_dir(src + "/sub");
  make_dir(src + "/closed");
  write_file(src + "/a", pattern_bytes(3000, 1));
  write_file(src + "/sub/b", pattern_bytes(kChunk * 2 + 9, 2));
  write_file(src + "/sub/bad", "secret\n");
  write_file(src + "/sub/bad-big", pattern_bytes(kChunk * 3, 3));
  write_file(src + "/closed/c", "hidden\n");
  write_file(src + "/z-after", "after\n");
  walk_post_order(Fd(::open(src.c_str(), O_RDONLY | O_DIRECTORY)).get(),
                  [](int dirfd, const std::string& name, const struct stat&) {
                    ASSERT_EQ(
                        ::fchownat(dirfd, name.c_str(), kNobody, kNobody, AT_SYMLINK_NOFOLLOW), 0);
                  });
  set_owner(src, kNobody, kNobody);
  set_mode(src + "/sub/bad", 0);
  set_mode(src + "/sub/bad-big", 0);
  set_mode(src + "/closed", 0);
  // Confirm the setup really is unreadable for nobody.
  auto probe =
      run_command({find_program("cat"), src + "/sub/bad"}, RunOptions{{}, {}, kNobody, {}, 30});
  ASSERT_NE(probe.rc, 0) << "nobody can read a mode-000 file: the test setup does not work here";

  RunOptions o;
  o.as_uid = kNobody;
  auto r =
      run_barge({"copy", "--chunk-size", "64K", "--report", t / "report.json", src, t / "dst"}, o);
  EXPECT_EQ(r.rc, 1) << describe(r);
  EXPECT_NE(r.err.find(src + "/sub/bad:"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(src + "/sub/bad-big"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(src + "/closed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("Permission denied"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(t / "dst/a"), read_file(src + "/a"));
  EXPECT_EQ(read_file(t / "dst/sub/b"), read_file(src + "/sub/b"));
  EXPECT_EQ(read_file(t / "dst/z-after"), "after\n");
  EXPECT_FALSE(exists(t / "dst/sub/bad"));
  EXPECT_FALSE(exists(t / "dst/sub/bad-big"));
  EXPECT_TRUE(find_temp_files(t / "dst").empty()) << join_lines(find_temp_files(t / "dst"));
  auto j = load_json(t / "report.json");
  EXPECT_EQ(j["exit_code"], 1);
  EXPECT_EQ(j["errors"].size(), 3u) << j["errors"].dump();
  EXPECT_EQ(j["files"], 3);
}

// Inside an existing destination, an entry of the wrong type is not overwritten, and a
// symlink where a directory should be is never followed out of the destination.
TEST(CopyFailures, TypeConflictsInsideTheDestination) {
  TempDir t;
  make_dir(t / "src");
  make_dir(t / "src/was-dir");
  write_file(t / "src/was-dir/inner", "inner\n");
  make_dir(t / "src/escape");
  write_file(t / "src/escape/payload", "payload\n");
  write_file(t / "src/was-file", "file\n");
  write_file(t / "src/fine", "fine\n");
  make_dir(t / "outside");
  make_dir(t / "dst");
  make_dir(t / "dst/src");
  write_file(t / "dst/src/was-dir", "a file where the source has a directory\n");
  make_symlink(t / "outside", t / "dst/src/escape");
  make_dir(t / "dst/src/was-file");
  write_file(t / "dst/src/was-file/keep", "keep\n");
  auto r = run_barge({"copy", "-q", t / "src", t / "dst"});
  EXPECT_EQ(r.rc, 1) << describe(r);
  EXPECT_NE(r.err.find(t / "dst/src/was-dir"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(t / "dst/src/escape"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(t / "dst/src/was-file"), std::string::npos) << r.err;
  EXPECT_TRUE(list_names(t / "outside").empty())
      << "barge followed a symlink out of the destination";
  EXPECT_EQ(read_file(t / "dst/src/was-file/keep"), "keep\n");
  EXPECT_EQ(read_file(t / "dst/src/fine"), "fine\n");
  EXPECT_TRUE(find_temp_files(t / "dst").empty()) << join_lines(find_temp_files(t / "dst"));
}

// ---------------------------------------------------------------------------------------
// Destination full

struct FullSource {
  uint64_t bytes = 0;
};

// About 11 MiB: a 3 MiB file, forty 200 KiB files (each several 64K chunks) and small ones.
FullSource build_full_source(const std::string& src) {
  FullSource fs;
  make_dir(src);
  make_dir(src + "/sub");
  auto add = [&](const std::string& p, size_t n, uint64_t seed) {
    write_file(src + "/" + p, pattern_bytes(n, seed));
    fs.bytes += n;
  };
  add("big", 3 * kMiB + 1, 1);
  for (int i = 0; i < 40; ++i)
    add("f" + std::to_string(100 + i), 200 * kKiB + static_cast<size_t>(i), 10 + i);
  for (int i = 0; i < 50; ++i)
    add("sub/s" + std::to_string(100 + i), 10000 + static_cast<size_t>(i), 100 + i);
  make_symlink("big", src + "/link");
  stamp_times(src, 11);
  return fs;
}

class CopyFullTest : public testing::TestWithParam<BackendCase> {};

TEST_P(CopyFullTest, StopsCleanlyAndARerunCompletes) {
  TempDir t;
  FullSource fs = build_full_source(t / "src");
  ASSERT_GT(fs.bytes, 10 * kMiB);
  make_dir(t / "mnt");
  TmpfsMount mount;
  if (auto why = mount.mount(t / "mnt", "8m"); !why.empty())
    GTEST_SKIP() << "cannot mount a tmpfs: " << why;

  auto r = copy_with(GetParam(), {"--chunk-size", "64K", "--memory", "1M", "--report",
                                  t / "report.json", t / "src", t / "mnt"});
  SKIP_IF_URING_MISSING(r);
  EXPECT_TRUE(r.rc == 1 || r.rc == 2)
      << "a full destination stops the run with a non-zero exit: " << describe(r);
  EXPECT_NE(r.err.find("No space left on device"), std::string::npos) << r.err;
  // Nothing under a final name is incomplete; nothing temporary remains.
  auto copied = regular_files(t / "mnt/src");
  EXPECT_FALSE(copied.empty()) << "nothing at all was copied before the disk filled";
  EXPECT_LT(copied.size(), regular_files(t / "src").size())
      << "everything fit: the test did not fill the disk";
  for (auto& [p, size] : copied) {
    EXPECT_EQ(read_file(t / ("mnt/src/" + p)), read_file(t / ("src/" + p)))
        << "incomplete file under final name: " << p;
  }
  EXPECT_TRUE(find_temp_files(t / "mnt").empty()) << join_lines(find_temp_files(t / "mnt"));
  auto j = load_json(t / "report.json");
  EXPECT_EQ(j["exit_code"], r.rc);
  EXPECT_EQ(j["files"].get<uint64_t>(), copied.size()) << "report must count the files in place";
  std::string said = j.dump();
  EXPECT_NE(said.find("No space left on device"), std::string::npos) << said;

  // More room, same command: the copy completes and the trees are equal.
  ASSERT_EQ(mount.remount("64m"), "");
  auto r2 =
      copy_with(GetParam(), {"-q", "--chunk-size", "64K", "--memory", "1M", t / "src", t / "mnt"});
  ASSERT_EQ(r2.rc, 0) << describe(r2);
  expect_trees_equal(t / "src", t / "mnt/src");
  expect_rsync_clean(t / "src", t / "mnt/src");
}

// The report's byte count after a stopped run counts only what is in place: chunks of a
// file that was then abandoned were not copied. A 1 MiB tmpfs takes the first file (600 KiB)
// but not the second (800 KiB); one thread keeps the order fixed.
TEST_P(CopyFullTest, ReportBytesCountOnlyFilesInPlace) {
  TempDir t;
  make_dir(t / "src");
  write_file(t / "src/a", pattern_bytes(600 * kKiB, 1));
  write_file(t / "src/b", pattern_bytes(800 * kKiB, 2));
  make_dir(t / "mnt");
  TmpfsMount mount;
  if (auto why = mount.mount(t / "mnt", "1m"); !why.empty())
    GTEST_SKIP() << "cannot mount a tmpfs: " << why;
  auto r = copy_with(GetParam(), {"-q", "--threads", "1", "--chunk-size", "64K", "--memory", "1M",
                                  "--report", t / "report.json", t / "src", t / "mnt"});
  SKIP_IF_URING_MISSING(r);
  ASSERT_NE(r.rc, 0) << describe(r);
  auto in_place = regular_files(t / "mnt/src");
  ASSERT_EQ(in_place.size(), 1u) << "expected only the first file to fit";
  EXPECT_EQ(read_file(t / "mnt/src/a"), read_file(t / "src/a"));
  auto j = load_json(t / "report.json");
  EXPECT_EQ(j["files"], 1);
  EXPECT_EQ(j["bytes"].get<uint64_t>(), 600 * kKiB)
      << "report bytes include chunks of the abandoned file b (only a, 614400 bytes, is in place)";
}

// Out of inodes rather than blocks: every file that is not copied is named (its own path,
// or the directory that could not be created) on stderr or, when the stop gave it up, in the
// report's stopped_entries; nothing incomplete or temporary remains.
TEST_P(CopyFullTest, EveryFailedFileIsNamedWhenInodesRunOut) {
  TempDir t;
  make_dir(t / "src");
  for (int d = 0; d < 10; ++d) {
    std::string dir = t / ("src/d" + std::to_string(d));
    make_dir(dir);
    for (int f = 0; f < 5; ++f)
      write_file(dir + "/f" + std::to_string(f), pattern_bytes(100 + f, d * 10 + f));
  }
  make_dir(t / "mnt");
  TmpfsMount mount;
  if (auto why = mount.mount(t / "mnt", "8m,nr_inodes=30"); !why.empty()) {
    GTEST_SKIP() << "cannot mount a tmpfs: " << why;
  }
  auto r = copy_with(GetParam(), {"--report", t / "report.json", t / "src", t / "mnt"});
  SKIP_IF_URING_MISSING(r);
  EXPECT_TRUE(r.rc == 1 || r.rc == 2) << describe(r);
  auto in_place = regular_files(t / "mnt/src");
  EXPECT_LT(in_place.size(), 50u) << "everything fit: the test did not exhaust inodes";
  for (auto& [p, size] : in_place)
    EXPECT_EQ(read_file(t / ("mnt/src/" + p)), read_file(t / ("src/" + p))) << p;
  EXPECT_TRUE(find_temp_files(t / "mnt").empty());
  std::string said = r.err + load_json(t / "report.json").dump();
  std::vector<std::string> unnamed;
  for (int d = 0; d < 10; ++d) {
    for (int f = 0; f < 5; ++f) {
      std::string rel = "d" + std::to_string(d) + "/f" + std::to_string(f);
      if (in_place.count(rel)) continue;
      std::string dir_dst = t / ("mnt/src/d" + std::to_string(d));
      bool named = said.find(t / ("mnt/src/" + rel)) != std::string::npos ||
                   said.find(t / ("src/" + rel)) != std::string::npos ||
                   (!exists(dir_dst) && said.find(dir_dst + ":") != std::string::npos);
      if (!named) unnamed.push_back(rel);
    }
  }
  EXPECT_TRUE(unnamed.empty()) << unnamed.size()
                               << " files were not copied and are not named on stderr:\n"
                               << join_lines(unnamed) << "stderr:\n"
                               << r.err;
}

// A full disk fails every file in flight the same way: stderr says the cause once, with the
// count of files not copied, then the summary (it printed one line per file: 131 and more);
// the report still names each of them.
TEST_P(CopyFullTest, FullDiskSaysTheCauseOnce) {
  TempDir t;
  make_dir(t / "src");
  for (int i = 0; i < 600; ++i)
    write_file(t / ("src/f" + std::to_string(1000 + i)), pattern_bytes(20 * kKiB, i));
  make_dir(t / "mnt");
  TmpfsMount mount;
  if (auto why = mount.mount(t / "mnt", "4m"); !why.empty())
    GTEST_SKIP() << "cannot mount a tmpfs: " << why;
  auto r = copy_with(GetParam(), {"--report", t / "report.json", t / "src", t / "mnt/dst"});
  SKIP_IF_URING_MISSING(r);
  ASSERT_EQ(r.rc, 2) << describe(r);
  auto lines = lines_of(r.err);
  size_t causes = 0;
  for (const auto& l : lines) causes += l.find("No space left on device") != std::string::npos;
  EXPECT_EQ(causes, 1u) << r.err;
  EXPECT_LE(lines.size(), 3u) << "one cause line and the summary expected:\n" << r.err;
  auto in_place = regular_files(t / "mnt/dst");
  ASSERT_LT(in_place.size(), 600u) << "everything fit: the test did not fill the disk";
  std::string count = std::to_string(600 - in_place.size()) + " files not copied";
  EXPECT_NE(r.err.find(count), std::string::npos) << "expected \"" << count << "\" in:\n" << r.err;
  auto j = load_json(t / "report.json");
  EXPECT_EQ(j["files_not_copied"].get<uint64_t>(), 600 - in_place.size());
  EXPECT_TRUE(j["errors"].empty()) << j["errors"].dump();
  EXPECT_FALSE(j["stopped_entries"].empty());
}

// A copy that created DST is completed in place by every rerun of the same command: after a
// full disk (without --resume), and after a success (a requeued job runs --resume). It used to
// nest the tree as DST/src beside the partial copy.
TEST_P(CopyFullTest, RerunsCompleteTheCopyTheyCreatedInPlace) {
  TempDir t;
  build_full_source(t / "src");
  make_dir(t / "mnt");
  TmpfsMount mount;
  if (auto why = mount.mount(t / "mnt", "8m"); !why.empty())
    GTEST_SKIP() << "cannot mount a tmpfs: " << why;
  auto r = copy_with(GetParam(),
                     {"-q", "--chunk-size", "64K", "--memory", "1M", t / "src", t / "mnt/dst"});
  SKIP_IF_URING_MISSING(r);
  ASSERT_EQ(r.rc, 2) << describe(r);
  ASSERT_TRUE(exists(t / "mnt/dst"));
  ASSERT_EQ(mount.remount("64m"), "");
  auto r2 = copy_with(GetParam(), {"-q", "--chunk-size", "64K", t / "src", t / "mnt/dst"});
  ASSERT_EQ(r2.rc, 0) << describe(r2);
  EXPECT_FALSE(exists(t / "mnt/dst/src")) << "the rerun nested SRC inside the DST it created";
  expect_trees_equal(t / "src", t / "mnt/dst");
  expect_rsync_clean(t / "src", t / "mnt/dst");
  // After the success: --resume confirms, a plain rerun copies again, both in place.
  for (const char* flag : {"--resume", "-q"}) {
    auto r3 = copy_with(GetParam(), {flag, "--report", t / "again.json", t / "src", t / "mnt/dst"});
    ASSERT_EQ(r3.rc, 0) << flag << ": " << describe(r3);
    EXPECT_FALSE(exists(t / "mnt/dst/src")) << flag << " after a success nested SRC in DST";
    expect_trees_equal(t / "src", t / "mnt/dst");
  }
  EXPECT_EQ(list_names(t / "mnt"), (std::vector<std::string>{".barge-journal.dst", "dst"}));
}

// The record names the source it was made for: another directory of the same name is a
// question barge cannot answer (complete DST from it, or copy it inside?), so it refuses with
// exit 2 and writes nothing. A directory of another name goes inside, by cp's rule, and a
// DST barge did not create keeps cp's rule too.
TEST_P(CopyFullTest, PlacementRecordOfAnotherSourceIsNotGuessed) {
  TempDir t;
  make_dir(t / "a");
  make_dir(t / "a/data");
  write_file(t / "a/data/f", "one");
  make_dir(t / "b");
  make_dir(t / "b/data");
  write_file(t / "b/data/g", "two");
  make_dir(t / "other");
  write_file(t / "other/h", "three");
  auto r = copy_with(GetParam(), {"-q", t / "a/data", t / "dst"});
  SKIP_IF_URING_MISSING(r);
  ASSERT_EQ(r.rc, 0) << describe(r);
  auto same_name = copy_with(GetParam(), {"-q", t / "b/data", t / "dst"});
  EXPECT_EQ(same_name.rc, 2) << describe(same_name);
  EXPECT_NE(same_name.err.find("cannot tell"), std::string::npos) << same_name.err;
  EXPECT_EQ(lines_of(same_name.err).size(), 1u) << same_name.err;
  EXPECT_EQ(list_names(t / "dst"), (std::vector<std::string>{"f"})) << "nothing may be written";
  auto merged = copy_with(GetParam(), {"-q", t / "b/data/.", t / "dst"});
  EXPECT_EQ(merged.rc, 0) << describe(merged);
  EXPECT_EQ(list_names(t / "dst"), (std::vector<std::string>{"f", "g"}));
  auto inside = copy_with(GetParam(), {"-q", t / "other", t / "dst"});
  EXPECT_EQ(inside.rc, 0) << describe(inside);
  EXPECT_EQ(read_file(t / "dst/other/h"), "three");
  make_dir(t / "mine");
  auto into_existing = copy_with(GetParam(), {"-q", t / "a/data", t / "mine"});
  EXPECT_EQ(into_existing.rc, 0) << describe(into_existing);
  EXPECT_EQ(read_file(t / "mine/data/f"), "one");
}

// The record belongs to the DST the run created: one deleted and made again by hand is a new
// directory, and cp's rule holds for it. A "LINK/" source stays followed on reruns.
TEST_P(CopyFullTest, PlacementRecordKnowsItsDestinationAndFollowsLinkSlash) {
  TempDir t;
  make_dir(t / "src");
  write_file(t / "src/f", "one");
  auto r = copy_with(GetParam(), {"-q", t / "src", t / "dst"});
  SKIP_IF_URING_MISSING(r);
  ASSERT_EQ(r.rc, 0) << describe(r);
  remove_tree_at(AT_FDCWD, t / "dst");
  make_dir(t / "dst");
  auto again = copy_with(GetParam(), {"-q", t / "src", t / "dst"});
  ASSERT_EQ(again.rc, 0) << describe(again);
  EXPECT_EQ(read_file(t / "dst/src/f"), "one") << "a DST made by hand receives SRC inside it";

  make_symlink(t / "src", t / "link");
  for (int run = 0; run < 2; ++run) {
    auto viaslash = copy_with(GetParam(), {"-q", (t / "link") + "/", t / "dst2"});
    ASSERT_EQ(viaslash.rc, 0) << "run " << run << ": " << describe(viaslash);
    EXPECT_FALSE(exists(t / "dst2/link")) << "run " << run << " nested the link";
    EXPECT_EQ(read_file(t / "dst2/f"), "one") << "run " << run;
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, CopyFullTest, testing::Values(kUring, kSyncFlag), backend_name);

// ---------------------------------------------------------------------------------------
// O_DIRECT on a disk filesystem

class CopyDirectTest : public testing::TestWithParam<BackendCase> {};

TEST_P(CopyDirectTest, OddSizesCopiedExactly) {
  std::string base = find_direct_io_base();
  if (base.empty()) GTEST_SKIP() << "no directory on a filesystem that supports O_DIRECT";
  TempDir t(base);
  make_dir(t / "src");
  const std::vector<size_t> sizes = {
      0, 1, 511, 4095, 4097, kChunk - 1, kChunk + 1, 3 * kChunk + 5, kMiB + 3, 2 * kMiB + 4093};
  for (size_t s : sizes)
    write_file(t / ("src/odd-" + std::to_string(s)), pattern_bytes(s, s * 3 + 1));
  stamp_times(t / "src", 13);
  auto r = copy_with(GetParam(), {"-q", "--direct", "--verify", "--chunk-size", "64K", "--memory",
                                  "512K", "--report", t / "report.json", t / "src", t / "dst"});
  SKIP_IF_URING_MISSING(r);
  ASSERT_EQ(r.rc, 0) << describe(r);
  expect_trees_equal(t / "src", t / "dst");
  auto j = load_json(t / "report.json");
  uint64_t total = 0;
  for (size_t s : sizes) total += s;
  EXPECT_EQ(j["bytes_verified"].get<uint64_t>(), total);
}

INSTANTIATE_TEST_SUITE_P(Backends, CopyDirectTest, testing::Values(kUring, kSyncFlag),
                         backend_name);

}  // namespace
}  // namespace barge::itest

namespace barge::itest {
namespace {

// Found in review: a destination reached through a symlink (/work -> /gpfs/work on many
// clusters) used to copy nothing and exit 0.
TEST(CopyPlacement, DestinationDirectoryReachedThroughASymlink) {
  TempDir t;
  build_rich_tree(t / "src");
  make_dir(t / "real");
  make_symlink("real", t / "alias");
  auto r = run_barge({"copy", "-q", t / "src", t / "alias"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  expect_trees_equal(t / "src", t / "real/src");
  auto r2 = run_barge({"copy", "-q", t / "src/", t / "alias/second"});
  ASSERT_EQ(r2.rc, 0) << describe(r2);
  expect_trees_equal(t / "src", t / "real/second");
}

TEST(CopyPlacement, SourceSymlinkWithTrailingSlashCopiesTheDirectory) {
  TempDir t;
  build_rich_tree(t / "src");
  make_symlink("src", t / "lnk");
  auto r = run_barge({"copy", "-q", t / "lnk/", t / "out"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  struct stat st;
  ASSERT_EQ(::lstat((t / "out").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode)) << "LINK/ names the directory, as with cp and rsync";
  auto r2 = run_barge({"copy", "-q", t / "lnk", t / "out-link"});
  ASSERT_EQ(r2.rc, 0) << describe(r2);
  ASSERT_EQ(::lstat((t / "out-link").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode)) << "without the slash the link itself is copied";
}

TEST(CopyMetadata, SetuidFileOwnedByTheRunningUserKeepsItsBits) {
  TempDir t;
  make_dir(t / "src");
  write_file(t / "src/tool", pattern_bytes(100, 4), 0755);
  set_mode(t / "src/tool", 04755);
  write_file(t / "src/shared", pattern_bytes(100, 5), 0755);
  set_mode(t / "src/shared", 02750);
  auto r = run_barge({"copy", "-q", t / "src", t / "dst"});
  ASSERT_EQ(r.rc, 0) << describe(r);
  expect_trees_equal(t / "src", t / "dst");
  struct stat st;
  ASSERT_EQ(::stat((t / "dst/tool").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 04755u);
}

}  // namespace
}  // namespace barge::itest
