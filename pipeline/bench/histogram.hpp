// LatencyHistogram: a mergeable log-linear histogram of non-negative integer values
// (latencies in nanoseconds), in fio's design (stat.h, FIO_IO_U_PLAT_BITS = 6).
//
// Values below 128 have a bin each and are exact. Above, every power-of-two range [2^m, 2^(m+1))
// is split into 64 equal bins, so a bin is at most 1/64 of its lower bound wide and the value
// reported for it (its midpoint) is within 1/128 of any value in it: every percentile is within
// a relative 1/128 of the true sample at that rank. The bins cover the whole uint64_t range
// (3776 of them, about 30 KiB), far more than the 17 s a storage latency needs.
//
// Merging adds bins, counts, sums, and takes min/max: the merge of two histograms is exactly
// the histogram of the two sample sets together (never an average of percentiles).
//
// Thread-safety: none; each thread records into its own and the owner merges.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace barge::pipeline::bench {

class LatencyHistogram {
 public:
  static constexpr unsigned kSubBits = 6;
  static constexpr uint64_t kSubBins = 1ull << kSubBits;               // 64 bins per power of two
  static constexpr size_t kBinCount = kSubBins * (64 - kSubBits + 1);  // 3776
  // The relative error bound of every reported value (percentiles, bin midpoints).
  static constexpr double kRelativeError = 1.0 / (2.0 * static_cast<double>(kSubBins));

  static size_t bin_of(uint64_t value);
  static uint64_t bin_low(size_t bin);    // smallest value in the bin
  static uint64_t bin_high(size_t bin);   // largest value in the bin
  static uint64_t bin_value(size_t bin);  // the value reported for the bin (its midpoint)

  void record(uint64_t value) {
    ++bins_[bin_of(value)];
    ++count_;
    sum_ += value;
    if (value < min_) min_ = value;
    if (value > max_) max_ = value;
  }
  void merge(const LatencyHistogram& other);
  void clear() { *this = LatencyHistogram(); }

  uint64_t count() const { return count_; }
  uint64_t min() const { return count_ ? min_ : 0; }
  uint64_t max() const { return max_; }
  double mean() const {
    return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0;
  }
  // The value at rank ceil(p/100 * count) (the p-th percentile, 0 < p <= 100), within the
  // relative error bound of the true sample, clamped to [min, max]. 0 when empty.
  uint64_t percentile(double p) const;
  uint64_t bin_count(size_t bin) const { return bins_[bin]; }

  // Compact byte form (for gathering across ranks): the non-empty bins only.
  std::string serialize() const;
  // Throws std::runtime_error on malformed bytes.
  static LatencyHistogram deserialize(const std::string& bytes);

 private:
  std::array<uint64_t, kBinCount> bins_{};
  uint64_t count_ = 0;
  unsigned __int128 sum_ = 0;
  uint64_t min_ = std::numeric_limits<uint64_t>::max();
  uint64_t max_ = 0;
};

// The summary fields of the JSON contract: {min, mean, p50, p90, p99, p99_9, p99_99, max}.
nlohmann::json latency_json(const LatencyHistogram& h);
// The non-empty bins as [[low_ns, high_ns, count], ...], for users who merge runs themselves.
nlohmann::json bins_json(const LatencyHistogram& h);

}  // namespace barge::pipeline::bench
