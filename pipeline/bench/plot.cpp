// timeline_svg: two panels sharing the time axis.
#include "pipeline/bench/plot.hpp"

#include "pipeline/core/markup.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace barge::pipeline::bench {
namespace {

constexpr double kWidth = 800, kLeft = 80, kRight = 20, kPanel = 200, kGap = 60, kTop = 40;

std::string fmt(const char* f, double a, double b = 0) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, a, b);
  return buf;
}

std::string escape(const std::string& s) { return xml_escape(s); }

struct Panel {
  double top;
  double y_min, y_max;
  bool log;
  double y(double v) const {
    double lo = log ? std::log10(y_min) : y_min, hi = log ? std::log10(y_max) : y_max;
    double x = log ? std::log10(std::max(v, y_min)) : v;
    return top + kPanel - (x - lo) / (hi - lo) * kPanel;
  }
};

std::string axes(const Panel& p, const std::string& label, double t_max) {
  std::string s = "<rect x=\"" + fmt("%.0f", kLeft) + "\" y=\"" + fmt("%.0f", p.top) +
                  "\" width=\"" + fmt("%.0f", kWidth - kLeft - kRight) + "\" height=\"" +
                  fmt("%.0f", kPanel) + "\" fill=\"none\" stroke=\"#888\"/>\n";
  s +=
      "<text x=\"10\" y=\"" + fmt("%.0f", p.top - 8) + "\" font-size=\"13\">" + label + "</text>\n";
  for (int i = 0; i <= 4; ++i) {
    double v = p.log ? std::pow(10, std::log10(p.y_min) +
                                        (std::log10(p.y_max) - std::log10(p.y_min)) * i / 4)
                     : p.y_min + (p.y_max - p.y_min) * i / 4;
    s += "<text x=\"" + fmt("%.0f", kLeft - 6) + "\" y=\"" + fmt("%.1f", p.y(v) + 4) +
         "\" font-size=\"11\" text-anchor=\"end\">" + fmt(v >= 100 ? "%.0f" : "%.3g", v) +
         "</text>\n";
  }
  for (int i = 0; i <= 5; ++i) {
    double x = kLeft + (kWidth - kLeft - kRight) * i / 5;
    s += "<text x=\"" + fmt("%.1f", x) + "\" y=\"" + fmt("%.0f", p.top + kPanel + 15) +
         "\" font-size=\"11\" text-anchor=\"middle\">" + fmt("%.3g s", t_max * i / 5) + "</text>\n";
  }
  return s;
}

std::string polyline(const std::string& name, const std::string& colour,
                     const std::vector<std::pair<double, double>>& pts) {
  std::string s = "<polyline data-series=\"" + name + "\" fill=\"none\" stroke=\"" + colour +
                  "\" stroke-width=\"2\" points=\"";
  for (const auto& [x, y] : pts) s += fmt("%.1f,%.1f ", x, y);
  s += "\"><title>" + name + "</title></polyline>\n";
  return s;
}

}  // namespace

std::string timeline_svg(const std::string& title, const std::vector<Figures>& intervals,
                         double interval_s) {
  double t_max = std::max(interval_s, interval_s * static_cast<double>(intervals.size()));
  double bw_max = 1, lat_min = 1e300, lat_max = 1;
  for (const auto& f : intervals) {
    bw_max = std::max(bw_max, f.bandwidth() / 1048576.0);
    if (f.ops) {
      lat_min = std::min(lat_min, static_cast<double>(f.latency.percentile(50)) / 1e3);
      lat_max = std::max(lat_max, static_cast<double>(f.latency.percentile(99.9)) / 1e3);
    }
  }
  if (lat_min > lat_max) lat_min = 1;
  lat_min = std::pow(10, std::floor(std::log10(std::max(lat_min, 1e-3))));
  lat_max = std::pow(10, std::ceil(std::log10(std::max(lat_max, lat_min * 10))));
  Panel bw{kTop + 20, 0, bw_max * 1.1, false};
  Panel lat{kTop + 20 + kPanel + kGap, lat_min, lat_max, true};
  double height = lat.top + kPanel + 50;
  std::string s =
      "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<svg xmlns=\"http://www.w3.org/2000/svg\" "
      "version=\"1.1\" width=\"" +
      fmt("%.0f", kWidth) + "\" height=\"" + fmt("%.0f", height) +
      "\" font-family=\"sans-serif\">\n";
  s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s += "<text x=\"" + fmt("%.0f", kWidth / 2) +
       "\" y=\"24\" font-size=\"15\" text-anchor=\"middle\">" + escape(title) + "</text>\n";
  s += axes(bw, "throughput (MiB/s) per interval", t_max);
  s += axes(lat, "latency (us, log scale): p50 blue, p99 orange, p99.9 red", t_max);
  auto x_at = [&](size_t i) {
    double mid = interval_s * (static_cast<double>(i) + 0.5);
    return kLeft + (kWidth - kLeft - kRight) * mid / t_max;
  };
  std::vector<std::pair<double, double>> pb, p50, p99, p999;
  for (size_t i = 0; i < intervals.size(); ++i) {
    const Figures& f = intervals[i];
    pb.emplace_back(x_at(i), bw.y(f.bandwidth() / 1048576.0));
    if (!f.ops) continue;
    p50.emplace_back(x_at(i), lat.y(static_cast<double>(f.latency.percentile(50)) / 1e3));
    p99.emplace_back(x_at(i), lat.y(static_cast<double>(f.latency.percentile(99)) / 1e3));
    p999.emplace_back(x_at(i), lat.y(static_cast<double>(f.latency.percentile(99.9)) / 1e3));
  }
  s += polyline("bandwidth", "#2a7", pb);
  s += polyline("p50", "#27c", p50);
  s += polyline("p99", "#e80", p99);
  s += polyline("p99_9", "#c22", p999);
  s += "</svg>\n";
  return s;
}

}  // namespace barge::pipeline::bench
