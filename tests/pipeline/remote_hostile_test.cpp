// A hostile or broken sender against a real barge recv (run_recv on loopback, TLS with the
// right key): paths that leave DST, a chunk whose checksum is wrong, an oversized frame, a
// frame cut short. Each is refused and named; nothing is written outside DST, and no file
// appears that is not complete and checked.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "pipeline/core/wire.hpp"
#include "pipeline/remote/protocol.hpp"
#include "pipeline/remote/remote.hpp"
#include "pipeline/remote/streams.hpp"
#include "tests/test_tmpdir.hpp"

namespace barge::pipeline::remote {
namespace {

namespace fs = std::filesystem;
using transport::FrameStream;
using transport::FrameType;

class HostileSender : public ::testing::Test {
 protected:
  void SetUp() override {
    key_ = std::string(32, 'k');
    std::string key_path = dir_.path() + "/key";
    std::ofstream(key_path) << key_;
    ::chmod(key_path.c_str(), 0600);
    dst_ = dir_.path() + "/dst";
    opts_.destination = dst_;
    opts_.listen = "127.0.0.1:0";
    opts_.psk_file = key_path;
    opts_.once = true;
    opts_.port_file = dir_.path() + "/port";
    opts_.progress = ProgressMode::kNone;
    opts_.handshake_timeout_ms = 3000;
    receiver_ = std::thread([this] { result_ = run_recv(opts_); });
    for (int i = 0; i < 200 && !fs::exists(opts_.port_file); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    std::ifstream(opts_.port_file) >> port_;
    ASSERT_GT(port_, 0);
  }
  void TearDown() override {
    if (receiver_.joinable()) receiver_.join();
  }

  Hello hello(uint64_t entries, uint64_t files, uint64_t bytes) {
    Hello h;
    h.session = new_session_id();
    h.streams = 1;
    h.capabilities = capabilities();
    h.chunk_bytes = 1 << 20;
    h.files_per_unit = 16;
    h.sources = {{"src", true}};
    h.entries = entries;
    h.files = files;
    h.bytes = bytes;
    return h;
  }
  std::unique_ptr<FrameStream> open(const Hello& h) {
    Welcome w;
    return open_stream(ConnectOptions{{"127.0.0.1", static_cast<uint16_t>(port_)},
                                      transport::TlsAuth{key_, std::nullopt},
                                      "",
                                      5000},
                       h, w);
  }
  // Control stream with the plan {src/, src/f (4 bytes)} sent and ready received, and the
  // data stream opened.
  void start_file_transfer() {
    h_ = hello(2, 1, 4);
    control_ = open(h_);
    control_->send(FrameType::kPlan, plan({entry("", io::FileType::kDirectory),
                                           entry("f", io::FileType::kRegular, 4)}));
    control_->expect(FrameType::kReady, kMaxControlPayload);
    Hello d = h_;
    d.stream = 1;
    data_ = open(d);
  }
  static Entry entry(const std::string& rel, io::FileType type, uint64_t size = 0) {
    Entry e;
    e.rel = rel;
    e.meta.type = type;
    e.meta.mode = type == io::FileType::kDirectory ? 0755 : 0644;
    e.meta.size_bytes = size;
    e.meta.blocks_512 = (size + 511) / 512;
    e.meta.nlink = 1;
    return e;
  }
  static std::string plan(const std::vector<Entry>& entries) {
    WireWriter w;
    for (const Entry& e : entries) write_entry(w, e);
    return w.take();
  }
  void send_unit(const WireItem& it, std::string_view bytes) {
    std::string table = encode_unit_table({it});
    uint32_t n = static_cast<uint32_t>(table.size());
    data_->send(FrameType::kUnit,
                {std::as_bytes(std::span<const uint32_t>(&n, 1)),
                 std::as_bytes(std::span<const char>(table.data(), table.size())),
                 std::as_bytes(std::span<const char>(bytes.data(), bytes.size()))});
  }
  nlohmann::json report() {
    return nlohmann::json::parse(control_->expect(FrameType::kDone, kMaxControlPayload));
  }
  // Nothing but DST (and the test's own files) in the test directory; no temporaries in DST.
  void expect_nothing_stray() {
    for (const auto& e : fs::directory_iterator(dir_.path())) {
      std::string name = e.path().filename();
      EXPECT_TRUE(name == "dst" || name == "key" || name == "port") << name;
    }
    if (!fs::exists(dst_)) return;
    for (const auto& e : fs::recursive_directory_iterator(dst_))
      EXPECT_EQ(e.path().filename().string().find(".barge"), std::string::npos) << e.path();
  }

  test::TempDir dir_;
  std::string key_, dst_;
  RecvOptions opts_;
  std::thread receiver_;
  RunResult result_;
  int port_ = 0;
  Hello h_;
  std::unique_ptr<FrameStream> control_, data_;
};

TEST_F(HostileSender, APathOutOfDstIsRefusedBeforeAnythingIsWritten) {
  control_ = open(hello(2, 1, 4));
  control_->send(FrameType::kPlan, plan({entry("", io::FileType::kDirectory),
                                         entry("../evil", io::FileType::kRegular, 4)}));
  try {
    control_->expect(FrameType::kReady, kMaxControlPayload);
    FAIL() << "the receiver accepted ../evil";
  } catch (const transport::TlsError& ex) {
    EXPECT_NE(std::string(ex.what()).find("not a path of names"), std::string::npos) << ex.what();
  }
  receiver_.join();
  EXPECT_EQ(result_.exit_code, kExitFatal);
  EXPECT_FALSE(fs::exists(dst_));
  expect_nothing_stray();
}

TEST_F(HostileSender, ASourceNameWithASlashIsRefused) {
  Hello h = hello(1, 0, 0);
  h.sources = {{"../up", true}};
  EXPECT_THROW(open(h), transport::TlsError);
  receiver_.join();
  EXPECT_EQ(result_.exit_code, kExitFatal);
  expect_nothing_stray();
}

TEST_F(HostileSender, AChunkWithTheWrongChecksumIsNotPutInPlace) {
  start_file_transfer();
  WireItem it;
  it.file = 1;
  it.length = 4;
  it.wire_bytes = 4;
  it.hash = hash_bytes(std::as_bytes(std::span<const char>("abcE", 4)));
  send_unit(it, "abcd");
  data_->send(FrameType::kDone, std::string_view());
  nlohmann::json r = report();
  EXPECT_EQ(r["exit_code"], kExitPartial);
  ASSERT_EQ(r["errors"].size(), 1u);
  EXPECT_NE(r["errors"][0].get<std::string>().find("checksum mismatch"), std::string::npos);
  EXPECT_TRUE(fs::is_directory(dst_));
  EXPECT_FALSE(fs::exists(dst_ + "/f"));
  receiver_.join();
  expect_nothing_stray();
}

TEST_F(HostileSender, TheRightChecksumPutsTheFileInPlace) {
  start_file_transfer();
  WireItem it;
  it.file = 1;
  it.length = 4;
  it.wire_bytes = 4;
  it.hash = hash_bytes(std::as_bytes(std::span<const char>("abcd", 4)));
  send_unit(it, "abcd");
  data_->send(FrameType::kDone, std::string_view());
  EXPECT_EQ(report()["exit_code"], kExitOk);
  std::string got;
  std::ifstream(dst_ + "/f") >> got;
  EXPECT_EQ(got, "abcd");
  receiver_.join();
  expect_nothing_stray();
}

TEST_F(HostileSender, AnOversizedFrameStopsTheTransfer) {
  start_file_transfer();
  std::string big(4 << 20, '\0');  // over 4 + 1 MiB + two 1 MiB buffers
  try {
    data_->send(FrameType::kUnit, big);
  } catch (const transport::TlsError&) {
    // the receiver hung up after the header, as it should
  }
  nlohmann::json r = report();
  EXPECT_EQ(r["exit_code"], kExitFatal);
  EXPECT_NE(r["fatal"].get<std::string>().find("limit"), std::string::npos) << r["fatal"];
  EXPECT_FALSE(fs::exists(dst_ + "/f"));
  receiver_.join();
  expect_nothing_stray();
}

TEST_F(HostileSender, AFrameShorterThanItsTableStopsTheTransfer) {
  start_file_transfer();
  WireItem it;
  it.file = 1;
  it.length = 4;
  it.wire_bytes = 4;
  send_unit(it, "");  // the table announces 4 bytes that the frame does not hold
  nlohmann::json r = report();
  EXPECT_EQ(r["exit_code"], kExitFatal);
  EXPECT_NE(r["fatal"].get<std::string>().find("does not match"), std::string::npos) << r["fatal"];
  EXPECT_FALSE(fs::exists(dst_ + "/f"));
  receiver_.join();
  expect_nothing_stray();
}

TEST_F(HostileSender, AStreamCutMidTransferStopsIt) {
  start_file_transfer();
  data_->abort();  // no close_notify: a cut, never an end
  nlohmann::json r = report();
  // A lost link, not a protocol violation: the transfer can be resumed, its journal stays.
  EXPECT_EQ(r["exit_code"], kExitResumable);
  EXPECT_TRUE(r["resumable"].get<bool>());
  EXPECT_FALSE(fs::exists(dst_ + "/f"));
  receiver_.join();
  EXPECT_TRUE(fs::exists(dir_.path() + "/.barge-journal.dst"));
  fs::remove_all(dir_.path() + "/.barge-journal.dst");
  expect_nothing_stray();
}

}  // namespace
}  // namespace barge::pipeline::remote
