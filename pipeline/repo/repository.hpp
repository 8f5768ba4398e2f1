// A backup repository on disk (docs/FORMAT.md, "Backup repository"):
//
//   REPO/config                     magic, version, repository id, chunk size
//   REPO/config.bak                 the same 48 bytes: `barge repair` rebuilds config from it
//   REPO/lock                       held by the one backup, forget or repair writing the repository
//   REPO/packs/<2 hex>/<32 hex>.pack  blobs, each pack written by one rank, then fsync'd
//   REPO/snapshots/<id>.snap        manifests; one appears (rename) only once complete
//
// A crash at any point leaves the repository valid: packs are written and synced before the
// snapshot that references them is renamed into place, so a half-written backup leaves only
// unreferenced packs. A backup that fails removes the packs it wrote; those of a killed one
// are removed by the next backup (it finds the dead run's lock) or by `forget`.
#pragma once

#include <cstdint>
#include <mutex>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "io/result.hpp"
#include "io/unique_fd.hpp"
#include "pipeline/engine/work_unit.hpp"
#include "pipeline/repo/repo_format.hpp"

namespace barge::pipeline::repo {

inline constexpr const char* kConfigName = "config";
inline constexpr const char* kConfigCopyName = "config.bak";

class Repository {
 public:
  // Opens REPO; create=true makes it (directories, config and its copy) when REPO is absent
  // or empty. Several runs may create the same repository at once: the config is linked into
  // place without replacing, so all of them end up with the first one's. A missing or damaged
  // config is an error pointing at `barge repair` when REPO looks like a repository.
  static io::Result<Repository> open(const std::string& path, bool create,
                                     uint32_t chunk_bytes = 4u << 20);
  // REPO without its config (config() is empty): for `barge repair`, which rebuilds the
  // config from the snapshots.
  static Repository open_without_config(const std::string& path);
  const std::string& path() const { return path_; }
  const Config& config() const { return config_; }
  // Writes config.bak when it is missing (repositories made before it existed). Call with the
  // lock held.
  io::Status ensure_config_copy() const;

  // Snapshot ids, oldest first. Files that are not complete snapshots are ignored.
  io::Result<std::vector<std::string>> list_snapshots() const;
  io::Result<Snapshot> load_snapshot(const std::string& id) const;
  // Only the kind, from the manifest's header (48 bytes read).
  io::Result<SnapKind> snapshot_kind(const std::string& id) const;
  // "latest", a full id, or a prefix matching exactly one id: a prefix of the whole id
  // ("20261122T05") or of its random part after the '-' (the short id `snapshots` shows).
  io::Result<std::string> resolve(const std::string& which) const;
  // Writes the manifest under a temporary name, syncs it, renames it into place and syncs
  // the directory: readers see the whole snapshot or none.
  io::Status save_snapshot(const Snapshot& s) const;
  io::Status remove_snapshot(const std::string& id) const;
  bool snapshot_exists(const std::string& id) const;

  std::string pack_path(const std::string& name) const;
  // Every pack file present (names), for forget.
  io::Result<std::vector<std::string>> list_packs() const;

 private:
  std::string path_;
  Config config_;
};

// A directory without a config that holds what a repository holds (config.bak, packs/ or
// snapshots/): `barge repair` can rebuild its config.
bool looks_like_repository(const std::string& path);

// The pack names the given snapshots reference; an error when one cannot be read (its packs
// cannot then be told apart from garbage).
io::Result<std::set<std::string>> referenced_packs(const Repository& r,
                                                   const std::vector<std::string>& ids);
struct PackSweep {
  uint64_t packs = 0;
  uint64_t bytes = 0;
};
// Removes (or with dry_run only counts) every pack not in `keep`. Call with the lock held:
// only a lock holder writes packs, so an unreferenced pack then belongs to no live run.
io::Result<PackSweep> remove_packs_except(const Repository& r, const std::set<std::string>& keep,
                                          bool dry_run);

// REPO/sweep: present when a failed or killed run may have left packs that no snapshot
// references. Made before a dead run's lock is removed and by a backup that fails before it
// has removed its packs; the next lock holder that can read every snapshot removes the
// unreferenced packs, then the mark.
inline constexpr const char* kSweepName = "sweep";
io::Status mark_sweep(const std::string& repo_path);
bool sweep_marked(const std::string& repo_path);
io::Status clear_sweep(const std::string& repo_path);

// REPO/lock: a line "host pid start-time command", written to a temporary file and linked into
// place (never replacing), so a reader sees a complete lock or none. A lock whose holder is
// gone (same host, pid not running) is stale: it is removed under REPO/lock.break, after
// checking it is still the same file (REPO/sweep is made first), and taken over. Any other lock
// refuses with a message naming its holder.
class RepoLock {
 public:
  static io::Result<RepoLock> acquire(const std::string& repo_path, const std::string& command);
  RepoLock() = default;
  RepoLock(RepoLock&& o) noexcept : path_(std::move(o.path_)), line_(std::move(o.line_)) {
    o.path_.clear();
  }
  RepoLock& operator=(RepoLock&& o) noexcept;
  RepoLock(const RepoLock&) = delete;
  RepoLock& operator=(const RepoLock&) = delete;
  ~RepoLock() { release(); }
  // Removes REPO/lock if it is still this run's (same line).
  void release();

