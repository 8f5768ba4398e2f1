// The copy's stage bodies: plain functors over WorkUnit, free of TBB types so they are
// unit-tested alone. pipeline/copy/copy.cpp wires them into one oneTBB flow graph:
//
//   cut units ─► read ─► hash ─► write(+verify) ─► commit ─► release buffer
//
// Shared state lives in CopyContext. Thread-safety: every stage may run concurrently on
// different units; per-file state is guarded inside the context.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "io/io_backend.hpp"
#include "pipeline/core/hash.hpp"
#include "pipeline/core/manifest.hpp"
#include "pipeline/core/plan.hpp"
#include "pipeline/core/stats.hpp"
#include "pipeline/engine/copy_options.hpp"
#include "pipeline/engine/journal.hpp"
#include "pipeline/engine/work_unit.hpp"

namespace barge::pipeline {

// Per-file state of a file cut into several chunks, alive from its first chunk's write
// until it is committed.
struct LargeFile {
  std::mutex mu;
  io::UniqueFd fd;
  bool unnamed = false;  // O_TMPFILE inode, linked in at commit
  bool create_attempted = false;
  std::optional<StreamHasher> hasher;  // whole-file hash for the manifest, fed in chunk order
  uint32_t next_chunk = 0;
  std::map<uint32_t, WorkUnit*> parked;  // chunks that reached commit before their predecessors
};

// Fills the next unit's extents; false when there is no more work (called serially).
using UnitSource = std::function<bool(std::vector<Extent>&)>;

class CopyContext {
 public:
  CopyContext(const Plan& plan, const CopyOptions& opts, LiveStats& stats, BackendSource backend);

  const Plan& plan;
  const CopyOptions& opts;
  LiveStats& stats;
  BackendSource backend;
  ErrorList errors;
  ManifestWriter* manifest = nullptr;  // set when --checksum-manifest is given
  bool apply_owner = false;
  std::vector<uint8_t> parent_ok;  // per entry: its destination directory exists

  // Multi-rank runs: files cut into chunks are written by several ranks into one named
  // temporary created by their owner; temp_ids gives each its run-wide number, and the owner
  // finalizes it after all ranks are done (pipeline/dist/dist_copy.cpp).
  bool shared_large = false;
  Journal* journal = nullptr;                 // records written chunks of large files
  std::unordered_set<uint32_t> resume_parts;  // large files whose part is reused (no truncate)
  // Set by a stop that can be resumed (SIGTERM, SIGUSR1): large files' parts are kept.
  std::atomic<bool> resumable{false};
  std::vector<uint64_t> temp_ids;

  std::atomic<bool> stop{false};
  std::atomic<bool> use_tmpfile{true};  // cleared when the destination has no O_TMPFILE
  // --reflink: 0 not tried yet, 1 a clone worked, -1 cloning does not work here (auto).
  std::atomic<int> clone_state{0};
  bool may_clone() const {
    return opts.reflink != Reflink::kNever && !opts.direct_write &&
           clone_state.load(std::memory_order_relaxed) >= 0;
  }
  // Once clones are known to work, and when nothing needs a file's bytes (no manifest, no
  // --verify), the read stage leaves files unread: a clone shares the source's extents
  // without the bytes passing through barge, as cp -a does.
  bool clone_unread() const {
    return manifest == nullptr && !opts.verify && !opts.direct_read &&
           clone_state.load(std::memory_order_relaxed) == 1 && may_clone();
  }
  // Per entry, when known: its destination name holds a file that the copy replaces.
  std::vector<uint8_t> replacing;
  bool replaces(uint32_t file) const { return file < replacing.size() && replacing[file]; }

  // Marks `file` failed; its first failure is named in the error list, or, when it is one
  // more consequence of the cause that stopped the run (same error, or "run stopped"), in
  // stopped_errors.
  void fail_file(uint32_t file, std::string message);
  ErrorList stopped_errors;
  // Marks `file` failed without naming it (the run stopped, or its directory failed).
  void abandon_file(uint32_t file);
  bool file_failed(uint32_t file) const {
    return failed_[file].load(std::memory_order_relaxed) != 0;
  }
  // Stops the run (destination full, write error): no new units; in-flight files are abandoned.
  void set_fatal(std::string message);
  std::string fatal() const;

  // Counts one chunk of `file` done; true for the caller that finished the last one.
  bool finish_chunk(uint32_t file) { return chunks_left_[file].fetch_sub(1) == 1; }
  // Resume: chunks already written by an earlier run are not sent again.
  void set_chunks_left(uint32_t file, uint32_t n) { chunks_left_[file].store(n); }
  bool is_large(uint32_t file) const;

