// An SVG of a bench timeline: throughput per interval above, latency percentiles (p50, p99,
// p99.9, log scale) below. Plain SVG 1.1 that any browser shows; each series is one
// <polyline> with a data-series attribute ("bandwidth", "p50", "p99", "p99_9").
#pragma once

#include <string>
#include <vector>

#include "pipeline/bench/disk.hpp"

namespace barge::pipeline::bench {

std::string timeline_svg(const std::string& title, const std::vector<Figures>& intervals,
                         double interval_s);

}  // namespace barge::pipeline::bench
