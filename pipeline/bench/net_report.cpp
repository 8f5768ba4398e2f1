// barge bench net: the options' checks, the JSON contract and the human summary.
#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "pipeline/bench/figures.hpp"
#include "pipeline/bench/net.hpp"
#include "pipeline/bench/net_links.hpp"

namespace barge::pipeline::bench {
namespace {

using nlohmann::json;

json run_json(const NetRun& run, double interval_s) {
  json j = detail::figures_json(run.whole);
  j["transport"] = run.transport;
  j["streams"] = run.streams;
  j["cpu_seconds"] = run.cpu_seconds;
  double gb = static_cast<double>(run.whole.bytes) / 1e9;
  j["cpu_seconds_per_gb"] = gb > 0 ? run.cpu_seconds / gb : 0;
  j["intervals"] = json::array();
  for (size_t i = 0; i < run.intervals.size(); ++i) {
    json iv = detail::figures_json(run.intervals[i]);
    iv["start_s"] = interval_s * static_cast<double>(i);
    j["intervals"].push_back(iv);
  }
  j["ranks"] = json::array();
  for (const auto& p : run.pairs) {
    json pj = detail::figures_json(p.whole);
    pj["rank"] = p.rank;
    pj["host"] = p.host;
    j["ranks"].push_back(pj);
  }
  j["errors"] = json::object();
  for (const auto& [kind, n] : run.errors) j["errors"][kind] = n;
  return j;
}

}  // namespace

std::vector<std::string> default_transports(int ranks) {
  if (ranks > 1) return {"mpi", "tcp", "tls"};
  return {"tcp", "tls"};
}

io::Status validate(const NetBenchOptions& o, int ranks) {
  if (ranks > 1 && ranks % 2 != 0)
    return io::Error::plain("needs an even number of ranks (rank r sends to rank r + " +
                            std::string("ranks/2); this job has ") + std::to_string(ranks));
  for (const auto& t : o.transports) {
    if (t != "mpi" && t != "tcp" && t != "tls" && t != "plain")
      return io::Error::plain("--transport " + t + ": not one of mpi, tcp, tls, plain");
    if (t == "mpi" && ranks < 2)
      return io::Error::plain(
          "--transport mpi: needs two ranks or more (run under mpirun or srun)");
  }
  if (o.streams.empty()) return io::Error::plain("--streams: give at least one count");
  for (unsigned s : o.streams)
    if (s < 1 || s > 256) return io::Error::plain("--streams " + std::to_string(s) + ": 1 to 256");
  if (o.block_bytes < 64 || o.block_bytes > (1ull << 30))
    return io::Error::plain("--bs " + std::to_string(o.block_bytes) + ": 64 bytes to 1 GiB");
  if (o.size_bytes == 0 && !(o.runtime_s > 0))
    return io::Error::plain("--runtime: must be positive (or give --size)");
  if (o.size_bytes && o.size_bytes < o.block_bytes)
    return io::Error::plain("--size " + std::to_string(o.size_bytes) +
                            ": smaller than the block size (--bs)");
  if (!(o.interval_s > 0)) return io::Error::plain("--interval: must be positive");
  if (o.ping_bytes < 1 || o.ping_bytes > (1u << 20))
    return io::Error::plain("--ping-bytes: 1 byte to 1 MiB");
  if (!o.net.empty()) return detail::validate_cidr(o.net);
  return {};
}

nlohmann::json to_json(const NetBenchResult& r) {
  const auto& o = r.options;
  json j{{"command", "bench net"},
         {"options",
          {{"transports", o.transports},
           {"streams", o.streams},
           {"block_bytes", o.block_bytes},
           {"runtime_s", o.runtime_s},
           {"size_bytes", o.size_bytes},
           {"interval_s", o.interval_s},
           {"ping_count", o.ping_count},
           {"ping_bytes", o.ping_bytes},
           {"net", o.net}}},
         {"ranks_total", r.rank_count},
         {"pairs", r.pair_count},
         {"exit_code", r.exit_code}};
  if (!r.failure.empty()) j["failure"] = r.failure;
  // The top-level fields of the contract describe the fastest run.
  if (r.best) j.update(run_json(r.runs[*r.best], o.interval_s));
  j["runs"] = json::array();
  for (const auto& run : r.runs) j["runs"].push_back(run_json(run, o.interval_s));
  j["round_trip"] = json::object();
  for (const auto& p : r.pings) {
    json pj = latency_json(p.round_trip);
    pj["count"] = p.round_trip.count();
    j["round_trip"][p.transport] = pj;
  }
  return j;
}

std::string human_summary(const NetBenchResult& r) {
  const auto& o = r.options;
  std::string out = "bench net: " + std::to_string(r.rank_count) +
                    (r.rank_count == 1 ? " process, loopback" : " ranks") + ", " +
                    std::to_string(r.pair_count) + (r.pair_count == 1 ? " pair" : " pairs") +
                    ", blocks of " + detail::size_text(o.block_bytes) + ", ";
  char b[200];
  if (o.size_bytes) {
    out += detail::size_text(o.size_bytes) + " per pair and run\n";
  } else {
    std::snprintf(b, sizeof b, "%.1f s per run\n", o.runtime_s);
    out += b;
  }
  out += "  transport streams      MiB/s       MB/s  block p50 ms  p99 ms  max ms  cpu s/GB\n";
  for (const auto& run : r.runs) {
    const auto& h = run.whole.latency;
    double gb = static_cast<double>(run.whole.bytes) / 1e9;
    std::snprintf(b, sizeof b, "  %-9s %7u %10.1f %10.1f %13.3f %7.3f %7.3f %9.3f\n",
                  run.transport.c_str(), run.streams, run.whole.bandwidth() / 1048576.0,
                  run.whole.bandwidth() / 1e6, static_cast<double>(h.percentile(50)) / 1e6,
                  static_cast<double>(h.percentile(99)) / 1e6, static_cast<double>(h.max()) / 1e6,
                  gb > 0 ? run.cpu_seconds / gb : 0.0);
    out += b;
    for (const auto& [kind, n] : run.errors)
      out += "    errors: " + kind + " " + std::to_string(n) + "\n";
  }
  for (const auto& p : r.pings)
    out += "  round trip (" + detail::size_text(o.ping_bytes) + ", " + p.transport + ")  " +
           detail::latency_text(p.round_trip) + "\n";
  if (r.best) {
    const auto& best = r.runs[*r.best];
    out += "  fastest     " + best.transport + " with " + std::to_string(best.streams) +
           (best.streams == 1 ? " stream: " : " streams: ") + detail::throughput_text(best.whole) +
           "\n";
    if (r.pair_count > 1)
      for (const auto& p : best.pairs)
        out += "  rank " + std::to_string(p.rank) + " (" + p.host + ") received " +
               detail::throughput_text(p.whole) + "\n";
  }
  if (!r.failure.empty()) out += "  stopped: " + r.failure + "\n";
  return out;
}

}  // namespace barge::pipeline::bench
