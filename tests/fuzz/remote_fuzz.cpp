// libFuzzer target: send/recv's parsers of what a peer sends (pipeline/remote/protocol.cpp):
// the hello and welcome, the plan's entry batches, the unit table with the receiver's chunk
// ledger, and the receiver's report. The first byte picks the parser; none may crash, and
// whatever is accepted must satisfy what the receiver relies on.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "pipeline/remote/protocol.hpp"
#include "transport/net/endpoint.hpp"

using namespace barge::pipeline;
using namespace barge::pipeline::remote;

namespace {

void check(bool ok) {
  if (!ok) std::abort();
}

// checksum: the batch is a sync --checksum plan (a checksum after each regular file);
// xattrs: a send --xattrs plan (each entry's extended attributes after it).
void fuzz_plan(std::string_view in, bool checksum, bool xattrs = false) {
  Hello h;
  h.sync.enabled = h.sync.checksum = checksum;
  h.xattrs = xattrs;
  h.session = std::string(32, 'a');
  h.entries = 64;
  h.files = 32;
  h.bytes = 1 << 30;
  h.sources = {{"a", true}, {"b", false}};
  Plan plan;
  plan.roots = {Root{"a", "/d/a", "a"}, Root{"b", "/d/b", "b"}};
  std::vector<Hash128> sums;
  PlanBuilder b(plan, h, h.sources, &sums);
  if (!b.add_batch(in)) return;
  check(sums.size() <= plan.entries.size());
  for (const Entry& e : plan.entries) {
    check(e.root < 2);
    const std::string path = "/" + e.rel + "/";
    check(path.find("/../") == std::string::npos && path.find("/./") == std::string::npos);
    check(e.rel.empty() || (e.rel.front() != '/' && e.rel.back() != '/'));
    check(e.rel.empty() || e.parent < plan.entries.size());
    if (!e.xattrs) continue;
    check(xattrs && !e.xattrs->empty() && e.xattrs->size() <= kMaxXattrsPerEntry);
    for (size_t k = 0; k < e.xattrs->size(); ++k) {
      const auto& [name, value] = (*e.xattrs)[k];
      check(!name.empty() && name.size() <= kMaxXattrName && value.size() <= kMaxXattrValue);
      check(k == 0 || (*e.xattrs)[k - 1].first < name);
    }
  }
  check(plan.files.size() <= h.files && plan.total_file_bytes <= h.bytes);
}

// A directory, a 5000-byte file and a 5 MiB one (1 MiB chunks: 0-4).
Plan small_plan() {
  Plan plan;
  plan.roots = {Root{"a", "/d/a", "a"}};
  Entry dir, file, big;
  dir.meta.type = barge::io::FileType::kDirectory;
  file.meta.type = big.meta.type = barge::io::FileType::kRegular;
  file.meta.size_bytes = 5000;
  big.meta.size_bytes = 5 << 20;
  plan.entries = {dir, file, big};
  plan.files = {1, 2};
  return plan;
}

void fuzz_unit(std::string_view in) {
  auto items = decode_unit_table(in);
  if (!items) return;
  Plan plan = small_plan();
  std::vector<uint8_t> expected{0, 1, 1};
  ChunkLedger ledger(plan, expected, 1 << 20, 1 << 20);
  for (const WireItem& it : *items) {
    if (!ledger.accept(it)) continue;
    check(it.file == 1 || it.file == 2);
    check(it.offset + it.length <= plan.entries[it.file].meta.size_bytes);
    for (const auto& [b, e] : it.data) check(b >= it.offset && e <= it.offset + it.length);
  }
}

// The receiver's ready frame, as the sender checks it against its plan.
void fuzz_ready(std::string_view in) {
  Plan plan = small_plan();
  auto r = decode_ready(in, plan, 1 << 20, 1 << 20);
  if (!r) return;
  for (uint32_t f : r->unwanted) check(f == 1 || f == 2);
  for (const auto& [f, c] : r->done) check((f == 1 && c == 0) || (f == 2 && c < 5));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 7) {
    case 0:
      if (auto h = decode_hello(in); h && h->stream == 0) check(!h->sources.empty());
      break;
    case 1:
      if (auto w = decode_welcome(in)) {
        for (const std::string& e : w->endpoints)
          check(static_cast<bool>(barge::transport::parse_endpoint(e, "e")));
        check(w->endpoints.size() <= kMaxStreams);
      }
      break;
    case 2:
      fuzz_plan(in, false);
      break;
    case 3:
      fuzz_unit(in);
      break;
    case 4:
      (void)decode_report(in);
      break;
    case 5:
      fuzz_plan(in, true, data[0] % 14 == 12);
      break;
    default:
      fuzz_ready(in);
  }
  return 0;
}
