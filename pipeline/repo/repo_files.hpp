// Helpers shared by the repository's sources (repository.cpp, repo_lock.cpp,
// repo_snapshots.cpp, packs.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "io/full_io.hpp"
#include "io/result.hpp"

namespace barge::pipeline::repo::detail {

io::Status fsync_dir(const std::string& dir);  // fsync of a directory (its entries durable)
io::Status make_dir(const std::string& path);  // mkdir 0755; an existing one is fine
// All n bytes at offset (io::kAtPosition: the file position), errors naming `path`.
io::Status write_all(int fd, const void* p, size_t n, const std::string& path,
                     int64_t offset = io::kAtPosition);
// Writes `bytes` to a new temporary file in `dir` (named prefix + random), fsync'd; returns
// its path. The caller renames or links it into place.
io::Result<std::string> write_temp(const std::string& dir, const std::string& prefix,
                                   const std::string& bytes);
int64_t now_ns();  // wall-clock time, nanoseconds since the epoch
bool starts_with(std::string_view s, std::string_view prefix);

}  // namespace barge::pipeline::repo::detail
