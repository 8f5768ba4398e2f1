#include "pipeline/core/manifest.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

namespace barge::pipeline {
namespace {

namespace fs = std::filesystem;

constexpr const char* kXxhsum = "/usr/bin/xxhsum";
// `xxhsum -H2` of the 5 bytes "hello", as xxhsum 0.8.1 prints it.
constexpr const char* kHelloHex = "b5e9c1ad071b3e7fc779cfaa5e523818";

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "barge-manifest-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& p, std::string_view bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << p;
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Hash128 hash_of(std::string_view s) { return hash_bytes(std::as_bytes(std::span(s))); }

std::string hex_of(std::string_view s) { return to_hex(hash_of(s)); }

std::vector<ManifestEntry> sorted(std::vector<ManifestEntry> v) {
  std::sort(v.begin(), v.end(), [](auto& a, auto& b) { return a.path < b.path; });
  return v;
}

// Names that stress every part of the format: separators, escapes, bytes that are not
// UTF-8, and the longest component Linux allows.
std::vector<std::string> awkward_names() {
  return {
      "plain.txt",
      "dir/with space",
      " leading space",
      "trailing space ",
      "two  spaces",
      "new\nline",
      "back\\slash",
      "\\n-literal-backslash-n",
      "cr\rname",
      "tab\tname",
      "#not-a-header",
      "*star",
      std::string("\xff\xfe\x80 not utf-8"),
      "na\xc3\xafve/\xe6\x97\xa5\xe6\x9c\xac",
      std::string(255, 'a') + "/" + std::string(255, 'b'),
      "-dash",
      "a/b/c/d/e/f/g",
  };
}

TEST(ManifestFormat, HelloLineMatchesXxhsumOutput) {
  auto text = format_manifest({{"hello.txt", hash_of("hello")}});
  ASSERT_TRUE(text.ok()) << text.error().message;
  EXPECT_EQ(*text, std::string(kManifestHeader) + "\n" + kHelloHex + "  hello.txt\n");
}

TEST(ManifestFormat, EscapesBackslashNewlineAndCarriageReturn) {
  auto text = format_manifest({{"a\\b\nc\rd", hash_of("hello")}});
  ASSERT_TRUE(text.ok()) << text.error().message;
  EXPECT_EQ(*text, std::string(kManifestHeader) + "\n\\" + kHelloHex + "  a\\\\b\\nc\\rd\n");
}

TEST(ManifestFormat, SortsBytewiseWithHighBytesLast) {
  auto text = format_manifest({{"\xc3\xa9", {}}, {"b", {}}, {"B", {}}, {"a/b", {}}, {"a b", {}}});
  ASSERT_TRUE(text.ok()) << text.error().message;
  auto parsed = parse_manifest(*text);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  std::vector<std::string> order;
  for (auto& e : *parsed) order.push_back(e.path);
  EXPECT_EQ(order, (std::vector<std::string>{"B", "a b", "a/b", "b", "\xc3\xa9"}));
}

TEST(ManifestFormat, RejectsInvalidAndDuplicatePaths) {
  for (const std::string& bad :
       std::vector<std::string>{"", "/abs", "a/../b", "./a", "a//b", "a/", std::string("a\0b", 3),
                                std::string(256, 'x')}) {
    auto text = format_manifest({{bad, {}}});
    EXPECT_FALSE(text.ok()) << printable_path(bad);
  }
  auto dup = format_manifest({{"same", {}}, {"other", {}}, {"same", {1, 2}}});
  ASSERT_FALSE(dup.ok());
  EXPECT_NE(dup.error().message.find("duplicate path 'same'"), std::string::npos)
      << dup.error().message;
}

TEST(ManifestFormat, RejectsPathTooLongForOneLine) {
  // Valid components, but the line would exceed kManifestMaxLineBytes.
  std::string path;
  while (path.size() < kManifestMaxLineBytes) path += std::string(200, 'd') + "/";
  path += "f";
  auto text = format_manifest({{path, {}}});
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.error().errnum, ENAMETOOLONG);
}

TEST(ManifestRoundTrip, AwkwardNamesSurviveFormatAndParse) {
  std::vector<ManifestEntry> entries;
  uint64_t n = 1;
  for (auto& name : awkward_names()) {
    entries.push_back({name, Hash128{n * 0x9e3779b97f4a7c15ULL, ~n}});
    ++n;
  }
  auto text = format_manifest(entries);
  ASSERT_TRUE(text.ok()) << text.error().message;
  auto parsed = parse_manifest(*text);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(*parsed, sorted(entries));
}

TEST(ManifestRoundTrip, WriterToFileAndBack) {
  TempDir tmp;
  ManifestWriter writer;
  std::vector<ManifestEntry> entries;
  for (auto& name : awkward_names()) {
    entries.push_back({name, hash_of(name)});
    writer.add(name, hash_of(name));
  }
  EXPECT_EQ(writer.size(), entries.size());
  const fs::path file = tmp.path() / "MANIFEST.xxh128";
  ASSERT_TRUE(writer.write_to(file).ok());
  auto back = read_manifest(file);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(*back, sorted(entries));
  // Only the manifest is left: the temporary file was renamed, not copied.
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 1);
}

