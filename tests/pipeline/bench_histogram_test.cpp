// LatencyHistogram against known distributions: every percentile within the stated bound of
// the exact sample at that rank; a merge equals the histogram of the merged samples.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <random>
#include <vector>

#include "pipeline/bench/histogram.hpp"

namespace barge::pipeline::bench {
namespace {

using H = LatencyHistogram;

// The exact sample at rank ceil(p/100 * n), as percentile() defines it.
uint64_t exact_percentile(std::vector<uint64_t> v, double p) {
  std::sort(v.begin(), v.end());
  double want = std::ceil(p / 100.0 * static_cast<double>(v.size()));
  size_t rank = std::clamp<size_t>(static_cast<size_t>(want), 1, v.size());
  return v[rank - 1];
}

void expect_within_bound(const std::vector<uint64_t>& samples, const H& h) {
  for (double p : {1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0}) {
    double exact = static_cast<double>(exact_percentile(samples, p));
    double got = static_cast<double>(h.percentile(p));
    EXPECT_LE(std::abs(got - exact), exact * H::kRelativeError + 1e-9)
        << "p" << p << ": exact " << exact << " reported " << got;
  }
  EXPECT_EQ(h.min(), *std::min_element(samples.begin(), samples.end()));
  EXPECT_EQ(h.max(), *std::max_element(samples.begin(), samples.end()));
  EXPECT_EQ(h.count(), samples.size());
}

H fill(const std::vector<uint64_t>& samples) {
  H h;
  for (uint64_t v : samples) h.record(v);
  return h;
}

TEST(LatencyHistogram, BinsTileTheRangeWithTheStatedWidth) {
  EXPECT_DOUBLE_EQ(H::kRelativeError, 1.0 / 128);
  for (size_t b = 0; b + 1 < H::kBinCount; ++b) {
    ASSERT_EQ(H::bin_high(b) + 1, H::bin_low(b + 1)) << "gap after bin " << b;
    ASSERT_EQ(H::bin_of(H::bin_low(b)), b);
    ASSERT_EQ(H::bin_of(H::bin_high(b)), b);
    // The bin's midpoint is within the bound of both its ends.
    double low = static_cast<double>(H::bin_low(b)), high = static_cast<double>(H::bin_high(b));
    double mid = static_cast<double>(H::bin_value(b));
    ASSERT_LE(mid - low, low * H::kRelativeError) << b;
    ASSERT_LE(high - mid, high * H::kRelativeError) << b;
  }
  EXPECT_EQ(H::bin_high(H::kBinCount - 1), UINT64_MAX);
  // 17 s in nanoseconds, and far beyond, keep the bound.
  uint64_t v = 17'000'000'000ull;
  double mid = static_cast<double>(H::bin_value(H::bin_of(v)));
  EXPECT_LE(std::abs(mid - static_cast<double>(v)), static_cast<double>(v) / 128);
}

TEST(LatencyHistogram, UniformDistribution) {
  std::mt19937_64 rng(1);
  std::uniform_int_distribution<uint64_t> d(1'000, 5'000'000);
  std::vector<uint64_t> s(200'000);
  for (auto& v : s) v = d(rng);
  expect_within_bound(s, fill(s));
}

TEST(LatencyHistogram, ExponentialDistribution) {
  std::mt19937_64 rng(2);
  std::exponential_distribution<double> d(1.0 / 80'000);  // mean 80 us
  std::vector<uint64_t> s(200'000);
  for (auto& v : s) v = static_cast<uint64_t>(d(rng)) + 1;
  H h = fill(s);
  expect_within_bound(s, h);
  double mean = 0;
  for (auto v : s) mean += static_cast<double>(v);
  EXPECT_DOUBLE_EQ(h.mean(), mean / static_cast<double>(s.size()));  // the mean is exact
}

TEST(LatencyHistogram, SpikeAndOutliers) {
  // 99.9% at 250 us, then a handful of 2 s stalls: p99.9 and max must see them.
  std::vector<uint64_t> s(99'900, 250'000);
  for (int i = 0; i < 100; ++i) s.push_back(2'000'000'000ull + static_cast<uint64_t>(i));
  H h = fill(s);
  expect_within_bound(s, h);
  EXPECT_NEAR(static_cast<double>(h.percentile(50)), 250'000.0, 250'000.0 / 128);
  EXPECT_GT(h.percentile(99.95), 1'900'000'000u);
}

TEST(LatencyHistogram, SmallValuesAreExact) {
  std::vector<uint64_t> s;
  for (uint64_t v = 0; v < 128; ++v) s.push_back(v);
  H h = fill(s);
  for (uint64_t v = 0; v < 128; ++v) EXPECT_EQ(H::bin_value(H::bin_of(v)), v);
  EXPECT_EQ(h.percentile(50), exact_percentile(s, 50));
}

TEST(LatencyHistogram, MergeEqualsHistogramOfTheMergedSamples) {
  std::mt19937_64 rng(3);
  std::lognormal_distribution<double> fast(10, 0.5), slow(14, 1.0);
  std::vector<uint64_t> a(50'000), b(70'000);
  for (auto& v : a) v = static_cast<uint64_t>(fast(rng));
  for (auto& v : b) v = static_cast<uint64_t>(slow(rng));
  H ha = fill(a), hb = fill(b);
  std::vector<uint64_t> all = a;
  all.insert(all.end(), b.begin(), b.end());
  H hall = fill(all);
  H merged = ha;
  merged.merge(hb);
  for (size_t i = 0; i < H::kBinCount; ++i) ASSERT_EQ(merged.bin_count(i), hall.bin_count(i));
  EXPECT_EQ(merged.count(), hall.count());
  EXPECT_EQ(merged.min(), hall.min());
  EXPECT_EQ(merged.max(), hall.max());
  EXPECT_DOUBLE_EQ(merged.mean(), hall.mean());
  for (double p : {50.0, 99.0, 99.99}) EXPECT_EQ(merged.percentile(p), hall.percentile(p));
  expect_within_bound(all, merged);
  // Averaging the two p99s would be wrong by far: the merge is not an average.
  double avg =
      (static_cast<double>(ha.percentile(99)) + static_cast<double>(hb.percentile(99))) / 2;
  EXPECT_GT(std::abs(avg - static_cast<double>(merged.percentile(99))),
            static_cast<double>(merged.percentile(99)) * H::kRelativeError);
}

TEST(LatencyHistogram, ByteFormRoundTripsAndRefusesCorruptInput) {
  std::vector<uint64_t> s = {5, 900, 123'456, 7'000'000'000ull};
  H h = fill(s);
  H back = H::deserialize(h.serialize());
  EXPECT_EQ(back.serialize(), h.serialize());
  EXPECT_EQ(back.percentile(75), h.percentile(75));
  EXPECT_EQ(H::deserialize(H().serialize()).count(), 0u);
  std::string bytes = h.serialize();
  EXPECT_THROW(H::deserialize(bytes.substr(0, bytes.size() - 3)), std::runtime_error);
  std::string extra = bytes + "x";
  EXPECT_THROW(H::deserialize(extra), std::runtime_error);
  std::string bad_bin = bytes;
  bad_bin[6 * 8] = '\x7f';  // the first bin's index, far out of range
  bad_bin[6 * 8 + 1] = '\x7f';
  EXPECT_THROW(H::deserialize(bad_bin), std::runtime_error);
  std::string bad_count = bytes;
  bad_count[0] = 9;  // count no longer the sum of the bins
  EXPECT_THROW(H::deserialize(bad_count), std::runtime_error);
}

TEST(LatencyHistogram, JsonSummaryAndBins) {
  H h = fill({1000, 2000, 3000});
  nlohmann::json j = latency_json(h);
  for (const char* k : {"min", "mean", "p50", "p90", "p99", "p99_9", "p99_99", "max"})
    EXPECT_TRUE(j.contains(k)) << k;
  EXPECT_EQ(j["min"], 1000);
  EXPECT_EQ(j["max"], 3000);
  EXPECT_EQ(bins_json(h).size(), 3u);
}

}  // namespace
}  // namespace barge::pipeline::bench
