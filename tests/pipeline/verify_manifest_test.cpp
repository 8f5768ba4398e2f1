#include "pipeline/check/verify_manifest.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "pipeline/core/manifest.hpp"

namespace barge::pipeline {
namespace {

namespace fs = std::filesystem;
using Paths = std::vector<std::string>;

void write_file(const fs::path& p, std::string_view bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << p;
}

// A real tree on disk plus a manifest of it written beside (not inside) the tree.
class VerifyManifestTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "barge-verify-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    base_ = tmpl;
    tree_ = base_ / "tree";
    manifest_ = base_ / "MANIFEST";

    // Larger than a stream's part, so hashing takes several reads.
    big_.resize(2 * 1024 * 1024 + 4097);
    for (size_t i = 0; i < big_.size(); ++i) {
      big_[i] = static_cast<char>((i * 2654435761u) >> 13);
    }
    files_ = {
        {"a.txt", "alpha"},
        {"empty", ""},
        {"sub/big.bin", big_},
        // A whole number of stream slices: the last read meets end of file with nothing.
        {"sub/even.bin", big_.substr(0, 128 * 1024)},
        {"sub/deep/er/c", "gamma"},
        {"with space", "space"},
        {"new\nline", "newline"},
        {"back\\slash", "backslash"},
        {"\xff\xfe-not-utf8", "bytes"},
        {std::string(255, 'L'), "long name"},
    };
    total_bytes_ = 0;
    for (auto& [name, bytes] : files_) {
      write_file(tree_ / name, bytes);
      total_bytes_ += bytes.size();
    }
    write_manifest_of_tree();
  }

  void TearDown() override {
    std::error_code ec;
    // Undo chmods so remove_all can clean up when not running as root.
    for (auto it = fs::recursive_directory_iterator(base_, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
      if (!it->is_symlink())
        fs::permissions(it->path(), fs::perms::owner_all, fs::perm_options::add, ec);
    }
    fs::remove_all(base_, ec);
  }

  void write_manifest_of_tree() {
    ManifestWriter writer;
    for (auto& [name, bytes] : files_) {
      writer.add(name, hash_bytes(std::as_bytes(std::span(bytes))));
    }
    ASSERT_TRUE(writer.write_to(manifest_).ok());
  }

  VerifyManifestResult verify(unsigned threads = 0, bool report_extra = true,
                              uint64_t chunk_bytes = kDefaultChunkBytes,
                              uint32_t files_per_unit = 128) {
    VerifyManifestOptions opts;
    opts.chunk_bytes = chunk_bytes;
    opts.max_files_per_unit = files_per_unit;
    opts.manifest = manifest_;
    opts.dir = tree_;
    opts.threads = threads;
    opts.report_extra = report_extra;
    auto r = verify_manifest(opts);
    EXPECT_TRUE(r.ok()) << r.error().message;
    return r.ok() ? *r : VerifyManifestResult{};
  }

  fs::path base_, tree_, manifest_;
  std::string big_;
  std::vector<std::pair<std::string, std::string>> files_;
  uint64_t total_bytes_ = 0;
};

TEST_F(VerifyManifestTest, AllGood) {
  for (unsigned threads : {0u, 1u, 3u}) {
    SCOPED_TRACE(threads);
    VerifyManifestResult r = verify(threads);
    EXPECT_TRUE(r.ok());
    EXPECT_EQ(r.files_checked, files_.size());
    EXPECT_EQ(r.bytes_checked, total_bytes_);
    EXPECT_TRUE(r.mismatched.empty());
    EXPECT_TRUE(r.missing.empty());
    EXPECT_TRUE(r.unreadable.empty());
    EXPECT_TRUE(r.extra.empty());
    EXPECT_TRUE(r.errors.empty());
    EXPECT_GT(r.seconds, 0.0);
    EXPECT_LT(r.seconds, 60.0);
  }
}

TEST_F(VerifyManifestTest, FlippedByteInSecondBufferIsMismatched) {
  const fs::path p = tree_ / "sub/big.bin";
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(1536 * 1024);
  f.put(static_cast<char>(big_[1536 * 1024] ^ 0x01));
  f.close();
  VerifyManifestResult r = verify();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.mismatched, Paths{"sub/big.bin"});
  EXPECT_EQ(r.files_checked, files_.size());
  EXPECT_TRUE(r.missing.empty());
  EXPECT_TRUE(r.extra.empty());
}

