// One migration pass: a sync of SRC onto DST (a dry run for plan's change-rate look), its
// itemized changes counted into a PassRecord, the files it copied hashed into a manifest
// that is merged into the state's.
#pragma once

#include <string>

#include "pipeline/engine/copy_options.hpp"
#include "pipeline/migrate/state.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline::migrate {

struct PassRun {
  PassRecord record;
  int exit_code = 0;
  std::string fatal;
  bool resumable = false;  // stopped by a signal: the same pass again with --resume
};

struct PassSpec {
  unsigned pass = 0;
  std::string kind;
  bool dry_run = false;
  bool delete_extra = false;
  bool resume = false;   // the journal of large files a killed pass left
  std::string manifest;  // where the pass writes its files' checksums ("" : none)
};

// Collective under mpirun/srun (every rank calls it with the same spec).
PassRun run_pass(const State& s, const CopyOptions& knobs, const PassSpec& spec,
                 transport::Comm& comm);

// Rank 0, before pass `spec.pass`: the state says it is running in `phase`, and (with
// `keep`) DST is kept aside for rollback; `*keep_s` gets the keep's time.
io::Status start_pass(State& s, const PassSpec& spec, const char* phase, bool keep,
                      unsigned threads, double* keep_s);
// Rank 0, after it: the keep pruned (its time added to the record), the manifest merged,
// the record journaled, no pass running.
io::Status finish_pass(State& s, const PassSpec& spec, bool keep, double keep_s,
                       PassRecord& record);

// The state's manifest with `pass_manifest`'s entries added or replacing theirs; the pass's
// file is removed once merged. Rank 0 only.
io::Status merge_manifest(const State& s, const std::string& pass_manifest);

// A file that changed under the copy or vanished: taken again by the next pass, not an error.
bool is_changed_while_copied(const std::string& error, const std::string& src);

}  // namespace barge::pipeline::migrate
