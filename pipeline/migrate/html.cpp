#include "pipeline/migrate/html.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "pipeline/core/markup.hpp"
#include "pipeline/core/progress.hpp"

namespace barge::pipeline::migrate {

namespace {

constexpr double kW = 720, kH = 260, kLeft = 70, kBottom = 60, kTop = 30, kRight = 20;

std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string svg_open(const std::string& id, const std::string& title) {
  return "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"" + xml_escape(id) + "\" data-chart=\"" +
         xml_escape(id) + "\" width=\"" + num(kW) + "\" height=\"" + num(kH) + "\" viewBox=\"0 0 " +
         num(kW) + " " + num(kH) + "\"><title>" + xml_escape(title) + "</title><text x=\"" +
         num(kLeft) + "\" y=\"18\" font-size=\"13\">" + xml_escape(title) + "</text>";
}

std::string axis_lines() {
  return "<line x1=\"" + num(kLeft) + "\" y1=\"" + num(kH - kBottom) + "\" x2=\"" +
         num(kW - kRight) + "\" y2=\"" + num(kH - kBottom) + "\" stroke=\"#333\"/><line x1=\"" +
         num(kLeft) + "\" y1=\"" + num(kTop) + "\" x2=\"" + num(kLeft) + "\" y2=\"" +
         num(kH - kBottom) + "\" stroke=\"#333\"/>";
}

std::string short_number(double v) {
  char buf[32];
  if (v >= 1e9)
    std::snprintf(buf, sizeof buf, "%.1fG", v / 1e9);
  else if (v >= 1e6)
    std::snprintf(buf, sizeof buf, "%.1fM", v / 1e6);
  else if (v >= 1e3)
    std::snprintf(buf, sizeof buf, "%.1fk", v / 1e3);
  else
    std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

}  // namespace

std::string human_bytes(uint64_t bytes) {
  return Progress::human_bytes(static_cast<double>(bytes));
}

std::string fixed(double v, int decimals) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string duration_text(double s) {
  char buf[48];
  if (s < 120)
    std::snprintf(buf, sizeof buf, "%.1f s", s);
  else if (s < 7200)
    std::snprintf(buf, sizeof buf, "%d min %02d s", static_cast<int>(s) / 60,
                  static_cast<int>(s) % 60);
  else
    std::snprintf(buf, sizeof buf, "%d h %02d min", static_cast<int>(s) / 3600,
                  static_cast<int>(s) % 3600 / 60);
  return buf;
}

HtmlPage::HtmlPage(const std::string& title) : title_(title) {}

void HtmlPage::heading(const std::string& text) { body_ += "<h2>" + xml_escape(text) + "</h2>\n"; }

void HtmlPage::paragraph(const std::string& text) { body_ += "<p>" + xml_escape(text) + "</p>\n"; }

void HtmlPage::table(const std::vector<std::pair<std::string, std::string>>& rows) {
  body_ += "<table>\n";
  for (const auto& [k, v] : rows)
    body_ += "<tr><th>" + xml_escape(k) + "</th><td>" + xml_escape(v) + "</td></tr>\n";
  body_ += "</table>\n";
}

void HtmlPage::grid(const std::vector<std::string>& header,
                    const std::vector<std::vector<std::string>>& rows) {
  body_ += "<table><tr>";
  for (const auto& h : header) body_ += "<th>" + xml_escape(h) + "</th>";
  body_ += "</tr>\n";
  for (const auto& row : rows) {
    body_ += "<tr>";
    for (const auto& c : row) body_ += "<td>" + xml_escape(c) + "</td>";
    body_ += "</tr>\n";
  }
  body_ += "</table>\n";
}

void HtmlPage::bar_chart(const std::string& id, const std::string& title,
                         const std::vector<Bar>& bars) {
  std::string svg = svg_open(id, title) + axis_lines();
  double top = 0;
  for (const auto& b : bars) top = std::max(top, b.value);
  const double plot_w = kW - kLeft - kRight, plot_h = kH - kTop - kBottom;
  const double slot = bars.empty() ? plot_w : plot_w / static_cast<double>(bars.size());
  svg += "<text x=\"4\" y=\"" + num(kTop + 10) + "\" font-size=\"11\">" + short_number(top) +
         "</text>";
  for (size_t i = 0; i < bars.size(); ++i) {
    const double h = top > 0 ? bars[i].value / top * plot_h : 0;
    const double x = kLeft + slot * static_cast<double>(i) + slot * 0.1;
    svg += "<rect class=\"bar\" x=\"" + num(x) + "\" y=\"" + num(kH - kBottom - h) + "\" width=\"" +
           num(slot * 0.8) + "\" height=\"" + num(h) + "\" fill=\"#3a7bd5\"><title>" +
           xml_escape(bars[i].label) + ": " + short_number(bars[i].value) + "</title></rect>";
    svg += "<text x=\"" + num(x) + "\" y=\"" + num(kH - kBottom + 14) +
           "\" font-size=\"9\" transform=\"rotate(45 " + num(x) + " " + num(kH - kBottom + 14) +
           ")\">" + xml_escape(bars[i].label) + "</text>";
  }
  body_ += svg + "</svg>\n";
}

void HtmlPage::line_chart(const std::string& id, const std::string& title,
                          const std::string& x_label, const std::string& y_label,
                          const std::vector<Series>& series) {
  std::string svg = svg_open(id, title) + axis_lines();
  double x_max = 0, y_max = 0;
  for (const auto& s : series)
    for (auto [x, y] : s.points) {
      x_max = std::max(x_max, x);
      y_max = std::max(y_max, y);
    }
  if (x_max <= 0) x_max = 1;
  if (y_max <= 0) y_max = 1;
  const double plot_w = kW - kLeft - kRight, plot_h = kH - kTop - kBottom;
  svg += "<text x=\"4\" y=\"" + num(kTop + 10) + "\" font-size=\"11\">" + short_number(y_max) +
         "</text><text x=\"" + num(kW - kRight - 60) + "\" y=\"" + num(kH - kBottom + 30) +
         "\" font-size=\"11\">" + xml_escape(x_label) + " (to " + short_number(x_max) +
         ")</text><text x=\"4\" y=\"" + num(kTop - 6) + "\" font-size=\"11\">" +
         xml_escape(y_label) + "</text>";
  double legend_y = kH - 12;
  double legend_x = kLeft;
  for (const auto& s : series) {
    std::string pts;
    for (auto [x, y] : s.points)
      pts += num(kLeft + x / x_max * plot_w) + "," + num(kH - kBottom - y / y_max * plot_h) + " ";
    svg += "<polyline data-series=\"" + xml_escape(s.name) + "\" fill=\"none\" stroke=\"" +
           xml_escape(s.colour) + "\" stroke-width=\"2\" points=\"" + pts + "\"/>";
    for (auto [x, y] : s.points)
      svg += "<circle cx=\"" + num(kLeft + x / x_max * plot_w) + "\" cy=\"" +
             num(kH - kBottom - y / y_max * plot_h) + "\" r=\"3\" fill=\"" + xml_escape(s.colour) +
             "\"/>";
    svg += "<text x=\"" + num(legend_x) + "\" y=\"" + num(legend_y) +
           "\" font-size=\"11\" fill=\"" + xml_escape(s.colour) + "\">" + xml_escape(s.name) +
           "</text>";
    legend_x += 140;
  }
  body_ += svg + "</svg>\n";
}

std::string HtmlPage::finish() {
  return "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>" +
         xml_escape(title_) +
         "</title><style>body{font-family:sans-serif;margin:2em;max-width:60em}"
         "table{border-collapse:collapse;margin:1em 0}th,td{border:1px solid #ccc;"
         "padding:4px 8px;text-align:left}th{background:#f3f3f3}svg{display:block;"
         "margin:1em 0;background:#fff;border:1px solid #ddd}</style></head><body><h1>" +
         xml_escape(title_) + "</h1>\n" + body_ + "</body></html>\n";
}

}  // namespace barge::pipeline::migrate
