// The parsers of the journal directory's files: pure functions over bytes that anything may
// have written (a torn line after a crash, another program, a hostile user), kept apart from
// the file I/O so that the fuzz target (tests/fuzz/journal_fuzz.cpp) and the corrupt-input
// tests exercise exactly what a run reads.
#include <charconv>
#include <climits>

#include "pipeline/engine/journal.hpp"
#include "pipeline/engine/placement.hpp"

namespace barge::pipeline {
namespace {

constexpr std::string_view kMagic{"barge-placement 1\0", 18};

}  // namespace

JournalState Journal::parse(std::string_view text, JournalState state) {
  while (!text.empty()) {
    size_t nl = text.find('\n');
    if (nl == std::string_view::npos) break;  // a torn last line: ignored
    std::string_view line = text.substr(0, nl);
    text.remove_prefix(nl + 1);
    size_t sp = line.rfind(' ');
    if (sp == std::string_view::npos || sp == 0 ||
        line.substr(0, sp).find_first_of("/\0 ", 0, 3) != std::string_view::npos) {
      continue;
    }
    uint32_t chunk = 0;
    std::string_view num = line.substr(sp + 1);
    auto [p, ec] = std::from_chars(num.data(), num.data() + num.size(), chunk);
    if (ec != std::errc() || p != num.data() + num.size() || num.empty()) continue;
    state[std::string(line.substr(0, sp))].insert(chunk);
  }
  return state;
}

std::optional<std::vector<Root>> Journal::parse_roots(std::string_view text) {
  std::vector<std::string> fields;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\0', pos);
    if (end == std::string_view::npos) return std::nullopt;  // torn: not trusted
    fields.emplace_back(text.substr(pos, end - pos));
    pos = end + 1;
  }
  if (fields.empty() || fields.size() % 3 != 0) return std::nullopt;
  std::vector<Root> roots;
  for (size_t i = 0; i < fields.size(); i += 3)
    roots.push_back(Root{fields[i], fields[i + 1], fields[i + 2]});
  return roots;
}

std::optional<PlacementRecord> parse_placement_record(std::string_view bytes) {
  if (bytes.size() <= kMagic.size() + 1 || bytes.substr(0, kMagic.size()) != kMagic)
    return std::nullopt;
  bytes.remove_prefix(kMagic.size());
  const size_t end = bytes.find('\0');
  if (end == std::string_view::npos || end == 0 || end > PATH_MAX || bytes[0] != '/')
    return std::nullopt;
  PlacementRecord r;
  r.src = std::string(bytes.substr(0, end));
  std::string_view rest = bytes.substr(end + 1);
  if (rest.empty()) return r;
  // "<device>:<inode>:<birth ns>" and a NUL, decimal, nothing after.
  if (rest.back() != '\0') return std::nullopt;
  rest.remove_suffix(1);
  auto number = [](std::string_view s, uint64_t& out) {
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return !s.empty() && ec == std::errc() && p == s.data() + s.size();
  };
  const size_t c1 = rest.find(':');
  const size_t c2 = c1 == std::string_view::npos ? c1 : rest.find(':', c1 + 1);
  if (c2 == std::string_view::npos || !number(rest.substr(0, c1), r.dst_device) ||
      !number(rest.substr(c1 + 1, c2 - c1 - 1), r.dst_inode) ||
      !number(rest.substr(c2 + 1), r.dst_birth_ns))
    return std::nullopt;
  r.has_dst = true;
  return r;
}

std::string format_placement_record(const PlacementRecord& record) {
  std::string text(kMagic);
  text += record.src;
  text += '\0';
  if (record.has_dst) {
    text += std::to_string(record.dst_device) + ':' + std::to_string(record.dst_inode) + ':' +
            std::to_string(record.dst_birth_ns);
    text += '\0';
  }
  return text;
}

}  // namespace barge::pipeline
