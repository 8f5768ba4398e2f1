// libFuzzer target for the journal directory's parsers (untrusted input: whatever is in
// .barge-journal.<DST>/ beside the destination): the chunk logs, the roots file and the
// placement record. Beyond "no crash, no sanitizer report", it checks what callers rely on:
//  - a chunk-log key never holds '/', NUL or a space (it is only ever compared with part
//    names, never used as a path);
//  - a parsed roots file has three NUL-free fields per root;
//  - an accepted placement record names an absolute, NUL-free path and formats back to the
//    same bytes (round trip); any record formatted from such a path parses back to it.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "pipeline/engine/journal.hpp"
#include "pipeline/engine/placement.hpp"

namespace {

[[noreturn]] void fail() { __builtin_trap(); }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using barge::pipeline::Journal;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);

  for (const auto& [key, chunks] : Journal::parse(bytes)) {
    if (key.empty() || key.find_first_of(std::string_view("/\0 ", 3)) != std::string::npos) fail();
    if (chunks.empty()) fail();
  }

  if (auto roots = Journal::parse_roots(bytes)) {
    if (roots->empty()) fail();
    for (const auto& r : *roots) {
      for (const std::string* f : {&r.src, &r.dst, &r.manifest_prefix})
        if (f->find('\0') != std::string::npos) fail();
    }
  }

  if (auto rec = barge::pipeline::parse_placement_record(bytes)) {
    const std::string& src = rec->src;
    if (src.empty() || src[0] != '/' || src.find('\0') != std::string::npos) fail();
    // Accepted bytes are canonical but for numbers written with leading zeros: the record
    // they format to parses to the same record.
    if (barge::pipeline::parse_placement_record(barge::pipeline::format_placement_record(*rec)) !=
        rec)
      fail();
  }
  // Any input used as a path: formatting then parsing gives it back when it is one.
  std::string as_path(bytes);
  if (!as_path.empty() && as_path[0] == '/' && as_path.find('\0') == std::string::npos &&
      as_path.size() <= 4096) {
    barge::pipeline::PlacementRecord r{as_path, true, size, as_path.size(), size * 7};
    auto back =
        barge::pipeline::parse_placement_record(barge::pipeline::format_placement_record(r));
    if (!back || *back != r) fail();
  }
  return 0;
}
