// A backup repository on disk (docs/FORMAT.md, "Backup repository"):
//
//   REPO/config                     magic, version, repository id, chunk size
//   REPO/lock                       held by the one backup (or forget) writing the repository
//   REPO/packs/<2 hex>/<32 hex>.pack  blobs, each pack written by one rank, then fsync'd
//   REPO/snapshots/<id>.snap        manifests; one appears (rename) only once complete
//
// A crash at any point leaves the repository valid: packs are written and synced before the
// snapshot that references them is renamed into place, so a half-written backup leaves only
// unreferenced packs (reclaimed by `forget`).
#pragma once

#include <cstdint>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "io/result.hpp"
#include "io/unique_fd.hpp"
#include "pipeline/repo_format.hpp"

namespace barge::pipeline::repo {

class Repository {
 public:
  // Opens REPO; create=true makes it (directories and config) when it does not exist yet.
  static io::Result<Repository> open(const std::string& path, bool create,
                                     uint32_t chunk_bytes = 4u << 20);
  const std::string& path() const { return path_; }
  const Config& config() const { return config_; }

  // Snapshot ids, oldest first. Files that are not complete snapshots are ignored.
  io::Result<std::vector<std::string>> list_snapshots() const;
  io::Result<Snapshot> load_snapshot(const std::string& id) const;
  // Only the kind, from the manifest's header (48 bytes read).
  io::Result<SnapKind> snapshot_kind(const std::string& id) const;
  // "latest", a full id, or a prefix matching exactly one id.
  io::Result<std::string> resolve(const std::string& which) const;
  // Writes the manifest under a temporary name, syncs it, renames it into place and syncs
  // the directory: readers see the whole snapshot or none.
  io::Status save_snapshot(const Snapshot& s) const;
  io::Status remove_snapshot(const std::string& id) const;

  std::string pack_path(const std::string& name) const;
  // Every pack file present (names), for forget.
  io::Result<std::vector<std::string>> list_packs() const;

 private:
  std::string path_;
  Config config_;
};

// REPO/lock, taken with O_EXCL. A lock left by a process that is gone (same host, pid not
// running) is stale and taken over; any other lock refuses with a message naming its owner.
class RepoLock {
 public:
  static io::Result<RepoLock> acquire(const std::string& repo_path, const std::string& command);
  RepoLock() = default;
  RepoLock(RepoLock&& o) noexcept : path_(std::move(o.path_)) { o.path_.clear(); }
  RepoLock& operator=(RepoLock&& o) noexcept;
  RepoLock(const RepoLock&) = delete;
  RepoLock& operator=(const RepoLock&) = delete;
  ~RepoLock() { release(); }
  void release();

 private:
  std::string path_;
};

// Appends blobs to packs of one writer (a rank). Thread-safe: append() reserves its range
// under a lock and writes it with pwrite outside the lock, so many threads store at once.
// A pack is closed for new blobs past `pack_target_bytes`.
class PackWriter {
 public:
  PackWriter(const Repository& repo, uint64_t pack_target_bytes);
  ~PackWriter();
  PackWriter(const PackWriter&) = delete;
  PackWriter& operator=(const PackWriter&) = delete;

  struct Stored {
    std::string pack;  // pack name
    uint64_t pack_offset = 0;
  };
  io::Result<Stored> append(const BlobHeader& h, std::span<const std::byte> stored);
  // fdatasync every pack and its directory; after this the blobs are durable.
  io::Status finish();
  uint64_t bytes_written() const;

 private:
  struct Pack {
    std::string name;
    io::UniqueFd fd;
    uint64_t size = 0;
  };
  io::Status open_new_pack();

  const Repository& repo_;
  uint64_t target_bytes_;
  mutable std::mutex mu_;
  std::vector<Pack> packs_;  // the last one takes new blobs
  uint64_t bytes_written_ = 0;
};

// Reads one blob back: header checked against the reference, stored bytes decompressed,
// raw bytes' XXH3-128 checked. `out` must hold ref.raw_bytes. Thread-safe (pread).
io::Status read_blob(int pack_fd, const BlobRef& ref, std::span<std::byte> out,
                     std::vector<std::byte>& scratch);

}  // namespace barge::pipeline::repo
