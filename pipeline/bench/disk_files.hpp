// The files of barge bench disk: created (or reused) in the directory PATH, laid out with
// incompressible data when the test reads, checked for O_DIRECT alignment, dropped from the
// page cache before each run, and removed at the end unless --keep. Internal.
#pragma once

#include <cstdint>
#include <string>

#include "io/result.hpp"
#include "io/unique_fd.hpp"
#include "pipeline/bench/disk.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline::bench::detail {

struct BenchFile {
  std::string path;
  io::UniqueFd fd;
  bool created = false;     // by this run: removed at the end unless --keep (shared: rank 0)
  uint64_t base_bytes = 0;  // this rank's region of the file
  uint64_t region_bytes = 0;
};

// Collective. The error (when any rank failed) is this rank's own, or "" when another rank
// failed; the caller agrees on the outcome and names each failure on its rank.
io::Result<BenchFile> prepare_file(const DiskBenchOptions& o, transport::Comm& comm);
// Collective: drops the rank's region from the page cache (after an fsync), as fio does.
void drop_cache(const BenchFile& f);
// Collective: closes and removes what this run created (unless --keep).
void remove_file(BenchFile& f, const DiskBenchOptions& o, transport::Comm& comm);

}  // namespace barge::pipeline::bench::detail