// A unit's buffer of 64 KiB: big.bin no longer fits and is streamed through it in pieces,
// the small files share units of two. Both paths find the flipped byte and nothing else.
TEST_F(VerifyManifestTest, StreamedAndBatchedFilesAreCheckedAlike) {
  for (uint64_t chunk : {uint64_t{64} << 10, kDefaultChunkBytes}) {
    SCOPED_TRACE(chunk);
    VerifyManifestResult good = verify(2, true, chunk, 2);
    EXPECT_TRUE(good.ok());
    EXPECT_EQ(good.files_checked, files_.size());
    EXPECT_EQ(good.bytes_checked, total_bytes_);
  }
  const fs::path p = tree_ / "sub/big.bin";
  std::fstream f(p, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(big_.size() - 1);
  f.put(static_cast<char>(big_.back() ^ 0x01));
  f.close();
  write_file(tree_ / "a.txt", "alphA");
  for (uint64_t chunk : {uint64_t{64} << 10, kDefaultChunkBytes}) {
    SCOPED_TRACE(chunk);
    VerifyManifestResult r = verify(2, true, chunk, 2);
    EXPECT_EQ(r.mismatched, (Paths{"a.txt", "sub/big.bin"}));
    EXPECT_EQ(r.files_checked, files_.size());
  }
}

TEST_F(VerifyManifestTest, FlippedByteInAwkwardNameIsNamed) {
  write_file(tree_ / "new\nline", "newlinf");
  VerifyManifestResult r = verify();
  EXPECT_EQ(r.mismatched, Paths{"new\nline"});
}

TEST_F(VerifyManifestTest, MissingFile) {
  fs::remove(tree_ / "a.txt");
  fs::remove_all(tree_ / "sub/deep");
  VerifyManifestResult r = verify();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.missing, (Paths{"a.txt", "sub/deep/er/c"}));
  EXPECT_EQ(r.files_checked, files_.size() - 2);
}

TEST_F(VerifyManifestTest, ParentReplacedByFileIsMissing) {
  fs::remove_all(tree_ / "sub/deep");
  write_file(tree_ / "sub/deep", "not a directory");
  VerifyManifestResult r = verify(0, /*report_extra=*/false);
  EXPECT_EQ(r.missing, Paths{"sub/deep/er/c"});
}

TEST_F(VerifyManifestTest, ExtraFileFailsUnlessNotReported) {
  write_file(tree_ / "sub/deep/new", "surprise");
  write_file(tree_ / "zz top", "surprise");
  VerifyManifestResult r = verify();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.extra, (Paths{"sub/deep/new", "zz top"}));
  EXPECT_TRUE(r.mismatched.empty());

  VerifyManifestResult quiet = verify(0, /*report_extra=*/false);
  EXPECT_TRUE(quiet.ok());
  EXPECT_TRUE(quiet.extra.empty());
}

TEST_F(VerifyManifestTest, NonRegularExtrasAreNotReported) {
  // The manifest can only list regular files, so directories, symlinks and FIFOs the copy
  // reproduced must not fail the check.
  fs::create_directories(tree_ / "empty-dir/nested");
  fs::create_symlink("a.txt", tree_ / "link-to-a");
  fs::create_directory_symlink("sub", tree_ / "link-to-sub");
  ASSERT_EQ(::mkfifo((tree_ / "fifo").c_str(), 0600), 0);
  VerifyManifestResult r = verify();
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r.extra.empty());
}

TEST_F(VerifyManifestTest, ManifestInsideTreeIsNotExtra) {
  const fs::path inside = tree_ / "MANIFEST.xxh128";
  fs::copy_file(manifest_, inside);
  VerifyManifestOptions opts{{}, inside, tree_};
  auto r = verify_manifest(opts);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_TRUE(r->ok());
  EXPECT_TRUE(r->extra.empty());
}

TEST_F(VerifyManifestTest, DirectoryWhereFileExpectedIsUnreadable) {
  // Fails for root too, unlike chmod 000: read(2) on a directory is EISDIR for everyone.
  fs::remove(tree_ / "a.txt");
  fs::create_directory(tree_ / "a.txt");
  VerifyManifestResult r = verify();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.unreadable, Paths{"a.txt"});
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("a.txt"), std::string::npos) << r.errors[0];
  EXPECT_NE(r.errors[0].find("directory"), std::string::npos) << r.errors[0];
  EXPECT_TRUE(r.mismatched.empty());
  EXPECT_TRUE(r.missing.empty());
}

TEST_F(VerifyManifestTest, PermissionDeniedIsUnreadable) {
  if (::geteuid() == 0) {
    GTEST_SKIP() << "running as root: chmod 000 does not stop root from reading, so "
                    "DirectoryWhereFileExpectedIsUnreadable covers this outcome";
  }
  fs::permissions(tree_ / "a.txt", fs::perms::none);
  VerifyManifestResult r = verify();
  EXPECT_EQ(r.unreadable, Paths{"a.txt"});
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_NE(r.errors[0].find("Permission denied"), std::string::npos) << r.errors[0];
}

TEST_F(VerifyManifestTest, UnwalkableDirectoryIsUnreadable) {
  if (::geteuid() == 0) {
    GTEST_SKIP() << "running as root: chmod 000 on a directory does not stop root from "
                    "listing it";
  }
  // Extras hidden in a directory that cannot be listed must fail the check, not pass it.
  fs::permissions(tree_ / "sub/deep", fs::perms::none);
  VerifyManifestResult r = verify();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.unreadable, (Paths{"sub/deep", "sub/deep/er/c"}));
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_NE(r.errors[0].find("open directory sub/deep: Permission denied"), std::string::npos)
      << r.errors[0];
}

