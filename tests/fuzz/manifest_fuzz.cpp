// libFuzzer target for the checksum manifest parser (untrusted input). Beyond "no crash,
// no sanitizer report", it checks the properties callers rely on:
//  - every rejection is one line and names its line number;
//  - every accepted manifest formats and re-parses to the same entries (round trip), and
//    formatting is deterministic;
//  - printable_path never emits a control byte.
#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "pipeline/core/manifest.hpp"

namespace {

using barge::pipeline::ManifestEntry;

[[noreturn]] void fail() { __builtin_trap(); }

void check_printable(std::string_view bytes) {
  const std::string out = barge::pipeline::printable_path(bytes);
  for (char c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) fail();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  check_printable(bytes.substr(0, 4096));

  auto parsed = barge::pipeline::parse_manifest(bytes);
  if (!parsed) {
    const std::string& msg = parsed.error().message;
    if (msg.find('\n') != std::string::npos) fail();
    if (!msg.starts_with("line ") && !msg.starts_with("empty manifest")) fail();
    return 0;
  }

  std::vector<ManifestEntry> entries = *parsed;
  auto text = barge::pipeline::format_manifest(entries);
  if (!text) {
    // The one legitimate refusal: escaping (each '\' becomes two bytes) can push a plain
    // line that was just under the limit over it.
    if (text.error().errnum != ENAMETOOLONG) fail();
    return 0;
  }
  auto again = barge::pipeline::parse_manifest(*text);
  if (!again) fail();
  std::sort(entries.begin(), entries.end(),
            [](const ManifestEntry& a, const ManifestEntry& b) { return a.path < b.path; });
  if (*again != entries) fail();
  auto text2 = barge::pipeline::format_manifest(*again);
  if (!text2 || *text2 != *text) fail();
  return 0;
}
