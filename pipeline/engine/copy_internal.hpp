// Pieces shared by the single-process copy (copy.cpp) and the multi-rank copy
// (dist_copy.cpp). Not part of the library's interface.
#pragma once

#include <oneapi/tbb/enumerable_thread_specific.h>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "io/io_backend.hpp"
#include "pipeline/engine/copy_stages.hpp"

namespace barge::pipeline {

namespace detail {
// Gives the finished unnamed (O_TMPFILE) inode open on `fd` the name `name` in `dirfd`,
// replacing an existing entry atomically (via the named temporary `tmp` and rename, as
// rename is the only atomic replace). -1 with errno on failure. `replacing`: the caller knows
// an entry is there, so the direct link, which would fail, is not tried.
int link_into_place(int fd, int dirfd, const std::string& name, const std::string& tmp,
                    bool replacing = false);
// Errors that mean the destination as a whole cannot take more data: the run stops.
inline bool is_fatal_write_error(int err) {
  return err == ENOSPC || err == EDQUOT || err == EIO || err == EROFS || err == EFBIG;
}
}  // namespace detail

// One I/O backend per thread, created on first use; remembers which kind it got.
class BackendSet {
 public:
  explicit BackendSet(io::BackendOptions opts) : opts_(opts) {}
  BackendSource source();
  std::string name() const;
  bool registered() const { return registered_.load(); }

 private:
  io::BackendOptions opts_;
  tbb::enumerable_thread_specific<std::unique_ptr<io::IoBackend>> backends_;
  std::atomic<bool> registered_{false};
  mutable std::mutex mu_;
  std::string name_;
};

// Hard links (the rule: hard_link_leaders in pipeline/core/plan.hpp): the leader's bytes are
// copied; the others are linked to the leader's copy afterwards.

// Links `name` in dirfd to the existing file at `target_path`, replacing whatever is there
// atomically (via a temporary name and rename).
io::Status link_into_place_path(const std::string& target_path, int dirfd, const std::string& name,
                                const std::string& tmp);
// Links every follower in place; followers whose leader was not copied are named as failed.
// `leader_path(f)` gives the destination path of follower f's leader, `leader_manifest(f)` its
// path in the checksum manifest (a follower is listed there with its leader's checksum);
// returns files linked.
uint64_t link_followers(CopyContext& ctx, const std::vector<uint32_t>& followers,
                        const std::function<std::string(uint32_t)>& leader_path,
                        const std::function<std::string(uint32_t)>& leader_manifest,
                        const std::function<bool(uint32_t)>& leader_ok, bool skip_if_same);

// A regular file under its final destination name with the source's size and mtime: put
// there complete by an earlier run.
bool in_place(const Plan& plan, const Entry& e, DirFdCache& dirs);

// --resume: files already in place (regular, same size and mtime as the source) are taken
// out of `include` and counted; large files whose part exists at full size reuse it and skip
// the chunks `state` lists. Returns the files skipped.
// --resume with --checksum-manifest: files already in place are hashed from the source and
// listed (a failure names the file).
void hash_in_place_for_manifest(CopyContext& ctx, const std::vector<uint32_t>& files);
uint64_t plan_resume(CopyContext& ctx, std::vector<uint8_t>& include, const JournalState& state,
                     std::vector<const std::unordered_set<uint32_t>*>& done_chunks);

// The journal of large files' chunks when the files `include` selects have any (ctx.journal
// set to it); failing to open it only costs resumability (said once).
std::unique_ptr<Journal> open_journal(CopyContext& ctx, const std::vector<uint8_t>& include,
                                      const std::string& dir);

// Keeps the journal durable while the transfer runs (a flush about once a second).
class JournalFlusher {
 public:
  JournalFlusher(Journal* journal, CopyContext& ctx);
  ~JournalFlusher();
  JournalFlusher(const JournalFlusher&) = delete;
  JournalFlusher& operator=(const JournalFlusher&) = delete;

 private:
  Journal* journal_;
  CopyContext& ctx_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

void raise_fd_limit();
unsigned default_threads();
// default_threads() divided among the ranks on this node (at least 2).
unsigned default_threads_per_rank();
// The worker threads of a command: `asked` (--threads) or the default, shared among the
// ranks on this node when the job has several.
inline unsigned engine_threads(unsigned asked, int ranks) {
  return asked ? asked : ranks > 1 ? default_threads_per_rank() : default_threads();
}
// sync's metadata-only changes: entries [0, count) flagged kActMeta alone (not directories,
// which finalize applies) get their mode, owner and times (and with --xattrs, xattrs)
// applied in place; failures are named in ctx.
void apply_meta_changes(CopyContext& ctx, const std::vector<uint8_t>& flags, uint32_t count);

// Creates a symlink, fifo or device node (entry `index`) under a temporary name in
// parent_fd, applies its metadata and renames it into place; failures are named in ctx.
void create_special(CopyContext& ctx, int parent_fd, uint32_t index, RunResult& result);

}  // namespace barge::pipeline
