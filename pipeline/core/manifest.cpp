// The checksum manifest on disk: read_manifest, hash_fd and hash_file, ManifestWriter (its
// atomic write). The text format itself: manifest_format.cpp.
#include "pipeline/core/manifest.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "io/unique_fd.hpp"
#include "pipeline/core/manifest_internal.hpp"

namespace barge::pipeline {
namespace {

using detail::display_path;

constexpr size_t kReadBufferBytes = size_t{1} << 20;
constexpr size_t kReadBufferAlign = 4096;  // page-aligned so an O_DIRECT reader could share it

std::span<std::byte> thread_read_buffer() {
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  // One buffer per thread, kept for the thread's life: verify hashes millions of small files
  // and a malloc of 1 MiB per file would dominate them.
  thread_local std::unique_ptr<std::byte, Free> buffer(
      static_cast<std::byte*>(std::aligned_alloc(kReadBufferAlign, kReadBufferBytes)));
  if (!buffer) throw std::bad_alloc();
  return {buffer.get(), kReadBufferBytes};
}

io::Status write_all(int fd, std::string_view bytes, const std::string& what) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return io::Error::from_errno(errno, "write " + what);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return io::Status::success();
}

// Removes the temporary file unless the rename succeeded.
class TempFileGuard {
 public:
  explicit TempFileGuard(std::string path) : path_(std::move(path)) {}
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;
  ~TempFileGuard() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

}  // namespace

io::Result<std::vector<ManifestEntry>> read_manifest(const std::filesystem::path& file) {
  io::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return io::Error::from_errno(errno, "open manifest " + file.string());
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return io::Error::from_errno(errno, "stat manifest " + file.string());
  }
  if (!S_ISREG(st.st_mode)) {
    return io::Error{EINVAL, "manifest " + file.string() + ": not a regular file"};
  }
  std::string bytes;
  bytes.reserve(static_cast<size_t>(st.st_size));
  char chunk[64 * 1024];
  while (true) {
    ssize_t n = ::read(fd.get(), chunk, sizeof(chunk));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io::Error::from_errno(errno, "read manifest " + file.string());
    }
    if (n == 0) break;
    bytes.append(chunk, static_cast<size_t>(n));
  }
  auto entries = parse_manifest(bytes);
  if (!entries)
    return io::Error{EINVAL, "manifest " + file.string() + ": " + entries.error().message};
  return entries;
}

namespace detail {

io::Result<FileDigest> hash_fd(int fd, std::string_view path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return io::Error::from_errno(errno, "stat " + printable_path(path));
  if (S_ISDIR(st.st_mode)) {
    return io::Error{EISDIR,
                     "hash " + printable_path(path) + ": is a directory, not a regular file"};
  }
  if (!S_ISREG(st.st_mode)) {
    return io::Error{EINVAL, "hash " + printable_path(path) + ": not a regular file"};
  }
  // Advice only; a failure changes speed, not the result.
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  std::span<std::byte> buffer = thread_read_buffer();
  StreamHasher hasher;
  uint64_t offset = 0;
  while (true) {
    ssize_t n = ::pread(fd, buffer.data(), buffer.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io::Error::from_errno(
          errno, "read " + printable_path(path) + " at offset " + std::to_string(offset));
    }
    if (n == 0) break;
    hasher.update(buffer.first(static_cast<size_t>(n)));
    offset += static_cast<uint64_t>(n);
  }
  return FileDigest{hasher.digest(), offset};
}

}  // namespace detail

io::Result<Hash128> hash_file(int dirfd, const std::string& path) {
  if (path.find('\0') != std::string::npos) {
    return io::Error{EINVAL, "open " + display_path(path) + ": NUL byte in path"};
  }
  // O_NONBLOCK so a FIFO in place of a file fails the type check instead of hanging.
  io::UniqueFd fd(
      ::openat(dirfd, path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  if (!fd.valid()) return io::Error::from_errno(errno, "open " + printable_path(path));
  auto digest = detail::hash_fd(fd.get(), path);
  if (!digest) return digest.error();
  return digest->hash;
}

void ManifestWriter::add(std::string rel_path, Hash128 h) {
  std::lock_guard lock(mutex_);
  entries_.push_back(ManifestEntry{std::move(rel_path), h});
}

void ManifestWriter::add_link(std::string rel_path, std::string leader_path) {
  std::lock_guard lock(mutex_);
  links_.emplace_back(std::move(rel_path), std::move(leader_path));
}

std::vector<std::pair<std::string, std::string>> ManifestWriter::links() const {
  std::lock_guard lock(mutex_);
  return links_;
}

std::vector<ManifestEntry> ManifestWriter::entries() const {
  std::lock_guard lock(mutex_);
  return entries_;
}

size_t ManifestWriter::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

io::Status ManifestWriter::write_to(const std::filesystem::path& file) const {
  std::vector<ManifestEntry> snapshot;
  {
    std::lock_guard lock(mutex_);
    snapshot = entries_;
    if (!links_.empty()) {
      std::unordered_map<std::string_view, Hash128> by_path;
      for (const ManifestEntry& m : entries_) by_path.emplace(m.path, m.hash);
      for (const auto& [path, leader] : links_) {
        if (auto it = by_path.find(leader); it != by_path.end())
          snapshot.push_back(ManifestEntry{path, it->second});
      }
    }
  }
  auto text = format_manifest(std::move(snapshot));
  if (!text) return io::Error{text.error().errnum, file.string() + ": " + text.error().message};

  std::filesystem::path dir = file.parent_path();
  if (dir.empty()) dir = ".";
  // Unique per process and call, so concurrent writers never share a temporary file.
  static std::atomic<uint64_t> counter{0};
  io::UniqueFd fd;
  std::string tmp;
  for (int attempt = 0; attempt < 16 && !fd.valid(); ++attempt) {
    const auto ticks = std::chrono::steady_clock::now().time_since_epoch().count();
    tmp = (dir / ("." + file.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                  std::to_string(counter.fetch_add(1)) + "-" + std::to_string(ticks & 0xFFFFFF)))
              .string();
    // 0666 so the umask decides the final mode, as for any file the user creates.
    fd.reset(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
    if (!fd.valid() && errno != EEXIST) {
      return io::Error::from_errno(errno, "create temporary manifest " + tmp);
    }
  }
  if (!fd.valid()) return io::Error::from_errno(EEXIST, "create temporary manifest " + tmp);
  TempFileGuard guard(tmp);

  if (io::Status st = write_all(fd.get(), *text, tmp); !st) return st;
  // Data must be durable before the rename publishes it, or a crash could leave an empty
  // file under the final name.
  if (::fsync(fd.get()) != 0) return io::Error::from_errno(errno, "fsync " + tmp);
  if (io::Status st = fd.close(); !st)
    return io::Error{st.error().errnum, tmp + ": " + st.error().message};
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    return io::Error::from_errno(errno, "rename " + tmp + " to " + file.string());
  }
  guard.release();

  // Makes the rename itself durable. Some file systems cannot fsync a directory (EINVAL);
  // the manifest is complete either way, so only real I/O errors count.
  io::UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd.valid()) return io::Error::from_errno(errno, "open directory " + dir.string());
  if (::fsync(dfd.get()) != 0 && errno != EINVAL && errno != EROFS) {
    return io::Error::from_errno(errno, "fsync directory " + dir.string());
  }
  return io::Status::success();
}

}  // namespace barge::pipeline
