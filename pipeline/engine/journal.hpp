// Resume journal: which chunks of large files are safely written. Each rank appends
// "<part name> <chunk>\n" lines to its own log in the journal directory and flushes them
// about once a second: first the part files' data (fdatasync), then the lines, so a line
// never claims bytes the disk might not have. Whole files need no journal: a file under its
// final name is complete (it is linked or renamed in only then) and carries the source's
// size and mtime, which is what `--resume` compares.
//
// The journal directory sits beside the destination, outside the copied tree:
// <parent of DST>/.barge-journal.<name of DST>. It is removed after a run that succeeds.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "io/result.hpp"
#include "io/unique_fd.hpp"
#include "pipeline/core/plan.hpp"

namespace barge::pipeline {

// Done chunks per part name.
using JournalState = std::unordered_map<std::string, std::unordered_set<uint32_t>>;

class Journal {
 public:
  static std::string dir_for(const std::string& destination);

  // Opens (creating the directory if needed) this rank's log for appending.
  static io::Result<std::unique_ptr<Journal>> open(const std::string& dir, int rank);

  // Thread-safe. part_fd is the part file the chunk was written to (synced before the line).
  void record(const std::string& part, uint32_t chunk, int part_fd);
  // Makes everything recorded so far durable. Thread-safe.
  io::Status flush();

  // Parses every rank's log in `dir` (a missing directory is an empty state). Malformed
  // lines, such as a torn last line after a crash, are skipped.
  static JournalState load(const std::string& dir);
  static JournalState parse(std::string_view text, JournalState state = {});
  static void remove(const std::string& dir);

  // The placement the first run resolved (SRC → DST paths). A resumed run must reuse it:
  // by then DST exists, and cp's rules would otherwise nest SRC inside it.
  static io::Status save_roots(const std::string& dir, const std::vector<Root>& roots);
  static std::optional<std::vector<Root>> load_roots(const std::string& dir);
  // The roots file's bytes (untrusted) → the placement, or nullopt unless well formed.
  static std::optional<std::vector<Root>> parse_roots(std::string_view text);
  // The saved placement when it was made for these sources (same count, same names) and
  // puts each of them where cp's rules could for `destination` (DST itself or a name in it):
  // a roots file that says otherwise is not followed, so it can never send writes elsewhere.
  static std::optional<std::vector<Root>> resume_roots(const std::string& dir,
                                                       const std::vector<std::string>& sources,
                                                       const std::string& destination);

 private:
  Journal(std::string dir, io::UniqueFd log) : dir_(std::move(dir)), log_(std::move(log)) {}
  std::string dir_;
  io::UniqueFd log_;
  std::mutex mu_;
  std::string pending_;
  std::vector<int> dirty_fds_;
};

// The deterministic name of a large file's part (its temporary while chunks arrive): the
// same on every rank and in every run for the same source file, different when the source
// changed (size, mtime or inode) or the chunk size differs (chunk numbers would not match).
std::string part_name(const Entry& e, uint64_t chunk_bytes);

}  // namespace barge::pipeline
