// Checksum manifest: one line per regular file with its whole-content XXH3-128 and its path
// relative to the tree root. Plain lines are `xxhsum -H2` lines, so `xxhsum -c` can check a
// barge manifest and barge can check an xxhsum listing; names holding `\`, LF or CR use the
// GNU coreutils escaped form. The exact format is specified in docs/FORMAT.md, "Checksum
// manifest"; keep the two in step.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "io/result.hpp"
#include "pipeline/core/hash.hpp"

namespace barge::pipeline {

// First line of every manifest barge writes. Optional on input so plain xxhsum output parses.
inline constexpr std::string_view kManifestHeader = "# barge-manifest v1 xxh128";
// Longest accepted line, excluding its '\n'. Below the 32 KiB line buffer of xxhsum 0.8.1,
// so every line barge writes is one xxhsum can read.
inline constexpr size_t kManifestMaxLineBytes = 32000;
// NAME_MAX on Linux: a longer component cannot name a real file.
inline constexpr size_t kManifestMaxComponentBytes = 255;

struct ManifestEntry {
  std::string path;  // relative to the tree root, '/'-separated, raw bytes (not necessarily UTF-8)
  Hash128 hash;
  friend bool operator==(const ManifestEntry&, const ManifestEntry&) = default;
};

// One printable line for a raw path, for messages and reports: valid UTF-8 passes through,
// `\`, LF, CR and TAB become C escapes, other control or invalid bytes become \xNN.
// Output longer than `max_bytes` is cut and ends in "...".
std::string printable_path(std::string_view path, size_t max_bytes = std::string_view::npos);

// Whether `path` may appear in a manifest: non-empty, relative, no empty, "." or ".."
// components, no NUL, components of at most kManifestMaxComponentBytes. The error message
// says which rule failed and names the path.
io::Status validate_manifest_path(std::string_view path);

// The manifest text for `entries`: header, then one line per entry sorted bytewise by path.
// Fails (naming the path) on an invalid or duplicate path, or a line longer than
// kManifestMaxLineBytes, because parse_manifest would reject such output.
io::Result<std::string> format_manifest(std::vector<ManifestEntry> entries);

// Parses untrusted manifest bytes. Entries come back in file order. Every rejection names
// the 1-based line number: "line 7: ...".
io::Result<std::vector<ManifestEntry>> parse_manifest(std::string_view bytes);

// Reads and parses a manifest file; errors are prefixed with the file name.
io::Result<std::vector<ManifestEntry>> read_manifest(const std::filesystem::path& file);

// Whole-file XXH3-128 of `path` (relative to `dirfd`, or to the cwd with AT_FDCWD), read with
// pread. Refuses a symlink as the last component (errnum ELOOP) and anything that is not a
// regular file (EISDIR for a directory, EINVAL otherwise); never blocks opening a FIFO.
io::Result<Hash128> hash_file(int dirfd, const std::string& path);

namespace detail {
struct FileDigest {
  Hash128 hash;
  uint64_t bytes = 0;
};
// Hashes the regular file open on `fd` from offset 0 to EOF with pread into this thread's
// 1 MiB aligned buffer. `path` (raw) names the file in error messages. Shared by hash_file
// and verify_manifest, which open files under different symlink rules.
io::Result<FileDigest> hash_fd(int fd, std::string_view path);
}  // namespace detail

// Collects (path, hash) pairs from many threads and writes them as one manifest.
// Thread-safe: add(), size() and write_to() may be called concurrently.
class ManifestWriter {
 public:
  void add(std::string rel_path, Hash128 h);
  // A hard link: `rel_path` is listed with the checksum `leader_path` gets (added on this
  // writer or merged from another rank's). A leader never added leaves its followers out.
  void add_link(std::string rel_path, std::string leader_path);
  std::vector<std::pair<std::string, std::string>> links() const;
  // Writes format_manifest() of everything added so far to `file` atomically: a temporary
  // file in the same directory, fsync, rename over `file`, fsync of the directory. A crash
  // leaves either the old file or the complete new one under the final name.
  io::Status write_to(const std::filesystem::path& file) const;
  size_t size() const;
  std::vector<ManifestEntry> entries() const;  // a copy of everything added so far

 private:
  mutable std::mutex mutex_;
  std::vector<ManifestEntry> entries_;
  std::vector<std::pair<std::string, std::string>> links_;  // follower, leader
};

}  // namespace barge::pipeline
