// File helpers shared by the repository's sources (repository.cpp, packs.cpp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "io/full_io.hpp"
#include "io/result.hpp"

namespace barge::pipeline::repo::detail {

io::Status fsync_dir(const std::string& dir);  // fsync of a directory (its entries durable)
io::Status make_dir(const std::string& path);  // mkdir 0755; an existing one is fine
// All n bytes at offset (io::kAtPosition: the file position), errors naming `path`.
io::Status write_all(int fd, const void* p, size_t n, const std::string& path,
                     int64_t offset = io::kAtPosition);

}  // namespace barge::pipeline::repo::detail
