// Phases shared by the multi-rank copy and sync (dist_copy.cpp, sync.cpp). Not part of the
// library's interface.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <unordered_set>
#include <vector>

#include "io/dir_reader.hpp"
#include "pipeline/engine/copy_stages.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline {

struct DirRef {
  uint32_t root = 0;
  std::string rel;
};

// A visitor's verdict on one listed directory: the children to keep, their flags, and the
// subdirectories to hand out for listing.
struct WalkOutput {
  std::vector<Entry> entries;
  std::vector<uint8_t> flags;
  std::vector<DirRef> subdirs;
};

// The entry for child `c` of listed directory `d`, or nullopt when the filter leaves it out.
inline std::optional<Entry> child_entry(const DirRef& d, io::DirChild& c,
                                        const PathFilter& filter) {
  std::string rel = d.rel.empty() ? c.name : d.rel + "/" + c.name;
  if (filter.excluded(rel, c.meta.type == io::FileType::kDirectory)) return std::nullopt;
  Entry e;
  e.root = d.root;
  e.rel = std::move(rel);
  e.meta = c.meta;
  e.link_target = std::move(c.link_target);
  return e;
}

// Called on the walking threads (concurrently) for each directory this rank lists.
using WalkVisitor = std::function<void(const Plan&, const DirRef&, io::DirListing&, WalkOutput&)>;
// Called on rank 0 for each root before the walk; nullopt drops it.
using RootVisitor = std::function<std::optional<uint8_t>(const Plan&, Entry&)>;

// `stopping` (optional), polled before each directory: once true on any rank, the walk ends
// early for every rank (the run is stopping; the plan is partial).
Plan distributed_walk(transport::Comm& comm, const std::vector<Root>& roots, unsigned threads,
                      ErrorList& errors, const WalkVisitor& visit, const RootVisitor& visit_root,
                      std::vector<uint8_t>& flags, const std::function<bool()>& stopping = {});

// Creates the destination directory of directory entry `e` inside dst_dir_fd (an existing
// directory is fine; anything else there is an error named in `errors`).
bool make_dst_dir(int dst_dir_fd, const Plan& plan, const Entry& e, ErrorList& errors);

// validate + placement (cp's rules, or sync's "DST mirrors SRC") agreed by every rank.
io::Result<std::vector<Root>> resolve_agreed(const CopyOptions& opts, transport::Comm& comm,
                                             bool sync_placement);

// What a run did during its walk (sync copies changed small files as it finds them): added
// to this rank's counters, and a fatal error there stops the run in the create phase.
struct WalkTransfer {
  const LiveStats* stats = nullptr;  // what the walk copied; outlives run_phases
  std::string fatal;
  std::vector<std::string> stopped_entries;  // files given up because the run stopped
};

// What a transfer from elsewhere (NetTransfer) needs of the run. Shared large file g is entry
// local_count + g on every rank.
struct SharedFiles {
  const std::vector<uint8_t>& include;  // the small files this rank's entries transfer
  uint32_t local_count = 0;
  // On g's owner, the entry it was made from; kNoOrigin on the other ranks.
  const std::vector<uint32_t>& origin;
  const std::vector<uint32_t>& chunk_counts;
  // --resume: per entry, the chunks the journal holds (null: none).
  const std::vector<const std::unordered_set<uint32_t>*>& done_chunks;
  static constexpr uint32_t kNoOrigin = UINT32_MAX;
};

// The bytes come from elsewhere (recv under mpirun: the data streams each rank receives):
// `run` takes the place of the local read (cutter and chunk coordinator) on every rank, inside
// the transfer phase's progress and journal. `mirror`: this rank holds a copy of entries
// another rank lists, creates and counts (its plan has no files of its own); it writes the
// bytes it is sent, nothing else.
struct NetTransfer {
  std::function<void(CopyContext&, io::BufferPool&, unsigned threads, const SharedFiles&)> run;
  size_t buffers_per_unit = 1;  // 2: units carry a stored (compressed) form
  size_t min_units = 2;         // units the transfer needs in flight at least
  bool mirror = false;
};

// Every rank's error lists (or any strings), rank 0's first, on every rank. Collective.
std::vector<std::string> gather_strings(transport::Comm& comm,
                                        const std::vector<std::string>& mine);

// The copy across ranks (mpirun / srun) after its walk (run_copy_ranks, run_sync), for the
// entries `flags` select: a run object (pipeline/dist/copy_phases.cpp) with one method per
// phase, called in this order by every rank; collective phases end in their agreement.
//
//   select      the files to transfer (--resume: files in place are left out)
//   hard links  every multi-link file is exchanged; the smallest (root, path) leads
//   plan        files cut into several chunks are exchanged (allgather); each gets a
//               run-wide id and an owner (the rank that found it)
//   pool        the buffer pool (within --memory) and the copy's context
//   resume      large files' surviving parts and journaled chunks; the journal opened
//   create      symlinks and special files (by their finder); owners create one named
//               temporary per large file and reserve its space; agreement
//   transfer    each rank copies the small files it found, then asks rank 0's chunk
//               coordinator (pipeline/dist/chunks.hpp) for batches of neighbouring chunks
//   finalize    which large files failed anywhere; agreement; owners rename the rest
//   followers   hard links to their leaders, between barriers
//   metadata    metadata-only changes, barrier, directory metadata
//   report      per-rank statistics reduced once, errors and the cause gathered, the
//               manifest written by rank 0, the exit code agreed
// dirs_if_changed: directory metadata only where it differs (sync).
RunResult run_phases(transport::Comm& comm, const CopyOptions& opts, Plan plan,
                     std::vector<uint8_t> flags, std::chrono::steady_clock::time_point t0,
                     double walk_seconds, ErrorList& walk_errors, unsigned threads,
                     bool dirs_if_changed, const WalkTransfer* walked = nullptr,
                     const NetTransfer* net = nullptr);

}  // namespace barge::pipeline