TEST(ManifestRoundTrip, EmptyTreeWritesHeaderOnly) {
  TempDir tmp;
  ManifestWriter writer;
  ASSERT_TRUE(writer.write_to(tmp.path() / "m").ok());
  EXPECT_EQ(read_file(tmp.path() / "m"), std::string(kManifestHeader) + "\n");
  auto back = read_manifest(tmp.path() / "m");
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_TRUE(back->empty());
}

TEST(ManifestWriter, ConcurrentAddsAllLand) {
  ManifestWriter writer;
  constexpr int kThreads = 8;
  constexpr int kPerThread = 500;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&writer, t] {
      for (int i = 0; i < kPerThread; ++i) {
        writer.add("t" + std::to_string(t) + "/f" + std::to_string(i),
                   Hash128{static_cast<uint64_t>(t), static_cast<uint64_t>(i)});
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(writer.size(), size_t{kThreads * kPerThread});
  TempDir tmp;
  ASSERT_TRUE(writer.write_to(tmp.path() / "m").ok());
  auto back = read_manifest(tmp.path() / "m");
  ASSERT_TRUE(back.ok()) << back.error().message;
  ASSERT_EQ(back->size(), size_t{kThreads * kPerThread});
  EXPECT_TRUE(
      std::is_sorted(back->begin(), back->end(), [](auto& a, auto& b) { return a.path < b.path; }));
}

TEST(ManifestWriter, ReplacesExistingFileWhole) {
  TempDir tmp;
  const fs::path file = tmp.path() / "m";
  write_file(file, "old contents that are longer than the new manifest will be\n");
  ManifestWriter writer;
  writer.add("x", hash_of("hello"));
  ASSERT_TRUE(writer.write_to(file).ok());
  EXPECT_EQ(read_file(file), std::string(kManifestHeader) + "\n" + kHelloHex + "  x\n");
}

TEST(ManifestWriter, FailureKeepsOldFileAndLeavesNoTemporary) {
  TempDir tmp;
  const fs::path file = tmp.path() / "m";
  write_file(file, "previous\n");
  ManifestWriter writer;
  writer.add("ok", {});
  writer.add("../escape", {});
  io::Status st = writer.write_to(file);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("'..' component"), std::string::npos) << st.error().message;
  EXPECT_EQ(read_file(file), "previous\n");
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 1);
}

TEST(ManifestWriter, MissingDirectoryIsAnError) {
  TempDir tmp;
  ManifestWriter writer;
  writer.add("a", {});
  io::Status st = writer.write_to(tmp.path() / "no" / "such" / "m");
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().errnum, ENOENT);
}

TEST(ManifestParse, AcceptsPlainXxhsumOutputWithoutHeader) {
  std::string text = std::string(kHelloHex) + "  a\n" + hex_of("x") + "  b/c d\n";
  auto parsed = parse_manifest(text);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[0], (ManifestEntry{"a", hash_of("hello")}));
  EXPECT_EQ((*parsed)[1], (ManifestEntry{"b/c d", hash_of("x")}));
}

