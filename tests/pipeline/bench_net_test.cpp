// barge bench net in one process (both ends over loopback): every transport moves exactly
// the bytes asked for, in order, with the timeline and the histograms adding up; the
// options' checks; where receivers listen, encoded and decoded; strangers on the port ignored.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include <unistd.h>

#include "pipeline/bench/net.hpp"
#include "pipeline/bench/net_links.hpp"
#include "pipeline/core/wire.hpp"
#include "transport/net/endpoint.hpp"

namespace barge::pipeline::bench {
namespace {

NetBenchOptions small(std::vector<std::string> transports) {
  NetBenchOptions o;
  o.transports = std::move(transports);
  o.streams = {1, 3};
  o.block_bytes = 256 << 10;
  o.size_bytes = 12 << 20;  // 48 blocks: 48 on one stream, 16 on each of three
  o.runtime_s = 0;
  o.interval_s = 0.05;
  o.ping_count = 50;
  o.quiet = true;
  return o;
}

TEST(BenchNet, EveryTransportMovesExactlyTheBytesAskedForInOrder) {
  auto comm = transport::make_solo_comm();
  NetBenchResult r = run_net_bench(small({"tcp", "tls", "plain"}), *comm);
  ASSERT_TRUE(r.failure.empty()) << r.failure;
  EXPECT_EQ(r.exit_code, 0);
  ASSERT_EQ(r.runs.size(), 6u);
  for (const auto& run : r.runs) {
    SCOPED_TRACE(run.transport + " x" + std::to_string(run.streams));
    EXPECT_EQ(run.whole.bytes, 12u << 20);
    EXPECT_EQ(run.whole.ops, 48u);
    EXPECT_EQ(run.whole.latency.count(), 48u);
    EXPECT_TRUE(run.errors.empty());
    EXPECT_GT(run.whole.seconds, 0);
    EXPECT_GT(run.cpu_seconds, 0);
    uint64_t bytes = 0, ops = 0;
    for (const auto& iv : run.intervals) {
      bytes += iv.bytes;
      ops += iv.latency.count();
      EXPECT_GT(iv.seconds, 0);
      EXPECT_LE(iv.seconds, 0.05 + 1e-9);
    }
    EXPECT_EQ(bytes, run.whole.bytes);  // per interval, not cumulative: they sum to the run
    EXPECT_EQ(ops, 48u);
    ASSERT_EQ(run.pairs.size(), 1u);
    EXPECT_EQ(run.pairs[0].whole.bytes, run.whole.bytes);
  }
  ASSERT_EQ(r.pings.size(), 3u);
  for (const auto& p : r.pings) {
    EXPECT_EQ(p.round_trip.count(), 50u) << p.transport;
    EXPECT_GT(p.round_trip.min(), 0u);
  }
  ASSERT_TRUE(r.best);
  for (const auto& run : r.runs)
    EXPECT_LE(run.whole.bandwidth(), r.runs[*r.best].whole.bandwidth());
}

TEST(BenchNet, TheJsonHoldsTheContractFields) {
  auto comm = transport::make_solo_comm();
  NetBenchOptions o = small({"tcp"});
  o.streams = {2};
  nlohmann::json j = to_json(run_net_bench(o, *comm));
  for (const char* f : {"bandwidth_bytes_per_second", "iops", "latency_ns", "intervals", "ranks",
                        "errors", "transport", "streams", "runs", "round_trip"})
    EXPECT_TRUE(j.contains(f)) << f;
  for (const char* f : {"min", "mean", "p50", "p90", "p99", "p99_9", "p99_99", "max"})
    EXPECT_TRUE(j["latency_ns"].contains(f)) << f;
  EXPECT_EQ(j["transport"], "tcp");
  EXPECT_EQ(j["streams"], 2);
  EXPECT_EQ(j["round_trip"]["tcp"]["count"], 50);
  EXPECT_FALSE(human_summary(run_net_bench(o, *comm)).empty());
}

TEST(BenchNet, OptionsAreCheckedNamingTheFlag) {
  auto msg = [](const NetBenchOptions& o, int ranks) {
    auto st = validate(o, ranks);
    return st ? std::string() : st.error().message;
  };
  NetBenchOptions o;
  EXPECT_EQ(msg(o, 1), "");
  EXPECT_EQ(msg(o, 4), "");
  EXPECT_NE(msg(o, 3).find("even number of ranks"), std::string::npos);
  o.transports = {"udp"};
  EXPECT_NE(msg(o, 2).find("--transport udp"), std::string::npos);
  o.transports = {"mpi"};
  EXPECT_NE(msg(o, 1).find("--transport mpi"), std::string::npos);
  EXPECT_EQ(msg(o, 2), "");
  o = NetBenchOptions{};
  o.streams = {0};
  EXPECT_NE(msg(o, 1).find("--streams 0"), std::string::npos);
  o = NetBenchOptions{};
  o.block_bytes = 8;
  EXPECT_NE(msg(o, 1).find("--bs"), std::string::npos);
  o = NetBenchOptions{};
  o.size_bytes = 1000;
  EXPECT_NE(msg(o, 1).find("--size 1000"), std::string::npos);
  o = NetBenchOptions{};
  o.net = "10.50.0.0";
  EXPECT_NE(msg(o, 1).find("--net 10.50.0.0"), std::string::npos);
  o.net = "10.50.0.0/33";
  EXPECT_NE(msg(o, 1).find("--net"), std::string::npos);
  o.net = "10.50.0.0/24";
  EXPECT_EQ(msg(o, 1), "");
  EXPECT_EQ(default_transports(1), (std::vector<std::string>{"tcp", "tls"}));
  EXPECT_EQ(default_transports(2), (std::vector<std::string>{"mpi", "tcp", "tls"}));
}

TEST(BenchNet, AddressesAreMatchedAgainstTheNetwork) {
  EXPECT_TRUE(detail::in_cidr("10.50.0.7", "10.50.0.0/24"));
  EXPECT_FALSE(detail::in_cidr("10.50.1.7", "10.50.0.0/24"));
  EXPECT_TRUE(detail::in_cidr("192.168.3.4", "0.0.0.0/0"));
  EXPECT_TRUE(detail::in_cidr("127.0.0.1", "127.0.0.1/32"));
  EXPECT_FALSE(detail::in_cidr("::1", "127.0.0.1/32"));
  auto l = detail::listen_for_streams("127.0.0.0/8");
  ASSERT_TRUE(l) << l.error().message;
  EXPECT_EQ(l->info.addresses, std::vector<std::string>{"127.0.0.1"});
  EXPECT_NE(l->info.port, 0);
  auto none = detail::listen_for_streams("203.0.113.0/24");
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message.find("--net 203.0.113.0/24"), std::string::npos);
}

TEST(BenchNet, ListenInfoRoundTripsAndRefusesTruncatedBytes) {
  detail::ListenInfo info{"h2", 40123, {"10.50.0.2", "127.0.0.1"}};
  std::string bytes = info.encode();
  detail::ListenInfo back = detail::ListenInfo::decode(bytes);
  EXPECT_EQ(back.host, "h2");
  EXPECT_EQ(back.port, 40123);
  EXPECT_EQ(back.addresses, info.addresses);
  for (size_t cut = 0; cut < bytes.size(); ++cut)
    EXPECT_THROW(detail::ListenInfo::decode(bytes.substr(0, cut)), std::runtime_error) << cut;
  std::string huge = bytes;
  huge[13] = '\x7f';  // the address count (bytes 10-13) far beyond the bytes
  EXPECT_THROW(detail::ListenInfo::decode(huge), std::runtime_error);
}

TEST(BenchNet, AStrangerOnThePortIsIgnoredAndTheRealSenderAccepted) {
  auto l = detail::listen_for_streams("127.0.0.0/8");
  ASSERT_TRUE(l);
  detail::StreamSetup setup{"tcp", "", 5, 77, 3000};
  std::unique_ptr<detail::Link> accepted;
  std::string error;
  std::thread receiver([&] {
    try {
      accepted = detail::accept_stream(l->fd.get(), setup);
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  {  // garbage, then a hello from the wrong run
    auto fd = transport::connect_tcp(transport::Endpoint{"127.0.0.1", l->info.port}, 1000);
    ASSERT_TRUE(fd);
    ASSERT_EQ(::write(fd->get(), "GET / HTTP/1.0\r\n\r\n", 18), 18);
    detail::StreamSetup wrong = setup;
    wrong.run_id = 78;
    auto other = detail::connect_stream(l->info, wrong);
    auto real = detail::connect_stream(l->info, setup);
    std::string msg = "from the real sender";
    real->send(std::as_bytes(std::span(msg)));
    receiver.join();
  }
  ASSERT_TRUE(accepted) << error;
  std::string got(20, '\0');
  accepted->recv(std::as_writable_bytes(std::span(got)));
  EXPECT_EQ(got, "from the real sender");
}

TEST(BenchNet, NoSenderMeansAClearErrorWithinTheTimeout) {
  auto l = detail::listen_for_streams("127.0.0.0/8");
  ASSERT_TRUE(l);
  detail::StreamSetup setup{"tcp", "", 1, 1, 300};
  try {
    detail::accept_stream(l->fd.get(), setup);
    FAIL() << "accepted nothing";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no sender connected in time"), std::string::npos);
  }
}

}  // namespace
}  // namespace barge::pipeline::bench
