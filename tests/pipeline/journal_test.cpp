// The journal directory beside DST: chunk logs, the roots file and the placement record are
// read back by later runs, so each parser is tested on good, torn and hostile bytes.
#include "pipeline/engine/journal.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "pipeline/engine/placement.hpp"
#include "tests/test_tmpdir.hpp"

namespace barge::pipeline {
namespace {

using namespace std::string_literals;

TEST(JournalParse, ChunkLinesTornLastLineAndHostileNames) {
  JournalState s = Journal::parse(
      ".barge-part.aa 0\n.barge-part.aa 3\n.barge-part.bb 1\n"
      "../../etc/passwd 1\nwith space 2\n 4\n.barge-part.cc x\n.barge-part.cc -1\n"
      ".barge-part.cc 99999999999\n"s +
      "nul\0name 5\n"s + ".barge-part.dd 7");
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s.at(".barge-part.aa"), (std::unordered_set<uint32_t>{0, 3}));
  EXPECT_EQ(s.at(".barge-part.bb"), (std::unordered_set<uint32_t>{1}));
  EXPECT_EQ(s.count(".barge-part.dd"), 0u) << "a torn last line (no newline) must be ignored";
}

TEST(JournalParse, RootsFileRoundTripAndCorruption) {
  auto good = Journal::parse_roots("src\0dst\0\0a\0dst/a\0a\0"s);
  ASSERT_TRUE(good);
  ASSERT_EQ(good->size(), 2u);
  EXPECT_EQ((*good)[1].dst, "dst/a");
  EXPECT_EQ((*good)[1].manifest_prefix, "a");
  EXPECT_FALSE(Journal::parse_roots(""));
  EXPECT_FALSE(Journal::parse_roots("src\0dst\0"s)) << "two fields are not a root";
  EXPECT_FALSE(Journal::parse_roots("src\0dst\0\0torn"s)) << "a torn last field";
}

TEST(JournalParse, ResumeNeverFollowsARootsFileOutsideTheDestination) {
  test::TempDir t;
  std::string dir = t.path() + "/.barge-journal.dst";
  ASSERT_EQ(::mkdir(dir.c_str(), 0700), 0);
  auto write_roots = [&](const std::string& bytes) {
    std::ofstream(dir + "/roots", std::ios::binary) << bytes;
  };
  const std::string dst = t.path() + "/dst";
  write_roots("x/src\0"s + dst + "/src\0src\0"s);
  EXPECT_TRUE(Journal::resume_roots(dir, {"src"}, dst)) << "DST/name is where cp would put it";
  write_roots("x/src\0"s + dst + "\0\0"s);
  EXPECT_TRUE(Journal::resume_roots(dir, {"src"}, dst + "/")) << "DST itself";
  for (const std::string& elsewhere :
       {"/etc"s, dst + "/../etc"s, dst + "/a/b"s, dst + "/.."s, t.path() + "/other"s}) {
    write_roots("x/src\0"s + elsewhere + "\0\0"s);
    EXPECT_FALSE(Journal::resume_roots(dir, {"src"}, dst)) << elsewhere;
  }
  write_roots("x/other\0"s + dst + "/other\0other\0"s);
  EXPECT_FALSE(Journal::resume_roots(dir, {"src"}, dst)) << "made for another source";
}

TEST(PlacementRecord, RoundTripAndCorruptRecords) {
  const PlacementRecord no_dst{"/scratch/run42"};
  const std::string rec = format_placement_record(no_dst);
  EXPECT_EQ(parse_placement_record(rec), no_dst);
  const PlacementRecord with_dst{"/scratch/run42", true, 2049, 123456789, 1764633600123456789};
  const std::string rec2 = format_placement_record(with_dst);
  EXPECT_EQ(parse_placement_record(rec2), with_dst);
  EXPECT_FALSE(parse_placement_record(""));
  EXPECT_FALSE(parse_placement_record(rec.substr(0, rec.size() - 1))) << "torn: no final NUL";
  EXPECT_FALSE(parse_placement_record(rec2.substr(0, rec2.size() - 1))) << "torn identity";
  EXPECT_FALSE(parse_placement_record(format_placement_record({"relative/path"})));
  EXPECT_FALSE(parse_placement_record(format_placement_record({""})));
  EXPECT_FALSE(parse_placement_record("barge-placement 2\0/x\0"s)) << "another version";
  EXPECT_FALSE(parse_placement_record(rec + "/y"s + '\0')) << "a second path";
  EXPECT_FALSE(parse_placement_record(rec + "12:x:5"s + '\0')) << "a bad identity";
  EXPECT_FALSE(parse_placement_record(rec + "12:34"s + '\0')) << "no birth time";
  EXPECT_FALSE(parse_placement_record(rec + "12:34:5"s + '\0' + "more"s)) << "bytes after it";
  EXPECT_FALSE(parse_placement_record(rec + ":34:5"s + '\0'));
  EXPECT_FALSE(parse_placement_record(rec + "1:2:3:4"s + '\0'));
  EXPECT_FALSE(parse_placement_record(rec + "99999999999999999999999:1:0"s + '\0')) << "overflow";
  EXPECT_FALSE(parse_placement_record(format_placement_record({"/" + std::string(5000, 'a')})));
}

// A record that cannot be read is said, never guessed past: the copy refuses, exit 2.
TEST(PlacementRecord, UnreadableRecordStopsTheAmbiguousCopy) {
  test::TempDir t;
  const std::string src = t.path() + "/src", dst = t.path() + "/dst";
  ASSERT_EQ(::mkdir(src.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir(dst.c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((t.path() + "/.barge-journal.dst").c_str(), 0700), 0);
  std::ofstream(t.path() + "/.barge-journal.dst/placement") << "garbage";
  auto p = resolve_placement({src}, dst);
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().message.find("unreadable"), std::string::npos) << p.error().message;
  // Not ambiguous (SRC/. always merges into DST): the record does not matter.
  EXPECT_TRUE(resolve_placement({src + "/."}, dst));
}

}  // namespace
}  // namespace barge::pipeline
