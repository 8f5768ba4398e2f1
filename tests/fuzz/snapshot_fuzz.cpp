// libFuzzer target for the snapshot manifest decoder (a repository may be damaged or forged).
// Beyond "no crash, no sanitizer report": every accepted manifest has only safe paths, and
// re-encodes to bytes that decode to the same snapshot.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "pipeline/repo/repo_format.hpp"

using namespace barge::pipeline::repo;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto s = decode_snapshot(std::string_view(reinterpret_cast<const char*>(data), size));
  if (!s) {
    if (s.error().message.find('\n') != std::string::npos) __builtin_trap();
    return 0;
  }
  for (const SnapEntry& e : s->entries)
    if (!is_safe_relative_path(e.path)) __builtin_trap();
  auto again = decode_snapshot(encode_snapshot(*s));
  if (!again || again->entries.size() != s->entries.size() || again->id != s->id) __builtin_trap();
  for (size_t i = 0; i < s->entries.size(); ++i) {
    if (again->entries[i].path != s->entries[i].path ||
        again->entries[i].chunks.size() != s->entries[i].chunks.size())
      __builtin_trap();
  }
  return 0;
}