TEST(ManifestParse, AcceptsBinaryMarkerUppercaseHexAndKeepsFileOrder) {
  std::string upper = kHelloHex;
  for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::string text = std::string(kManifestHeader) + "\n" + upper + " *z\n" + kHelloHex + "  a\n";
  auto parsed = parse_manifest(text);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[0], (ManifestEntry{"z", hash_of("hello")}));
  EXPECT_EQ((*parsed)[1].path, "a");
}

TEST(ManifestParse, EscapedLineWithoutEscapesAndRawBackslashInPlainLine) {
  // A plain line is taken literally, backslashes included: that is how xxhsum 0.8.1 writes
  // such names. An escaped line may also hold a name that needed no escaping.
  std::string text = std::string(kHelloHex) + "  d\\e\n\\" + kHelloHex + "  plain\n";
  auto parsed = parse_manifest(text);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  ASSERT_EQ(parsed->size(), 2u);
  EXPECT_EQ((*parsed)[0].path, "d\\e");
  EXPECT_EQ((*parsed)[1].path, "plain");
}

struct CorruptCase {
  const char* name;
  std::string body;    // appended after "<header>\n<good line>\n", so it starts on line 3
  size_t line;         // expected line number in the error
  const char* reason;  // expected substring of the error
};

std::vector<CorruptCase> corrupt_cases() {
  const std::string h = kHelloHex;
  return {
      {"bad_hex", "zz" + h.substr(2) + "  f\n", 3, "expected 32 hex digits"},
      {"hex_with_g", h.substr(0, 31) + "g  f\n", 3, "found 31"},
      {"short_hash", h.substr(0, 31) + "  f\n", 3, "found 31"},
      {"long_hash", h + "0  f\n", 3, "found 33"},
      {"xxh64_listing", h.substr(0, 16) + "  f\n", 3, "XXH32/XXH64"},
      {"bsd_tag", "XXH128 (f) = " + h + "\n", 3, "BSD-style"},
      {"one_space", h + " f\n", 3, "missing separator"},
      {"tab_separator", h + "\t f\n", 3, "missing separator"},
      {"hash_only", h + "\n", 3, "missing separator"},
      {"one_trailing_space", h + " \n", 3, "missing separator"},
      {"empty_path", h + "  \n", 3, "empty path"},
      {"absolute", h + "  /etc/passwd\n", 3, "absolute path"},
      {"dotdot_first", h + "  ../x\n", 3, "'..' component"},
      {"dotdot_middle", h + "  a/../b\n", 3, "'..' component"},
      {"dotdot_last", h + "  a/..\n", 3, "'..' component"},
      {"dotdot_alone", h + "  ..\n", 3, "'..' component"},
      {"dot_first", h + "  ./a\n", 3, "strip the leading './'"},
      {"dot_middle", h + "  a/./b\n", 3, "'.' component"},
      {"dot_alone", h + "  .\n", 3, "'.' component"},
      {"double_slash", h + "  a//b\n", 3, "empty component"},
      {"trailing_slash", h + "  a/\n", 3, "empty component"},
      {"escaped_dotdot", "\\" + h + "  a\\\\/../b\n", 3, "'..' component"},
      {"escaped_absolute", "\\" + h + "  /a\\\\b\n", 3, "absolute path"},
      {"nul_in_path", h + "  a" + std::string(1, '\0') + "b\n", 3, "NUL byte"},
      {"nul_in_hash", std::string(1, '\0') + h + "  a\n", 3, "NUL byte"},
      {"component_256", h + "  d/" + std::string(256, 'x') + "\n", 3, "longer than 255"},
      {"duplicate", h + "  b\n" + h + "  good\n", 4,
       "duplicate path 'good' (first listed on line 2)"},
      {"duplicate_via_escape", "\\" + h + "  a\\\\b\n" + h + "  a\\b\n", 4, "duplicate path"},
      {"bad_escape_t", "\\" + h + "  a\\tb\n", 3, "bad escape"},
      {"bad_escape_0", "\\" + h + "  a\\0\n", 3, "bad escape"},
      {"bad_escape_end", "\\" + h + "  ab\\\n", 3, "'\\' at end of line"},
      {"crlf", h + "  a\r\n", 3, "carriage return"},
      {"empty_line", "\n", 3, "empty line"},
      {"blank_line", " \n", 3, "expected 32 hex digits"},
      {"hash_after_header", "# comment\n", 3, "only the header may start with '#'"},
      {"no_final_newline", h + "  last", 3, "no newline at end of file"},
      {"overlong_line", h + "  " + std::string(kManifestMaxLineBytes, 'x') + "\n", 3,
       "line longer than 32000 bytes"},
      {"overlong_unterminated", std::string(kManifestMaxLineBytes + 1, 'x'), 3,
       "line longer than 32000 bytes"},
  };
}

