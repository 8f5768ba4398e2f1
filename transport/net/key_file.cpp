#include "transport/net/key_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "io/full_io.hpp"
#include "io/unique_fd.hpp"

namespace barge::transport {

io::Result<std::string> read_key_file(const std::string& path) {
  const std::string what = "key file " + path;
  io::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd.valid()) return io::Error::from_errno(errno, "open " + what);
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return io::Error::from_errno(errno, "stat " + what);
  if (!S_ISREG(st.st_mode)) return io::Error::plain(what + ": not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return io::Error::plain(what + ": group or others may access it (mode " + mode +
                            "); a key must be private: chmod 600 " + path);
  }
  if (static_cast<uint64_t>(st.st_size) > kMaxKeyBytes) {
    return io::Error::plain(what + ": " + std::to_string(st.st_size) + " bytes, at most " +
                            std::to_string(kMaxKeyBytes) + " allowed");
  }
  std::string key(static_cast<size_t>(st.st_size), '\0');
  auto got = io::read_full(fd.get(), key.data(), key.size(), 0, "read " + what);
  if (!got) return got.error();
  key.resize(*got);
  if (key.size() < kMinKeyBytes) {
    return io::Error::plain(what + ": " + std::to_string(key.size()) + " bytes, at least " +
                            std::to_string(kMinKeyBytes) +
                            " needed (e.g. head -c 32 /dev/urandom > " + path + ")");
  }
  return key;
}

}  // namespace barge::transport
