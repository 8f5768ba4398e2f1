// Text for SVG and HTML output (bench plots, migrate pages): escaping of the five characters
// that markup reserves.
#pragma once

#include <string>
#include <string_view>

namespace barge::pipeline {

inline std::string xml_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '&':
        out += "&amp;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

}  // namespace barge::pipeline