TEST(ManifestCorrupt, EveryCaseIsRejectedWithItsLineNumber) {
  const std::string prefix = std::string(kManifestHeader) + "\n" + kHelloHex + "  good\n";
  for (const CorruptCase& c : corrupt_cases()) {
    SCOPED_TRACE(c.name);
    auto parsed = parse_manifest(prefix + c.body);
    ASSERT_FALSE(parsed.ok());
    const std::string& msg = parsed.error().message;
    EXPECT_TRUE(msg.starts_with("line " + std::to_string(c.line) + ": ")) << msg;
    EXPECT_NE(msg.find(c.reason), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "message must be one line: " << msg;
  }
}

TEST(ManifestCorrupt, HeaderProblemsAreLineOne) {
  struct Case {
    std::string text;
    const char* reason;
  };
  for (const Case& c : std::vector<Case>{
           {"# barge-manifest v2 xxh128\n", "unsupported manifest header"},
           {"# barge-manifest v1 xxh64\n", "unsupported manifest header"},
           {"# sha256 listing\n", "unrecognized header"},
           {std::string(kManifestHeader) + " \n", "unsupported manifest header"},
           {std::string(kManifestHeader) + "\r\n", "CRLF line endings"},
       }) {
    auto parsed = parse_manifest(c.text);
    ASSERT_FALSE(parsed.ok()) << c.text;
    EXPECT_TRUE(parsed.error().message.starts_with("line 1: ")) << parsed.error().message;
    EXPECT_NE(parsed.error().message.find(c.reason), std::string::npos) << parsed.error().message;
  }
}

TEST(ManifestCorrupt, EmptyInputAndSecondHeader) {
  auto empty = parse_manifest("");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.error().message.find("empty manifest"), std::string::npos);

  const std::string twice =
      std::string(kManifestHeader) + "\n" + std::string(kManifestHeader) + "\n";
  auto parsed = parse_manifest(twice);
  ASSERT_FALSE(parsed.ok());
  EXPECT_TRUE(parsed.error().message.starts_with("line 2: ")) << parsed.error().message;
}

TEST(ManifestCorrupt, EarliestDuplicateIsReported) {
  const std::string h = kHelloHex;
  // "b" repeats on line 5, "a" on line 4: line 4 is the first repeat a reader meets.
  auto parsed = parse_manifest(h + "  b\n" + h + "  a\n" + h + "  c\n" + h + "  a\n" + h + "  b\n" +
                               h + "  b\n");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message, "line 4: duplicate path 'a' (first listed on line 2)");
}

TEST(ManifestCorrupt, ReadManifestNamesTheFile) {
  TempDir tmp;
  write_file(tmp.path() / "m", std::string(kHelloHex) + "  ../up\n");
  auto parsed = read_manifest(tmp.path() / "m");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error().message,
            "manifest " + (tmp.path() / "m").string() + ": line 1: '..' component in path '../up'");
  auto missing = read_manifest(tmp.path() / "absent");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().errnum, ENOENT);
  auto dir = read_manifest(tmp.path());
  ASSERT_FALSE(dir.ok());
}

