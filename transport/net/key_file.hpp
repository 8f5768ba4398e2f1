#pragma once
// Pre-shared key files for send/recv: any content of at least kMinKeyBytes bytes (e.g.
// `head -c 32 /dev/urandom > key`), read as raw bytes. Like ssh with a private key, a file
// that group or others may read or write is refused.

#include <cstddef>
#include <string>

#include "io/result.hpp"

namespace barge::transport {

inline constexpr size_t kMinKeyBytes = 32;
inline constexpr size_t kMaxKeyBytes = 64 << 10;

// The key's bytes, or one line naming the file and what is wrong with it.
io::Result<std::string> read_key_file(const std::string& path);

}  // namespace barge::transport
