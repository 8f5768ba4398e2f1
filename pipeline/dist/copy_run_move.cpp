// The MPI copy's phases that write: create, transfer, finalize, followers, metadata.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/log.hpp"
#include "io/path_ops.hpp"
#include "io/xattr.hpp"
#include "pipeline/core/rank_stats.hpp"
#include "pipeline/core/wire.hpp"
#include "pipeline/dist/chunks.hpp"
#include "pipeline/dist/copy_run.hpp"

#include <thread>

namespace barge::pipeline {

// create: symlinks and special files by their finder; large-file temporaries by owners.
// Ends in an agreement: the transfer runs only if every rank got here without a fatal error.
void CopyRun::create() {
  CopyContext& ctx = *ctx_;
  umask0_.emplace(0);
  DirFdCache dirs;
  // A mirror's entries are another rank's: created and counted there.
  const uint32_t own = net_ && net_->mirror ? 0 : local_count_;
  for (uint32_t i = 0; i < own; ++i) {
    const Entry& e = plan_.entries[i];
    if (e.meta.type == io::FileType::kDirectory) ++result_.dirs;
    if (!(flags_[i] & kActCreate)) continue;
    int fd = dirs.get(plan_.dst_parent(e), e.rel.empty());
    if (fd < 0) {
      ctx.errors.add(io::Error::from_errno(errno, "open directory " + plan_.dst_parent(e)).message);
      continue;
    }
    if (e.meta.type == io::FileType::kSocket || e.meta.type == io::FileType::kUnknown) {
      ctx.errors.add(plan_.src_path(e) + ": " + io::file_type_name(e.meta.type) + " not copied");
      continue;
    }
    create_special(ctx, fd, i, result_);
  }
  create_large_parts();
  create_ok_ = comm_.agree(ctx.fatal().empty());
  if (!create_ok_ && ctx.fatal().empty()) {
    stopped_by_peer_ = true;  // the report names the other rank's cause
    ctx.set_fatal("another rank stopped the run");
  }
}

// One named temporary per large file this rank owns, its space reserved (or kept: resume).
void CopyRun::create_large_parts() {
  CopyContext& ctx = *ctx_;
  DirFdCache dirs;
  uint32_t first_own = 0;
  for (uint32_t g = 0; g < global_count_ && owner_[g] < static_cast<uint32_t>(comm_.rank()); ++g)
    ++first_own;
  for (uint32_t g = first_own; g < first_own + my_large_; ++g) {
    uint32_t f = local_count_ + g;
    const Entry& e = plan_.entries[f];
    int dirfd = dirs.get(plan_.dst_parent(e), e.rel.empty());
    bool reused = ctx.resume_parts.count(f) > 0;
    int fd = dirfd < 0 ? -1
                       : ::openat(dirfd, ctx.temp_name(f).c_str(),
                                  O_WRONLY | O_CREAT | O_CLOEXEC | (reused ? 0 : O_TRUNC),
                                  e.meta.mode & 0777);
    if (fd < 0) {
      int err = errno;
      ctx.fail_file(f, io::Error::from_errno(err, "create " + plan_.dst_path(e)).message);
      if (err == ENOSPC || err == EDQUOT)
        ctx.set_fatal(io::Error::from_errno(err, "create " + plan_.dst_path(e)).message);
      continue;
    }
    int rc = reused ? 0
             : io::is_sparse(e.meta)
                 ? (::ftruncate(fd, static_cast<off_t>(e.meta.size_bytes)) == 0 ? 0 : errno)
                 : ::posix_fallocate(fd, 0, static_cast<off_t>(e.meta.size_bytes));
    if (rc == ENOSPC || rc == EDQUOT)
      ctx.set_fatal(io::Error::from_errno(rc, "write " + plan_.dst_path(e)).message);
    ::close(fd);
  }
}

void CopyRun::stopped_by(Progress::RunState peer) {
  stopped_by_peer_ = true;
  if (peer == Progress::RunState::kSignalled) {
    ctx_->resumable = true;
    ctx_->set_fatal("stopped by a signal to another rank; rerun with --resume to finish");
  } else {
    ctx_->set_fatal(
        "stopped because another rank failed (its error is above); rerun with --resume once "
        "fixed");
  }
}

// transfer: each rank copies the small files it found, then the chunks of large files the
// coordinator (a thread on rank 0) hands it, until none are left.
void CopyRun::transfer() {
  if (!create_ok_) return;
  if (net_) {
    transfer_from_net();
    return;
  }
  CopyContext& ctx = *ctx_;
  std::thread coordinator;
  if (comm_.rank() == 0) {
    coordinator = std::thread([&] {
      chunk_coordinator(comm_, chunk_counts_, [&](uint32_t g, uint32_t chunk) {
        const auto* d = done_chunks_[local_count_ + g];
        return d && d->count(chunk) > 0;
      });
    });
  }
  UnitCutter cutter(plan_, opts_.chunk_bytes, pool_->buffer_bytes(), opts_.max_files_per_unit,
                    &include_);
  ChunkClient chunks(comm_, global_count_);
  bool local_done = false;
  auto next_unit = [&](std::vector<Extent>& out) -> bool {
    if (!local_done) {
      if (cutter.next(out)) return true;
      local_done = true;
    }
    uint32_t g = 0, chunk = 0;
    if (!chunks.next(g, chunk)) return false;
    uint32_t f = local_count_ + g;
    uint64_t size = plan_.entries[f].meta.size_bytes;
    uint64_t off = static_cast<uint64_t>(chunk) * opts_.chunk_bytes;
    out.assign(1, Extent{f, chunk, chunk_counts_[g], off,
                         std::min<uint64_t>(opts_.chunk_bytes, size - off), 0});
    return true;
  };
  auto tb = std::chrono::steady_clock::now();
  std::unique_ptr<transport::AsyncSum> across = comm_.make_async_sum();
  with_progress(*across, "copy", [&] { pipeline::transfer(ctx, *pool_, threads_, next_unit); });
  try {
    // Chunks this rank will never write: their files must not be put in place.
    chunks.drain([&](uint32_t g) {
      ctx.fail_file(local_count_ + g,
                    plan_.dst_path(plan_.entries[local_count_ + g]) + ": not copied (run stopped)");
    });
  } catch (const std::exception& ex) {
    ctx.set_fatal(std::string("transfer: ") + ex.what());
  }
  busy_ = since(tb);
  if (coordinator.joinable()) coordinator.join();
}

// Every rank takes part in the progress sums (rank 0 prints them) while `body` runs, with
// the journal flushed; an exception from it stops the run.
void CopyRun::with_progress(transport::AsyncSum& across, const char* verb,
                            const std::function<void()>& body) {
  CopyContext& ctx = *ctx_;
  try {
    using RunState = Progress::RunState;
    Progress::Across share{&across, comm_.size(),
                           [&ctx] {
                             if (!ctx.stop.load()) return RunState::kRunning;
                             return ctx.resumable.load() ? RunState::kSignalled : RunState::kFailed;
                           },
                           [this](RunState peer) { stopped_by(peer); }};
    Progress progress(stats_, comm_.rank() == 0 ? opts_.progress : ProgressMode::kNone, verb,
                      opts_.progress_interval_s, std::move(share));
    JournalFlusher flusher(ctx.journal, ctx);
    body();
  } catch (const std::exception& ex) {
    ctx.set_fatal(std::string("transfer: ") + ex.what());
  }
}

// transfer, the bytes coming from elsewhere (NetTransfer): its run on every rank.
void CopyRun::transfer_from_net() {
  auto tb = std::chrono::steady_clock::now();
  std::unique_ptr<transport::AsyncSum> across = comm_.make_async_sum();
  const SharedFiles shared{include_, local_count_, origin_, chunk_counts_, done_chunks_};
  with_progress(*across, "recv", [&] { net_->run(*ctx_, *pool_, threads_, shared); });
  busy_ = since(tb);
}

// finalize: which large files failed anywhere (allgather), whether every rank is fine
// (agreement), then owners put the rest in place.
void CopyRun::finalize() {
  WireWriter failed_mine;
  for (uint32_t g = 0; g < global_count_; ++g)
    if (ctx_->file_failed(local_count_ + g)) failed_mine.u32(g);
  std::vector<uint8_t> failed_anywhere(global_count_, 0);
  for (const std::string& blob : comm_.allgather(failed_mine.take())) {
    WireReader r(blob);
    while (!r.done()) {
      uint32_t g = r.u32();
      if (g < global_count_) failed_anywhere[g] = 1;
    }
  }
  all_ok_ = comm_.agree(ctx_->fatal().empty());
  DirFdCache dirs;
  for (uint32_t g = 0; g < global_count_; ++g) {
    if (!mine(g)) continue;
    uint32_t f = local_count_ + g;
    const Entry& e = plan_.entries[f];
    if (all_ok_ && !failed_anywhere[g]) {
      put_large_in_place(g, dirs);
      continue;
    }
    // A stopped run keeps its parts for --resume; a file that failed loses its part.
    int dirfd = dirs.get(plan_.dst_parent(e), e.rel.empty());
    if (dirfd < 0 || !all_ok_) continue;
    ::unlinkat(dirfd, ctx_->temp_name(f).c_str(), 0);
    if (!ctx_->file_failed(f))
      ctx_->fail_file(f, plan_.dst_path(e) + ": a chunk failed on another rank");
  }
}

void CopyRun::put_large_in_place(uint32_t g, DirFdCache& dirs) {
  const uint32_t f = local_count_ + g;
  const Entry& e = plan_.entries[f];
  int dirfd = dirs.get(plan_.dst_parent(e), e.rel.empty());
  if (dirfd < 0) return;
  std::string tmp = ctx_->temp_name(f);
  io::UniqueFd fd(::openat(dirfd, tmp.c_str(), O_RDWR | O_CLOEXEC));
  io::Status st = fd.valid() ? io::Status::success()
                             : io::Error::from_errno(errno, "open " + plan_.dst_path(e));
  if (st && ctx_->manifest) {
    // Chunks were hashed on several ranks; the owner hashes the whole written file.
    auto digest = detail::hash_fd(fd.get(), plan_.dst_path(e));
    if (digest) {
      manifest_.add(plan_.manifest_path(e), digest->hash);
    } else {
      st = digest.error();
    }
  }
  if (st) st = io::apply_meta_fd(fd.get(), e.meta, ctx_->needs_chown(e), plan_.dst_path(e));
  if (st && opts_.xattrs) st = apply_xattrs(plan_, e, fd.get(), plan_.dst_path(e));
  if (st) st = fd.close();
  if (st && ::renameat(dirfd, tmp.c_str(), dirfd, plan_.name(e).c_str()) != 0)
    st = io::Error::from_errno(errno, "rename into place " + plan_.dst_path(e));
  if (!st) {
    ::unlinkat(dirfd, tmp.c_str(), 0);
    ctx_->fail_file(f, st.error().message);
    return;
  }
  stats_.files_done.fetch_add(1);
  stats_.bytes_committed.fetch_add(e.meta.size_bytes);
}

// followers: hard links made once every leader is in place (owners renamed theirs in
// finalize); a barrier before and after.
void CopyRun::followers() {
  comm_.barrier();
  stats_.files_done += link_followers(
      *ctx_, followers_, [&](uint32_t f) { return leader_of_[f]; },
      [&](uint32_t f) { return leader_manifest_of_[f]; },
      [&](uint32_t f) {
        // The leader may live on another rank: it is in place when the file there is the
        // one this follower shares its inode with in the source.
        struct stat st;
        const io::FileMeta& m = plan_.entries[f].meta;
        return all_ok_ && ::stat(leader_of_[f].c_str(), &st) == 0 &&
               static_cast<uint64_t>(st.st_size) == m.size_bytes &&
               st.st_mtim.tv_sec == m.mtime.tv_sec && st.st_mtim.tv_nsec == m.mtime.tv_nsec;
      },
      dirs_if_changed_);
  comm_.barrier();
}

// metadata: metadata-only changes (sync: same content, other mode, owner or times), then a
// barrier, then directory metadata once every rank's entries are in place.
void CopyRun::metadata() {
  CopyContext& ctx = *ctx_;
  apply_meta_changes(ctx, flags_, local_count_);
  comm_.barrier();
  for (uint32_t i = 0; i < local_count_; ++i) {
    const Entry& e = plan_.entries[i];
    if (e.meta.type != io::FileType::kDirectory || !(flags_[i] & kActMeta)) continue;
    auto fd = io::open_dir_path(plan_.dst_path(e), io::DirOpen::kList, e.rel.empty());
    if (fd && opts_.xattrs) {
      if (auto xs = apply_xattrs(plan_, e, fd->get(), plan_.dst_path(e)); !xs)
        ctx.errors.add(xs.error().message);
    }
    if (fd && dirs_if_changed_) {
      struct stat st;
      if (::fstat(fd->get(), &st) == 0 && (st.st_mode & 07777) == e.meta.mode &&
          (!ctx.apply_owner || (st.st_uid == e.meta.uid && st.st_gid == e.meta.gid)) &&
          st.st_mtim.tv_sec == e.meta.mtime.tv_sec && st.st_mtim.tv_nsec == e.meta.mtime.tv_nsec)
        continue;  // unchanged: a no-op sync writes nothing
    }
    io::Status st =
        fd ? io::apply_meta_fd(fd->get(), e.meta, ctx.apply_owner, plan_.dst_path(e)) : fd.error();
    if (!st) ctx.errors.add(st.error().message);
  }
  umask0_.reset();
}

}  // namespace barge::pipeline
