// Whole-buffer reads and writes on plain descriptors, for the small files outside the data
// path (journals, repository config, locks): EINTR and short transfers are retried here so
// that no caller writes its own "until every byte is done" loop. The data path goes through
// IoBackend, whose ring requeues short transfers itself.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "io/result.hpp"

namespace barge::io {

inline constexpr int64_t kAtPosition = -1;  // write at (and advance) the file position

// Writes all n bytes at `offset` (or at the file position); the error names `what`.
Status write_full(int fd, const void* data, size_t n, int64_t offset, const std::string& what);
// Reads up to n bytes at `offset`; returns how many there were (fewer only at end of file).
Result<size_t> read_full(int fd, void* data, size_t n, uint64_t offset, const std::string& what);

}  // namespace barge::io
