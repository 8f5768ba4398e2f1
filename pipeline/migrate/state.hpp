// barge migrate's state directory: what a relocation has done so far, so that every phase
// (plan, run, cutover, rollback, status) can be a separate command, a separate Slurm job,
// and can be killed and started again.
//
//   DIR/state.json       the migration: SRC, DST, phase, the pass under way (rewritten
//                        whole, atomically: temporary file, fsync, rename)
//   DIR/plan.json        the plan's measurements and predictions (migrate plan)
//   DIR/journal.jsonl    one JSON line per finished pass, appended and fsynced; a torn last
//                        line (a kill during the write) is ignored, any other bad line refused
//   DIR/manifest         the XXH3-128 of every file the passes put in DST (cutover checks DST
//                        against it)
//   DIR/pass-N.manifest  what pass N copied, merged into DIR/manifest when the pass ends
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "io/result.hpp"

namespace barge::pipeline::migrate {

// The phases, in order; `status` reports them by these names.
inline constexpr const char* kPhasePlanned = "planned";
inline constexpr const char* kPhaseCopying = "copying";         // the first, full pass
inline constexpr const char* kPhaseCatchingUp = "catching-up";  // sync passes
inline constexpr const char* kPhaseReady = "ready";             // the delta stopped shrinking
inline constexpr const char* kPhaseCutover = "cutover";
inline constexpr const char* kPhaseDone = "done";

struct PassRecord {
  unsigned pass = 0;  // 1: the full copy
  std::string kind;   // "full", "catch-up", "cutover"
  double started_unix = 0;
  double seconds = 0;
  uint64_t files_changed = 0;    // regular files copied (new or changed)
  uint64_t bytes_changed = 0;    // their bytes
  uint64_t entries_changed = 0;  // every itemized change (metadata, links, directories too)
  uint64_t entries_deleted = 0;
  uint64_t files_retried = 0;  // changed while being read: not put in place, next pass
  uint64_t errors = 0;         // other per-entry failures
  double keep_seconds = 0;     // keeping DST aside for rollback (before and after the pass)
  std::vector<std::string> error_samples;  // the first few messages
  double rate_bytes_per_second() const { return seconds > 0 ? bytes_changed / seconds : 0; }
};

struct State {
  std::string dir;
  std::string src, dst;  // absolute
  std::string phase = kPhasePlanned;
  unsigned pass_running = 0;  // a pass that started and has not finished (0: none)
  double pass_started_unix = 0;
  double created_unix = 0;
  double updated_unix = 0;
  std::vector<PassRecord> passes;     // from the journal
  std::vector<unsigned> rolled_back;  // passes migrate rollback undid
};

nlohmann::json to_json(const PassRecord& p);
io::Result<PassRecord> pass_from_json(const nlohmann::json& j);

// Parses journal bytes: one PassRecord per line. A last line without its '\n' is a write a
// kill cut short and is dropped; a bad complete line is an error naming its number.
io::Result<std::vector<PassRecord>> parse_journal(std::string_view bytes);

// A new state directory for SRC → DST (made if missing). Refuses a directory that already
// holds a migration of another SRC or DST; the same pair is opened again as it is.
io::Result<State> create_state(const std::string& dir, const std::string& src,
                               const std::string& dst);
// The migration in `dir`; an error names the directory and says to run plan first.
io::Result<State> load_state(const std::string& dir);
// state.json rewritten atomically (everything but the journal).
io::Status save_state(State& s);
// One line appended to the journal and fsynced; `s.passes` gets it too.
io::Status append_pass(State& s, const PassRecord& p);

// Writes `bytes` to `path` through a temporary beside it, fsync and rename: a reader sees
// the old file or the new one, never a part.
io::Status write_file_atomic(const std::string& path, std::string_view bytes);
io::Result<std::string> read_file(const std::string& path);

double now_unix();

}  // namespace barge::pipeline::migrate
