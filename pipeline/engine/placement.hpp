// Where a copy lands, stable across reruns. cp's rules make `copy SRC DST` mean two things:
// DST missing, DST becomes the copy of SRC; DST an existing directory, SRC lands inside it.
// So the first run of a copy creates DST, and a rerun after a full disk, a kill or even a
// success (a requeued Slurm job running `--resume`) would nest SRC inside the DST it made.
//
// The placement record prevents that. When a run is about to create DST as the copy of one
// named source directory, it first writes `<journal dir>/placement` (beside DST, outside the
// copied tree, so DST stays an exact copy: `rsync -aHAXn --delete SRC/ DST/` finds nothing)
// naming SRC's canonical path. Every later run of `copy SRC DST` finds DST existing, reads the
// record and, when it names this SRC, completes or confirms the copy in place. A record that
// names another directory of the same name is a question barge cannot answer: the run says so
// and exits 2. The record is small and kept after success; deleting it restores cp's rule.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "io/result.hpp"
#include "pipeline/core/plan.hpp"

namespace barge::pipeline {

struct Placement {
  std::vector<Root> roots;
  // What the run must do with the record before it creates anything.
  enum class Record { kKeep, kWrite, kDrop } record = Record::kKeep;
  std::string record_src;  // canonical SRC to write (kWrite)
  bool honoured = false;   // DST exists and the record put SRC in place, not inside it
  std::string note;        // one line for the log when honoured
};

// resolve_roots (cp's rules and checks) plus the placement record beside `destination`.
io::Result<Placement> resolve_placement(const std::vector<std::string>& sources,
                                        const std::string& destination);

// A sync's DST (trailing slashes removed): an existing directory, or missing with an existing
// parent directory.
io::Status check_sync_destination(const std::string& dst);

// Sync's placement: one source directory whose contents DST mirrors (DST made if missing).
io::Result<std::vector<Root>> resolve_sync_root(const std::vector<std::string>& sources,
                                                const std::string& dst);

// Carries out placement.record (write durably, or drop a record whose DST is gone). Run by one
// rank before DST is created; an error means the run must not start.
io::Status apply_placement_record(const Placement& placement, const std::string& destination);

// What the record says: the canonical SRC, and which directory DST was when the run made it
// (device and inode: a DST deleted and made again by hand is another directory, for which
// the record says nothing). The identity is missing only if the run died between writing
// the record and creating DST.
struct PlacementRecord {
  std::string src;
  bool has_dst = false;
  uint64_t dst_device = 0;
  uint64_t dst_inode = 0;
  // Birth time in ns (statx btime; 0 where the file system keeps none): an inode number is
  // reused at once after a delete, a birth time is not.
  uint64_t dst_birth_ns = 0;
  bool operator==(const PlacementRecord&) const = default;
};

// The record beside `destination`, if there is a readable one.
std::optional<PlacementRecord> load_placement_record(const std::string& destination);

// The record's bytes (untrusted: anything may be in that file) → what it says, or nullopt
// when they are not exactly one well-formed record.
std::optional<PlacementRecord> parse_placement_record(std::string_view bytes);
std::string format_placement_record(const PlacementRecord& record);

}  // namespace barge::pipeline
