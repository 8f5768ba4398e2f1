// migrate's HTML pages (plan, report): one self-contained file, inline CSS and SVG, no
// script and no external asset, so that it opens offline from a job's output directory.
#pragma once

#include <string>
#include <utility>
#include <vector>

namespace barge::pipeline::migrate {

std::string human_bytes(uint64_t bytes);
std::string fixed(double v, int decimals);
std::string duration_text(double seconds);  // "42.0 s", "3 min 12 s", "2 h 05 min"

struct Bar {
  std::string label;
  double value = 0;
};

struct Series {
  std::string name;  // also the polyline's data-series attribute
  std::string colour;
  std::vector<std::pair<double, double>> points;  // x, y
};

class HtmlPage {
 public:
  explicit HtmlPage(const std::string& title);
  void heading(const std::string& text);
  void paragraph(const std::string& text);
  void table(const std::vector<std::pair<std::string, std::string>>& rows);
  void grid(const std::vector<std::string>& header,
            const std::vector<std::vector<std::string>>& rows);
  // An SVG bar chart; `id` names the <svg> element (data-chart attribute too).
  void bar_chart(const std::string& id, const std::string& title, const std::vector<Bar>& bars);
  // An SVG line chart of one or more series on shared axes.
  void line_chart(const std::string& id, const std::string& title, const std::string& x_label,
                  const std::string& y_label, const std::vector<Series>& series);
  std::string finish();

 private:
  std::string body_;
  std::string title_;
};

}  // namespace barge::pipeline::migrate
