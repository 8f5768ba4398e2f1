// Parses human sizes for flags such as --memory and --chunk-size: "4096", "64K", "4M",
// "1.5G", "2GiB", "1T" (powers of 1024). nullopt on anything else, zero, or overflow.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

namespace barge::tools {

inline std::optional<uint64_t> parse_size(std::string s) {
  if (s.empty()) return std::nullopt;
  size_t pos = 0;
  while (pos < s.size() && (std::isdigit(static_cast<unsigned char>(s[pos])) || s[pos] == '.'))
    ++pos;
  if (pos == 0) return std::nullopt;
  std::string num = s.substr(0, pos);
  std::string unit = s.substr(pos);
  if (std::count(num.begin(), num.end(), '.') > 1) return std::nullopt;
  for (char& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  static const std::pair<const char*, int> kUnits[] = {
      {"", 0},    {"B", 0}, {"K", 1},  {"KB", 1},  {"KIB", 1}, {"M", 2},  {"MB", 2},
      {"MIB", 2}, {"G", 3}, {"GB", 3}, {"GIB", 3}, {"T", 4},   {"TB", 4}, {"TIB", 4}};
  int power = -1;
  for (const auto& [name, p] : kUnits) {
    if (unit == name) power = p;
  }
  if (power < 0) return std::nullopt;
  double value = std::strtod(num.c_str(), nullptr);
  double bytes = value * std::pow(1024.0, power);
  if (!(bytes >= 1) || bytes > 9.0e18) return std::nullopt;
  return static_cast<uint64_t>(bytes);
}

}  // namespace barge::tools
