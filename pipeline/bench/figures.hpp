// What the instruments of pipeline/bench share below their public headers: Figures on the
// wire (gathered from ranks) and in reports (the JSON fields of the contract, the human
// lines), and the process's CPU time. Internal to pipeline/bench.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "pipeline/bench/disk.hpp"
#include "pipeline/core/wire.hpp"

namespace barge::pipeline::bench::detail {

void write_figures(WireWriter& w, const Figures& f);
// Throws std::runtime_error on malformed bytes.
Figures read_figures(WireReader& r);
// Sums bytes, ops and bins; the seconds are the longer of the two (parts that ran together).
void add(Figures& into, const Figures& f);

// {bandwidth_bytes_per_second, iops, bytes, ops, seconds, latency_ns}
nlohmann::json figures_json(const Figures& f);

std::string us(uint64_t ns);            // "12.3" (microseconds)
std::string size_text(uint64_t bytes);  // "4.0 GiB", "512 KiB"
std::string latency_text(const LatencyHistogram& h);
std::string throughput_text(const Figures& f);  // "... MiB/s (... MB/s), ... IOPS, ... in ... s"

// "[   2.0 s]    812.3 MiB/s      812 IOPS  p50 ...  p99 ...  p99.9 ...  max ... us"
std::string interval_text(size_t index, double interval_s, const Figures& f);

}  // namespace barge::pipeline::bench::detail
