// libFuzzer target for migrate's pass journal (DIR/journal.jsonl, read by every migrate
// command). Beyond "no crash, no sanitizer report": a rejection is one line naming its line
// number, and what is accepted writes back as lines that parse to the same records.
#include <cstddef>
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "pipeline/migrate/state.hpp"

namespace mg = barge::pipeline::migrate;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  auto parsed = mg::parse_journal(bytes);
  if (!parsed) {
    const std::string& msg = parsed.error().message;
    if (msg.find('\n') != std::string::npos || !msg.starts_with("line ")) __builtin_trap();
    return 0;
  }
  std::string again;
  for (const auto& p : parsed.value()) again += mg::to_json(p).dump() + "\n";
  auto round = mg::parse_journal(again);
  if (!round || round.value().size() != parsed.value().size()) __builtin_trap();
  for (size_t i = 0; i < round.value().size(); ++i)
    if (round.value()[i].pass != parsed.value()[i].pass ||
        round.value()[i].bytes_changed != parsed.value()[i].bytes_changed)
      __builtin_trap();
  return 0;
}