 private:
  std::string path_;
  std::string line_;  // what this run wrote
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
  // Reserves `bytes` at the end of the current pack (a new one past the target size) for the
  // caller to write through its own ring.
  struct Slot {
    std::string pack;
    int fd = -1;  // valid until finish() or discard()
    uint64_t pack_offset = 0;
  };
  io::Result<Slot> reserve(uint64_t bytes);
  // fdatasync every pack and its directory; after this the blobs are durable.
  io::Status finish();
  // Removes every pack this writer created (a run that writes no snapshot).
  struct Discarded {
    uint64_t packs = 0, bytes = 0, failed = 0;  // failed: packs that could not be removed
  };
  Discarded discard();
  uint64_t bytes_written() const;
  std::string pack_path(const std::string& pack) const;

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

// The repository's stages of the graph. A blob is its 40-byte header, then its stored form;
// in a unit, the header sits in aux just before item.stored.aux_offset_bytes (kBlobSlotBytes
// are left for it), and the stored form follows it when compressed, or is the item's raw
// bytes in the main buffer.
inline constexpr size_t kBlobSlotBytes = (kBlobHeaderBytes + 7) / 8 * 8;
using StageFail = std::function<void(Item&, const io::Error&)>;

// pack-append (backup): every item with a stored form is appended to `packs` as a blob, in
// one batch of writes through the calling thread's ring; stored.pack is set to
// pack_index(pack name) and stored.pack_offset to where its header lies.
class PackAppendStage {
 public:
  PackAppendStage(PackWriter& packs, BackendSource backend,
                  std::function<uint32_t(const std::string&)> pack_index, StageFail fail)
      : packs_(packs),
        backend_(std::move(backend)),
        pack_index_(std::move(pack_index)),
        fail_(std::move(fail)) {}
  void operator()(WorkUnit& unit) const;

 private:
  PackWriter& packs_;
  BackendSource backend_;
  std::function<uint32_t(const std::string&)> pack_index_;
  StageFail fail_;
};

// pack-fetch (restore, verify REPO): reads each item's blob (stored.pack, stored.pack_offset,
// stored_bytes, compressed; raw length ext.length_bytes, checksum it.hash) through the ring:
// the header into aux, the stored form into aux when compressed or straight into the main
// buffer when raw, and checks the header against the item. Decompressing and checking the
// bytes is the next stage's job (DecompressCheckStage).
class PackFetchStage {
 public:
  // pack_fd(pack, error): an open descriptor of the pack, or -1 with *error set.
  using PackFd = std::function<int(uint32_t, std::string*)>;
  PackFetchStage(PackFd pack_fd, BackendSource backend, StageFail fail)
      : pack_fd_(std::move(pack_fd)), backend_(std::move(backend)), fail_(std::move(fail)) {}
  void operator()(WorkUnit& unit) const;
  // Lays item `it` out in aux after `cursor` bytes; returns the new cursor (the unit's aux
  // needs at least that much).
  static size_t place(Item& it, size_t cursor);

 private:
  PackFd pack_fd_;
  BackendSource backend_;
  StageFail fail_;
};

// Units of blobs for the assemblies that fetch them (restore, verify REPO).
//
// Pool: buffers hold the largest chunk (aux: its stored form and header; at least 1 MiB so
// small blobs are batched), two a unit; as many as memory_bytes holds, but no more units
// than the blobs make (`units`) or than `threads` workers keep busy (four a worker), so a
// run of small files registers, pins and touches little memory.
struct BlobPool {
  uint64_t buffer_bytes = 0;
  size_t count = 0;
};
BlobPool blob_pool(uint64_t max_raw, uint64_t max_stored, uint64_t memory_bytes, uint64_t units,
                   unsigned threads);

// An item for blob `ref` of pack number `pack` (the assembly's numbering): raw length,
// checksum and stored form; the caller sets ext.file (and chunk fields) as it needs.
Item blob_item(const BlobRef& ref, uint32_t pack);

// Fills one unit with blob items: each item's raw bytes at the next aligned offset of the
// buffer, its header and stored form after the last in aux (PackFetchStage::place).
class BlobUnitFill {
 public:
  BlobUnitFill(WorkUnit& unit, uint64_t buffer_bytes, uint32_t max_items)
      : unit_(unit), cap_(buffer_bytes), max_items_(max_items) {}
  bool full() const { return unit_.items.size() >= max_items_; }
  // Adds `it` when it fits what is left (a unit's first item always goes in); false if not.
  bool add(Item it);

 private:
  WorkUnit& unit_;
  uint64_t cap_;
  uint32_t max_items_;
  uint64_t buf_ = 0, aux_ = 0;
};

// Whole small files (config, lock): read, and written through a temporary file that is
// fsync'd and renamed into place (the directory fsync'd too).
io::Result<std::string> read_small_file(const std::string& path);
io::Status write_file_atomic(const std::string& dir, const std::string& name,
                             const std::string& bytes);

// Reads one blob back: header checked against the reference, stored bytes decompressed,
// raw bytes' XXH3-128 checked. `out` must hold ref.raw_bytes. Thread-safe (pread).
io::Status read_blob(int pack_fd, const BlobRef& ref, std::span<std::byte> out,
                     std::vector<std::byte>& scratch);

}  // namespace barge::pipeline::repo
