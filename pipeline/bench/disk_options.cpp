// barge bench disk's modes and the checks on its options.
#include <string>

#include "pipeline/bench/disk.hpp"

namespace barge::pipeline::bench {
namespace {

struct ModeName {
  RwMode mode;
  const char* name;
};
constexpr ModeName kModes[] = {{RwMode::kRead, "read"},           {RwMode::kWrite, "write"},
                               {RwMode::kRandRead, "randread"},   {RwMode::kRandWrite, "randwrite"},
                               {RwMode::kReadWrite, "readwrite"}, {RwMode::kRandRw, "randrw"}};

}  // namespace

std::optional<RwMode> parse_rw_mode(std::string_view name) {
  for (const auto& m : kModes) {
    if (name == m.name) return m.mode;
  }
  if (name == "rw") return RwMode::kReadWrite;  // fio's alias
  return std::nullopt;
}

const char* rw_mode_name(RwMode mode) {
  for (const auto& m : kModes) {
    if (m.mode == mode) return m.name;
  }
  return "?";
}

bool is_random(RwMode m) {
  return m == RwMode::kRandRead || m == RwMode::kRandWrite || m == RwMode::kRandRw;
}
bool reads_any(RwMode m) { return m != RwMode::kWrite && m != RwMode::kRandWrite; }
bool writes_any(RwMode m) { return m != RwMode::kRead && m != RwMode::kRandRead; }

io::Status validate(const DiskBenchOptions& o) {
  auto bad = [](const std::string& what) { return io::Status(io::Error::plain(what)); };
  if (o.path.empty()) return bad("bench disk: PATH is required");
  if (o.block_bytes == 0) return bad("--bs must be at least 1 byte");
  if (o.size_bytes == 0) return bad("--size is required and must be more than 0");
  if (o.threads == 0) return bad("--threads must be at least 1");
  if (o.size_bytes / o.threads < o.block_bytes) {
    return bad("--size " + std::to_string(o.size_bytes) + " is smaller than --bs " +
               std::to_string(o.block_bytes) + (o.threads > 1 ? " per thread" : ""));
  }
  if (o.queue_depth == 0 || o.queue_depth > 4096) return bad("--qd must be 1 to 4096");
  if (o.mix_read_percent > 100) return bad("--mix must be 0 to 100 (percent reads)");
  if (o.interval_s <= 0) return bad("--interval must be more than 0 seconds");
  if (o.runtime_s < 0 || o.ramp_s < 0 || o.stonewall_s < 0)
    return bad("--runtime, --ramp and --stonewall must not be negative");
  if (o.steady_state_percent > 0 && o.runtime_s <= 0)
    return bad("--steady-state needs --runtime (the longest the run may take)");
  if (o.steady_state_percent > 0 && o.steady_window_s < 2 * o.interval_s)
    return bad("--steady-window must hold at least two intervals");
  if (o.find_knee && (o.knee_max_depth == 0 || o.knee_max_depth > 4096))
    return bad("--max-qd must be 1 to 4096");
  return io::Status::success();
}

}  // namespace barge::pipeline::bench
