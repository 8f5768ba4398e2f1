// barge bench net: rank-to-rank throughput over MPI and over barge's own TCP streams (raw,
// TLS 1.3, and the authenticated plaintext channel of --insecure-no-encryption), 1..N
// streams per pair, with the statistics of bench disk: mergeable latency histograms, a
// per-interval timeline, per-pair figures and errors by kind.
//
// Pairs: under mpirun/srun with 2k ranks, rank r < k sends to rank r + k (the pairing of the
// OSU multi-pair bandwidth test, so that with block placement the first half of the ranks
// sends across the network to the second half). Without MPI, one process runs both ends over
// loopback (the cost of the stream layers themselves).
//
// Every block carries a header (sequence number, last-block flag) that the receiver checks;
// a block's latency is the time the receiver waited for it, whole. A separate ping-pong of
// small messages per transport gives the round-trip time.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "io/result.hpp"
#include "pipeline/bench/disk.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline::bench {

struct NetBenchOptions {
  std::vector<std::string> transports;  // mpi, tcp, tls, plain; empty: mpi (2+ ranks), tcp, tls
  std::vector<unsigned> streams = {1, 2, 4, 8};  // one run per count and transport
  uint64_t block_bytes = 1ull << 20;
  double runtime_s = 3;     // per run; 0 with size_bytes
  uint64_t size_bytes = 0;  // instead of a runtime: bytes per pair and run
  double interval_s = 1;
  unsigned ping_count = 1000;  // round trips per transport (0: none); at most 2 s
  uint64_t ping_bytes = 64;
  std::string net;  // CIDR the receivers' addresses are taken from ("10.50.0.0/24")
  int timeout_ms = 10000;
  bool quiet = false;
  bool print_intervals = false;
};

// Checks the options alone (the flag named in the message); `ranks` for the pairing.
io::Status validate(const NetBenchOptions& o, int ranks);
std::vector<std::string> default_transports(int ranks);

struct NetRun {
  std::string transport;
  unsigned streams = 0;
  Figures whole;                   // every pair; latency: per block, at the receiver
  std::vector<Figures> intervals;  // not cumulative
  std::vector<RankFigures> pairs;  // rank = the receiving rank
  std::map<std::string, uint64_t> errors;
  double cpu_seconds = 0;  // user + system, every rank, during the transfer
};

struct NetPing {
  std::string transport;
  LatencyHistogram round_trip;  // every pair's round trips
};

struct NetBenchResult {
  NetBenchOptions options;
  int rank_count = 1;
  int pair_count = 1;
  std::vector<NetRun> runs;
  std::vector<NetPing> pings;
  std::optional<size_t> best;  // the run with the highest bandwidth
  std::string failure;         // the first error that stopped the bench
  int exit_code = 0;
};

// Collective: every rank calls it with the same options. Only rank 0's result is complete.
NetBenchResult run_net_bench(const NetBenchOptions& o, transport::Comm& comm);

nlohmann::json to_json(const NetBenchResult& r);
std::string human_summary(const NetBenchResult& r);

}  // namespace barge::pipeline::bench