TEST(ManifestPrintable, EscapesControlAndInvalidBytesKeepsUtf8) {
  EXPECT_EQ(printable_path("a b"), "a b");
  EXPECT_EQ(printable_path("na\xc3\xafve"), "na\xc3\xafve");
  EXPECT_EQ(printable_path("a\nb\\c\td\re"), "a\\nb\\\\c\\td\\re");
  EXPECT_EQ(printable_path(std::string("\xff\x01\xc3", 3)), "\\xff\\x01\\xc3");
  // Overlong encoding of '/' and a UTF-16 surrogate are not valid UTF-8.
  EXPECT_EQ(printable_path("\xc0\xaf\xed\xa0\x80"), "\\xc0\\xaf\\xed\\xa0\\x80");
  EXPECT_EQ(printable_path(std::string(10, 'x'), 4), "xxxx...");
}

TEST(ManifestHashFile, MatchesHashBytesAndRefusesNonFiles) {
  TempDir tmp;
  std::string big(3 * 1024 * 1024 + 17, '\0');
  for (size_t i = 0; i < big.size(); ++i) big[i] = static_cast<char>((i * 131) ^ (i >> 9));
  write_file(tmp.path() / "big", big);
  write_file(tmp.path() / "empty", "");
  auto h = hash_file(AT_FDCWD, (tmp.path() / "big").string());
  ASSERT_TRUE(h.ok()) << h.error().message;
  EXPECT_EQ(*h, hash_of(big));
  const int dirfd = ::open(tmp.path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dirfd, 0);
  auto e = hash_file(dirfd, "empty");
  ASSERT_TRUE(e.ok()) << e.error().message;
  EXPECT_EQ(*e, hash_of(""));

  fs::create_symlink("big", tmp.path() / "link");
  ASSERT_EQ(::mkfifo((tmp.path() / "fifo").c_str(), 0600), 0);
  fs::create_directory(tmp.path() / "dir");
  auto link = hash_file(dirfd, "link");
  ASSERT_FALSE(link.ok());
  EXPECT_EQ(link.error().errnum, ELOOP);
  auto fifo = hash_file(dirfd, "fifo");  // must not block waiting for a writer
  ASSERT_FALSE(fifo.ok());
  EXPECT_EQ(fifo.error().errnum, EINVAL);
  auto dir = hash_file(dirfd, "dir");
  ASSERT_FALSE(dir.ok());
  EXPECT_EQ(dir.error().errnum, EISDIR);
  auto missing = hash_file(dirfd, "absent");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().errnum, ENOENT);
  ::close(dirfd);
}

// --- xxhsum compatibility, both directions, with the real tool ---------------------------

