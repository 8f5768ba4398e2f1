// Commands set umask 0 while they create files with their final permission bits; each must
// leave the process umask as it found it (restore did not), so that a program running
// several commands in one process, or the CLI's own later files, keep the user's umask.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "pipeline/copy/copy.hpp"
#include "pipeline/repo/backup.hpp"
#include "tests/test_tmpdir.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline {
namespace {

mode_t current_umask() {
  mode_t m = ::umask(0);
  ::umask(m);
  return m;
}

class UmaskTest : public ::testing::Test {
 protected:
  void SetUp() override {
    old_ = ::umask(027);
    src_ = dir_.path() + "/src";
    ::mkdir(src_.c_str(), 0755);
    std::ofstream(src_ + "/a") << "alpha";
    ::mkdir((src_ + "/sub").c_str(), 0700);
    std::ofstream(src_ + "/sub/b") << "beta";
  }
  void TearDown() override { ::umask(old_); }
  test::TempDir dir_;
  std::string src_;
  mode_t old_ = 0;
  std::unique_ptr<transport::Comm> comm_ = transport::make_solo_comm();
};

TEST_F(UmaskTest, CopyBackupAndRestoreLeaveTheUmaskAsTheyFoundIt) {
  CopyOptions copy;
  copy.sources = {src_};
  copy.destination = dir_.path() + "/copy";
  copy.progress = ProgressMode::kNone;
  RunResult c = run_copy(copy);
  ASSERT_EQ(c.exit_code, 0) << c.fatal;
  EXPECT_EQ(current_umask(), 027u) << "copy changed the umask";

  BackupOptions backup;
  backup.source = src_;
  backup.repo = dir_.path() + "/repo";
  backup.progress = ProgressMode::kNone;
  BackupResult b = run_backup(backup, *comm_);
  ASSERT_EQ(b.run.exit_code, 0) << b.run.fatal;
  EXPECT_EQ(current_umask(), 027u) << "backup changed the umask";

  RestoreOptions restore;
  restore.repo = backup.repo;
  restore.destination = dir_.path() + "/restored";
  restore.progress = ProgressMode::kNone;
  RestoreResult r = run_restore(restore, *comm_);
  ASSERT_EQ(r.run.exit_code, 0) << r.run.fatal;
  EXPECT_EQ(current_umask(), 027u) << "restore changed the umask";
  // ... and still restored the modes exactly (umask 0 inside).
  struct stat st;
  ASSERT_EQ(::stat((restore.destination + "/sub").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
}

}  // namespace
}  // namespace barge::pipeline
