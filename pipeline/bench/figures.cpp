#include "pipeline/bench/figures.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

namespace barge::pipeline::bench::detail {

void write_figures(WireWriter& w, const Figures& f) {
  w.u64(f.bytes);
  w.u64(f.ops);
  w.i64(static_cast<int64_t>(std::llround(f.seconds * 1e9)));
  w.str(f.latency.serialize());
}

Figures read_figures(WireReader& r) {
  Figures f;
  f.bytes = r.u64();
  f.ops = r.u64();
  f.seconds = static_cast<double>(r.i64()) / 1e9;
  f.latency = LatencyHistogram::deserialize(r.str());
  return f;
}

void add(Figures& into, const Figures& f) {
  into.bytes += f.bytes;
  into.ops += f.ops;
  into.seconds = std::max(into.seconds, f.seconds);
  into.latency.merge(f.latency);
}

nlohmann::json figures_json(const Figures& f) {
  return nlohmann::json{{"bandwidth_bytes_per_second", f.bandwidth()},
                        {"iops", f.iops()},
                        {"bytes", f.bytes},
                        {"ops", f.ops},
                        {"seconds", f.seconds},
                        {"latency_ns", latency_json(f.latency)}};
}

std::string us(uint64_t ns) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f", static_cast<double>(ns) / 1e3);
  return b;
}

std::string size_text(uint64_t bytes) {
  char b[32];
  double v = static_cast<double>(bytes);
  if (bytes >= (1ull << 30)) {
    std::snprintf(b, sizeof b, "%.1f GiB", v / (1ull << 30));
  } else if (bytes >= (1ull << 20)) {
    std::snprintf(b, sizeof b, "%.1f MiB", v / (1ull << 20));
  } else if (bytes >= 1024) {
    std::snprintf(b, sizeof b, "%.0f KiB", v / 1024);
  } else {
    std::snprintf(b, sizeof b, "%llu B", static_cast<unsigned long long>(bytes));
  }
  return b;
}

std::string latency_text(const LatencyHistogram& h) {
  return "min " + us(h.min()) + "  mean " + us(static_cast<uint64_t>(h.mean())) + "  p50 " +
         us(h.percentile(50)) + "  p90 " + us(h.percentile(90)) + "  p99 " + us(h.percentile(99)) +
         "  p99.9 " + us(h.percentile(99.9)) + "  p99.99 " + us(h.percentile(99.99)) + "  max " +
         us(h.max()) + " (us)";
}

std::string throughput_text(const Figures& f) {
  char b[160];
  std::snprintf(b, sizeof b, "%.1f MiB/s (%.1f MB/s), %.0f IOPS, %s in %.2f s",
                f.bandwidth() / 1048576.0, f.bandwidth() / 1e6, f.iops(),
                size_text(f.bytes).c_str(), f.seconds);
  return b;
}

std::string interval_text(size_t index, double interval_s, const Figures& f) {
  char b[96];
  std::snprintf(b, sizeof b, "[%7.1f s] %9.1f MiB/s %9.0f IOPS  ",
                interval_s * static_cast<double>(index + 1), f.bandwidth() / 1048576.0, f.iops());
  return b + std::string("p50 ") + us(f.latency.percentile(50)) + "  p99 " +
         us(f.latency.percentile(99)) + "  p99.9 " + us(f.latency.percentile(99.9)) + "  max " +
         us(f.latency.max()) + " us";
}

}  // namespace barge::pipeline::bench::detail
