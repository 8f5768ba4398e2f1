#include "transport/net/key_file.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "tests/test_tmpdir.hpp"

namespace barge::transport {
namespace {

namespace fs = std::filesystem;

class KeyFileTest : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& bytes, mode_t mode) {
    const fs::path p = dir_ / name;
    std::ofstream(p, std::ios::binary) << bytes;
    EXPECT_EQ(::chmod(p.c_str(), mode), 0);
    return p.string();
  }
  test::TempDir tmp_;
  fs::path dir_{tmp_.path()};
};

TEST_F(KeyFileTest, PrivateFileOfEnoughBytesIsReadRaw) {
  std::string bytes(40, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<char>(i * 37);  // NULs too
  auto key = read_key_file(write("key", bytes, 0600));
  ASSERT_TRUE(key) << key.error().message;
  EXPECT_EQ(*key, bytes);
  EXPECT_TRUE(read_key_file(write("ro", bytes, 0400)));
}

TEST_F(KeyFileTest, GroupOrOthersAccessIsRefusedNamingTheFile) {
  const std::string bytes(32, 'k');
  for (mode_t mode : {0640, 0604, 0660, 0644}) {
    const std::string p = write("key" + std::to_string(mode), bytes, mode);
    auto key = read_key_file(p);
    ASSERT_FALSE(key) << mode;
    EXPECT_NE(key.error().message.find(p), std::string::npos) << key.error().message;
    EXPECT_NE(key.error().message.find("chmod 600"), std::string::npos) << key.error().message;
  }
}

TEST_F(KeyFileTest, ShortMissingAndOddFilesAreRefused) {
  auto short_key = read_key_file(write("short", std::string(31, 'k'), 0600));
  ASSERT_FALSE(short_key);
  EXPECT_NE(short_key.error().message.find("at least 32"), std::string::npos);
  auto missing = read_key_file((dir_ / "none").string());
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("none"), std::string::npos);
  fs::create_directory(dir_ / "d");
  ::chmod((dir_ / "d").c_str(), 0700);
  EXPECT_FALSE(read_key_file((dir_ / "d").string()));
  EXPECT_FALSE(read_key_file(write("huge", std::string(kMaxKeyBytes + 1, 'k'), 0600)));
}

}  // namespace
}  // namespace barge::transport