  LargeFile& large_file(uint32_t file);  // created on first use
  std::unique_ptr<LargeFile> take_large_file(uint32_t file);
  std::vector<uint32_t> open_large_files();

  // Whether finalize must chown: ownership differs from what a new file gets.
  bool needs_chown(const Entry& e) const;
  std::string temp_name(uint32_t file) const;
  const std::string& temp_suffix() const { return temp_suffix_; }
  void set_temp_suffix(std::string s) { temp_suffix_ = std::move(s); }
  std::string dst_dir_of(const Entry& e) const;  // destination directory holding e
  std::string src_dir_of(const Entry& e) const;

 private:
  bool is_consequence_of_stop(const std::string& message) const;
  std::unique_ptr<std::atomic<uint32_t>[]> chunks_left_;
  std::unique_ptr<std::atomic<uint8_t>[]> failed_;
  mutable std::mutex mu_;
  std::string fatal_;
  std::unordered_map<uint32_t, std::unique_ptr<LargeFile>> large_;
  std::string temp_suffix_;
  uint32_t euid_;
  uint32_t egid_;
};

// Caches the descriptor of the last directory used: units are cut in walk order, so
// consecutive extents usually share their directory.
class DirFdCache {
 public:
  // -1 with errno set on failure. follow_last: the path's last component may be a symlink
  // (a root's parent, which the user named).
  int get(const std::string& path, bool follow_last = false);

 private:
  std::string path_;
  io::UniqueFd fd_;
};

class ReadStage {
 public:
  explicit ReadStage(CopyContext& ctx) : ctx_(ctx) {}
  void operator()(WorkUnit& unit) const;

 private:
  int open_source(Item& it, DirFdCache& dirs) const;
  CopyContext& ctx_;
};

class HashStage {
 public:
  void operator()(WorkUnit& unit) const;
};

// Writes each extent into its file's temporary name; with opts.verify it then re-reads the
// bytes and compares their checksum with the one computed on the source bytes.
class WriteStage {
 public:
  explicit WriteStage(CopyContext& ctx) : ctx_(ctx) {}
  void operator()(WorkUnit& unit) const;
  // Re-reads [offset, offset+length) of fd and returns its XXH3-128 (verify).
  static io::Result<Hash128> reread_hash(io::IoBackend& backend, int fd, uint64_t offset,
                                         uint64_t length);

 private:
  int open_temp(uint32_t file, DirFdCache& dirs, bool& unnamed, std::string& err) const;
  int open_part(uint32_t file, DirFdCache& dirs, std::string& err) const;
  int large_file_fd(uint32_t file, DirFdCache& dirs, std::string& err) const;
  bool clone(Item& it) const;
  bool read_unread(WorkUnit& unit, Item& it) const;
  void verify(WorkUnit& unit, const std::vector<io::IoOp>& ops, const std::vector<size_t>& op_item,
              io::IoBackend& backend) const;
  CopyContext& ctx_;
};

// Finishes files whose last chunk has been written: metadata, optional fsync, rename into
// place; failed files have their temporary removed. With a manifest, chunks of large files
// are hashed in order, so a chunk arriving early is parked until its predecessors are in:
// `emit` receives every unit that is done (possibly later, from another call).
class CommitStage {
 public:
  explicit CommitStage(CopyContext& ctx) : ctx_(ctx) {}
  void operator()(WorkUnit* unit, const std::function<void(WorkUnit*)>& emit) const;
  // Abandons files left unfinished by a stopped run (removes their temporaries); returns
  // parked units so the caller can release them.
  std::vector<WorkUnit*> abandon_unfinished() const;
  // Multi-rank runs: closes this rank's descriptors of shared large files; a failed close
  // fails the file.
  void close_shared() const;

 private:
  void commit_item(Item& item, DirFdCache& dirs) const;
  void finalize(uint32_t file, int fd, bool unnamed, io::UniqueFd* owned, DirFdCache& dirs) const;
  CopyContext& ctx_;
};

// Runs the transfer graph (read → hash → write → commit) over the units `next_unit` hands
// out, with at most pool.buffer_count() in flight, on an arena of `threads`.
void transfer(CopyContext& ctx, io::BufferPool& pool, unsigned threads,
              const UnitSource& next_unit);

// The same stages one unit at a time on the calling thread, each unit in a buffer taken from
// `pool` (blocks while none is free): for a few small files, where a graph's set-up costs
// more than its overlap gains. Stops on a stop signal or a fatal error like transfer().
void transfer_serial(CopyContext& ctx, io::BufferPool& pool, const UnitSource& next_unit);

}  // namespace barge::pipeline
