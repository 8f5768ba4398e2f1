// LatencyHistogram: bins, percentiles, merging and the byte form gathered across ranks.
#include "pipeline/bench/histogram.hpp"

#include <bit>
#include <cmath>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>

namespace barge::pipeline::bench {

// Below 2 * kSubBins a value is its own bin. Above, with m the index of the top bit, the
// value's exponent e = m - kSubBits (>= 1) selects a group of kSubBins bins of width 2^e,
// and the kSubBits bits under the top bit pick the bin in the group.
size_t LatencyHistogram::bin_of(uint64_t value) {
  if (value < 2 * kSubBins) return static_cast<size_t>(value);
  unsigned top = 63u - static_cast<unsigned>(std::countl_zero(value));
  unsigned e = top - kSubBits;
  uint64_t sub = (value >> e) - kSubBins;
  return static_cast<size_t>(kSubBins + e * kSubBins + sub);
}

uint64_t LatencyHistogram::bin_low(size_t bin) {
  if (bin < 2 * kSubBins) return bin;
  uint64_t e = bin / kSubBins - 1;
  uint64_t sub = bin % kSubBins;
  return (kSubBins + sub) << e;
}

uint64_t LatencyHistogram::bin_high(size_t bin) {
  if (bin < 2 * kSubBins) return bin;
  uint64_t e = bin / kSubBins - 1;
  return bin_low(bin) + ((uint64_t{1} << e) - 1);
}

uint64_t LatencyHistogram::bin_value(size_t bin) {
  uint64_t low = bin_low(bin);
  return low + (bin_high(bin) - low) / 2;
}

void LatencyHistogram::merge(const LatencyHistogram& other) {
  for (size_t i = 0; i < kBinCount; ++i) bins_[i] += other.bins_[i];
  count_ += other.count_;
  sum_ += other.sum_;
  if (other.count_) {
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }
}

uint64_t LatencyHistogram::percentile(double p) const {
  if (count_ == 0) return 0;
  double want = std::ceil(p / 100.0 * static_cast<double>(count_));
  uint64_t rank = want < 1 ? 1 : static_cast<uint64_t>(want);
  if (rank > count_) rank = count_;
  uint64_t seen = 0;
  for (size_t i = 0; i < kBinCount; ++i) {
    seen += bins_[i];
    if (seen >= rank) return std::clamp(bin_value(i), min(), max_);
  }
  return max_;
}

namespace {

void put_u64(std::string& out, uint64_t v) {
  char b[8];
  std::memcpy(b, &v, 8);
  out.append(b, 8);
}

uint64_t get_u64(const std::string& in, size_t& pos) {
  if (in.size() - pos < 8) throw std::runtime_error("histogram bytes truncated");
  uint64_t v;
  std::memcpy(&v, in.data() + pos, 8);
  pos += 8;
  return v;
}

}  // namespace

// count, sum (two words), min, max, number of bins, then (bin, count) pairs.
std::string LatencyHistogram::serialize() const {
  std::string out;
  put_u64(out, count_);
  put_u64(out, static_cast<uint64_t>(sum_));
  put_u64(out, static_cast<uint64_t>(sum_ >> 64));
  put_u64(out, min_);
  put_u64(out, max_);
  uint64_t used = 0;
  for (uint64_t c : bins_) used += c != 0;
  put_u64(out, used);
  for (size_t i = 0; i < kBinCount; ++i) {
    if (!bins_[i]) continue;
    put_u64(out, i);
    put_u64(out, bins_[i]);
  }
  return out;
}

LatencyHistogram LatencyHistogram::deserialize(const std::string& bytes) {
  LatencyHistogram h;
  size_t pos = 0;
  h.count_ = get_u64(bytes, pos);
  uint64_t lo = get_u64(bytes, pos);
  uint64_t hi = get_u64(bytes, pos);
  h.sum_ = (static_cast<unsigned __int128>(hi) << 64) | lo;
  h.min_ = get_u64(bytes, pos);
  h.max_ = get_u64(bytes, pos);
  uint64_t used = get_u64(bytes, pos);
  if (used > kBinCount) throw std::runtime_error("histogram bytes: too many bins");
  uint64_t total = 0;
  for (uint64_t i = 0; i < used; ++i) {
    uint64_t bin = get_u64(bytes, pos);
    uint64_t c = get_u64(bytes, pos);
    if (bin >= kBinCount) throw std::runtime_error("histogram bytes: bin out of range");
    h.bins_[bin] += c;
    total += c;
  }
  if (total != h.count_ || pos != bytes.size())
    throw std::runtime_error("histogram bytes: counts do not add up");
  return h;
}

nlohmann::json latency_json(const LatencyHistogram& h) {
  return nlohmann::json{{"min", h.min()},
                        {"mean", h.mean()},
                        {"p50", h.percentile(50)},
                        {"p90", h.percentile(90)},
                        {"p99", h.percentile(99)},
                        {"p99_9", h.percentile(99.9)},
                        {"p99_99", h.percentile(99.99)},
                        {"max", h.max()},
                        {"count", h.count()}};
}

nlohmann::json bins_json(const LatencyHistogram& h) {
  nlohmann::json bins = nlohmann::json::array();
  for (size_t i = 0; i < LatencyHistogram::kBinCount; ++i) {
    if (uint64_t c = h.bin_count(i)) {
      bins.push_back({LatencyHistogram::bin_low(i), LatencyHistogram::bin_high(i), c});
    }
  }
  return bins;
}

}  // namespace barge::pipeline::bench