// Runs a shell command in `dir`; returns its exit status. Only stdout is captured: xxhsum
// writes terminal control ("\r" and padding) to stderr even when it is not a terminal.
int run_in(const fs::path& dir, const std::string& cmd, std::string* output) {
  const fs::path out = dir.parent_path() / (dir.filename().string() + ".out");
  const std::string full =
      "cd '" + dir.string() + "' && " + cmd + " >'" + out.string() + "' 2>/dev/null";
  const int rc = std::system(full.c_str());
  if (output) *output = read_file(out);
  fs::remove(out);
  return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

std::vector<std::string> ordinary_names() {
  return {"a.txt", "with space", "sub/dir/deep.bin", "na\xc3\xafve.txt", "-dash", "#hash", "empty"};
}

void make_tree(const fs::path& root) {
  for (const auto& name : ordinary_names()) {
    write_file(root / name, name == "empty" ? std::string() : "content of " + name);
  }
}

TEST(ManifestXxhsum, XxhsumChecksBargeManifest) {
  if (::access(kXxhsum, X_OK) != 0) GTEST_SKIP() << kXxhsum << " is not installed";
  TempDir tmp;
  const fs::path tree = tmp.path() / "tree";
  make_tree(tree);
  ManifestWriter writer;
  for (const auto& name : ordinary_names()) {
    auto h = hash_file(AT_FDCWD, (tree / name).string());
    ASSERT_TRUE(h.ok()) << h.error().message;
    writer.add(name, *h);
  }
  const fs::path manifest = tmp.path() / "MANIFEST";
  ASSERT_TRUE(writer.write_to(manifest).ok());

  std::string out;
  // xxhsum 0.8.1 has no comment syntax: it counts the header as one improperly formatted
  // line, says so, and still exits 0 (it fails only under --strict).
  ASSERT_EQ(run_in(tree, std::string(kXxhsum) + " -c '" + manifest.string() + "'", &out), 0) << out;
  for (const auto& name : ordinary_names()) {
    EXPECT_NE(out.find(name + ": OK\n"), std::string::npos) << name << "\n" << out;
  }
  EXPECT_NE(out.find("1 line is improperly formatted"), std::string::npos) << out;
  // Without the header the entry lines alone pass even --strict.
  ASSERT_EQ(
      run_in(tree, "tail -n +2 '" + manifest.string() + "' | " + kXxhsum + " -c --strict", &out), 0)
      << out;

  // And xxhsum really compares: a changed file fails.
  write_file(tree / "a.txt", "changed");
  EXPECT_NE(run_in(tree, std::string(kXxhsum) + " -c '" + manifest.string() + "'", &out), 0);
  EXPECT_NE(out.find("a.txt: FAILED"), std::string::npos) << out;
}

TEST(ManifestXxhsum, BargeParsesXxhsumOutput) {
  if (::access(kXxhsum, X_OK) != 0) GTEST_SKIP() << kXxhsum << " is not installed";
  TempDir tmp;
  const fs::path tree = tmp.path() / "tree";
  make_tree(tree);
  // xxhsum 0.8.1 writes names verbatim, so a backslash arrives raw in a plain line.
  write_file(tree / "back\\slash", "bs");
  std::vector<std::string> names = ordinary_names();
  names.push_back("back\\slash");
  std::string cmd = std::string(kXxhsum) + " -H2 --";
  for (const auto& n : names) cmd += " '" + n + "'";
  std::string out;
  ASSERT_EQ(run_in(tree, cmd, &out), 0) << out;
  auto parsed = parse_manifest(out);
  ASSERT_TRUE(parsed.ok()) << parsed.error().message << "\n" << out;
  ASSERT_EQ(parsed->size(), names.size());
  for (size_t i = 0; i < names.size(); ++i) {
    EXPECT_EQ((*parsed)[i].path, names[i]);
    auto h = hash_file(AT_FDCWD, (tree / names[i]).string());
    ASSERT_TRUE(h.ok()) << h.error().message;
    EXPECT_EQ((*parsed)[i].hash, *h) << names[i];
  }
}

TEST(ManifestXxhsum, OldXxhsumSkipsEscapedLinesInsteadOfMisreadingThem) {
  if (::access(kXxhsum, X_OK) != 0) GTEST_SKIP() << kXxhsum << " is not installed";
  // The documented limit of compatibility: xxhsum 0.8.1 does not decode GNU escapes. The
  // leading '\' makes the hash field 33 characters, so it reports the line as improperly
  // formatted rather than opening a wrongly named file.
  TempDir tmp;
  const fs::path tree = tmp.path() / "tree";
  write_file(tree / "new\nline", "nl");
  write_file(tree / "plain", "p");
  ManifestWriter writer;
  for (const char* n : {"new\nline", "plain"}) {
    auto h = hash_file(AT_FDCWD, (tree / n).string());
    ASSERT_TRUE(h.ok()) << h.error().message;
    writer.add(n, *h);
  }
  ASSERT_TRUE(writer.write_to(tmp.path() / "m").ok());
  std::string out;
  EXPECT_EQ(run_in(tree, std::string(kXxhsum) + " -c '" + (tmp.path() / "m").string() + "'", &out),
            0)
      << out;
  EXPECT_NE(out.find("plain: OK"), std::string::npos) << out;
  EXPECT_NE(out.find("2 lines are improperly formatted"), std::string::npos) << out;
}

}  // namespace
}  // namespace barge::pipeline