TEST_F(VerifyManifestTest, SymlinkWhereFileExpectedIsMismatchedEvenWithSameContent) {
  // The link points at identical bytes; following it would wrongly pass.
  write_file(base_ / "outside", "alpha");
  fs::remove(tree_ / "a.txt");
  fs::create_symlink(base_ / "outside", tree_ / "a.txt");
  VerifyManifestResult r = verify();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.mismatched, Paths{"a.txt"});
  EXPECT_TRUE(r.extra.empty());
}

TEST_F(VerifyManifestTest, SymlinkedParentDirectoryIsNotFollowed) {
  fs::rename(tree_ / "sub/deep", base_ / "deep-outside");
  fs::create_directory_symlink(base_ / "deep-outside", tree_ / "sub/deep");
  VerifyManifestResult r = verify();
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.mismatched, Paths{"sub/deep/er/c"});
}

TEST_F(VerifyManifestTest, FifoWhereFileExpectedIsMismatchedWithoutBlocking) {
  fs::remove(tree_ / "empty");
  ASSERT_EQ(::mkfifo((tree_ / "empty").c_str(), 0600), 0);
  VerifyManifestResult r = verify();
  EXPECT_EQ(r.mismatched, Paths{"empty"});
}

TEST_F(VerifyManifestTest, EveryFailureNamedAndSorted) {
  write_file(tree_ / "with space", "changed");
  write_file(tree_ / "a.txt", "changed");
  fs::remove(tree_ / "back\\slash");
  write_file(tree_ / "sub/extra", "x");
  VerifyManifestResult r = verify(2);
  EXPECT_EQ(r.mismatched, (Paths{"a.txt", "with space"}));
  EXPECT_EQ(r.missing, Paths{"back\\slash"});
  EXPECT_EQ(r.extra, Paths{"sub/extra"});
  EXPECT_FALSE(r.ok());
}

TEST_F(VerifyManifestTest, AcceptsManifestWrittenByXxhsum) {
  if (::access("/usr/bin/xxhsum", X_OK) != 0) GTEST_SKIP() << "/usr/bin/xxhsum is not installed";
  // Plain names only: xxhsum 0.8.1 cannot represent a newline in a name.
  const std::string cmd = "cd '" + tree_.string() + "' && /usr/bin/xxhsum -H2 -- a.txt empty " +
                          "sub/big.bin sub/deep/er/c 'with space' > '" + manifest_.string() + "'";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  VerifyManifestResult r = verify(0, /*report_extra=*/false);
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.files_checked, 5u);
}

TEST_F(VerifyManifestTest, CorruptOrMissingManifestIsAnError) {
  {
    std::ofstream out(manifest_, std::ios::app);
    out << "not a checksum line\n";
  }
  VerifyManifestOptions opts{{}, manifest_, tree_};
  auto r = verify_manifest(opts);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("line " + std::to_string(files_.size() + 2) + ":"),
            std::string::npos)
      << r.error().message;
  EXPECT_NE(r.error().message.find(manifest_.string()), std::string::npos) << r.error().message;

  opts.manifest = base_ / "absent";
  auto missing = verify_manifest(opts);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().errnum, ENOENT);
}

TEST_F(VerifyManifestTest, MissingDirectoryIsAnError) {
  VerifyManifestOptions opts{{}, manifest_, base_ / "no-such-dir"};
  auto r = verify_manifest(opts);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().errnum, ENOENT);
  EXPECT_NE(r.error().message.find("no-such-dir"), std::string::npos) << r.error().message;

  opts.dir = manifest_;  // a file, not a directory
  auto not_dir = verify_manifest(opts);
  ASSERT_FALSE(not_dir.ok());
  EXPECT_EQ(not_dir.error().errnum, ENOTDIR);

  EXPECT_FALSE(validate(VerifyManifestOptions{}).ok());
}

TEST_F(VerifyManifestTest, ComponentFallbackRefusesSymlinksAnywhere) {
  const int root = ::open(tree_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(root, 0);
  int fd = detail::open_by_components(root, "sub/deep/er/c");
  ASSERT_GE(fd, 0) << std::strerror(errno);
  ::close(fd);

  fs::create_directory_symlink("deep", tree_ / "sub/linkdir");
  fs::create_symlink("a.txt", tree_ / "linkfile");
  EXPECT_EQ(detail::open_by_components(root, "sub/linkdir/er/c"), -1);
  EXPECT_EQ(errno, ELOOP);
  EXPECT_EQ(detail::open_by_components(root, "linkfile"), -1);
  EXPECT_EQ(errno, ELOOP);
  EXPECT_EQ(detail::open_by_components(root, "sub/absent/c"), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(detail::open_by_components(root, "a.txt/x"), -1);
  EXPECT_EQ(errno, ENOTDIR);
  ::close(root);
}

}  // namespace
}  // namespace barge::pipeline
