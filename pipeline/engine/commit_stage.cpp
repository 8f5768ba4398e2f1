// The commit stage: files whose last chunk is written get their metadata and their final
// name; link_into_place.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "io/log.hpp"
#include "io/metadata.hpp"
#include "io/path_ops.hpp"
#include "io/xattr.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/engine/copy_stages.hpp"

namespace barge::pipeline {

using detail::is_fatal_write_error;

namespace {

// The source as it is now differs from what the walk saw (written, truncated, replaced).
bool source_changed(const Plan& plan, const Entry& e) {
  auto now = io::stat_entry(AT_FDCWD, plan.src_path(e).c_str());
  if (!now) return true;
  const io::FileMeta& a = e.meta;
  const io::FileMeta& b = now.value();
  auto same = [](const timespec& x, const timespec& y) {
    return x.tv_sec == y.tv_sec && x.tv_nsec == y.tv_nsec;
  };
  return b.size_bytes != a.size_bytes || b.inode != a.inode || b.device != a.device ||
         !same(b.mtime, a.mtime) || !same(b.ctime, a.ctime);
}

}  // namespace

namespace detail {

int link_into_place(int fd, int dirfd, const std::string& name, const std::string& tmp,
                    bool replacing) {
  auto link = [&](const char* as) {
    if (::linkat(fd, "", dirfd, as, AT_EMPTY_PATH) == 0) return 0;
    if (errno != ENOENT && errno != EPERM) return -1;
    // Without CAP_DAC_READ_SEARCH, AT_EMPTY_PATH is refused: link through /proc instead.
    std::string proc = "/proc/self/fd/" + std::to_string(fd);
    return ::linkat(AT_FDCWD, proc.c_str(), dirfd, as, AT_SYMLINK_FOLLOW);
  };
  if (!replacing) {
    if (link(name.c_str()) == 0) return 0;
    if (errno != EEXIST) return -1;
  }
  if (link(tmp.c_str()) != 0) {
    // A temporary of that name left by a killed run: removed, then linked again.
    if (errno != EEXIST) return -1;
    ::unlinkat(dirfd, tmp.c_str(), 0);
    if (link(tmp.c_str()) != 0) return -1;
  }
  if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) {
    int err = errno;
    ::unlinkat(dirfd, tmp.c_str(), 0);
    errno = err;
    return -1;
  }
  return 0;
}

}  // namespace detail

void CommitStage::finalize(uint32_t file, int fd, bool unnamed, io::UniqueFd* owned,
                           DirFdCache& dirs) const {
  const Plan& plan = ctx_.plan;
  const Entry& e = plan.entries[file];
  std::string tmp = ctx_.temp_name(file);
  std::string final_path = plan.dst_path(e);
  int dirfd = -1;
  auto drop_temp = [&] {
    if (owned) owned->reset();
    // A large file's part survives a stopped run: --resume continues it.
    bool keep = ctx_.is_large(file) && ctx_.stop.load() && ctx_.journal != nullptr;
    if (!unnamed && dirfd >= 0 && !keep) ::unlinkat(dirfd, tmp.c_str(), 0);
  };
  if (ctx_.file_failed(file) || fd < 0) {
    if (!unnamed) dirfd = dirs.get(ctx_.dst_dir_of(e), e.rel.empty());
    drop_temp();
    return;
  }
  dirfd = dirs.get(ctx_.dst_dir_of(e), e.rel.empty());
  if (dirfd < 0) {
    ctx_.fail_file(file,
                   io::Error::from_errno(errno, "open directory " + ctx_.dst_dir_of(e)).message);
    drop_temp();
    return;
  }
  auto fail = [&](int err, const std::string& what) {
    // The stop first: this file is then one of its consequences, the cause said once.
    if (is_fatal_write_error(err))
      ctx_.set_fatal(io::Error::from_errno(err, what + " " + final_path).message);
    ctx_.fail_file(file, io::Error::from_errno(err, what + " " + final_path).message);
    drop_temp();
  };
  // O_DIRECT padding is cut off, and a sparse file's trailing hole gets its length.
  // Only when the size is wrong: a truncate to the same size still zeroes the tail of the
  // last block, which on a reflink copy unshares it.
  struct stat now {};
  if ((ctx_.opts.direct_write || io::is_sparse(e.meta)) &&
      (::fstat(fd, &now) != 0 || static_cast<uint64_t>(now.st_size) != e.meta.size_bytes) &&
      ::ftruncate(fd, static_cast<off_t>(e.meta.size_bytes)) != 0)
    return fail(errno, "truncate");
  if (ctx_.opts.fsync && ::fsync(fd) != 0) return fail(errno, "fsync");
  auto reject = [&](const std::string& why) {  // this file only; the run goes on
    ctx_.fail_file(file, why);
    drop_temp();
  };
  if (ctx_.opts.recheck_source && source_changed(plan, e))
    return reject(plan.src_path(e) +
                  ": file changed while being copied (modified while it was read)");
  // Ownership only when it differs from what a new file gets. The mode is always set: a
  // default ACL on the destination directory may have masked the creation mode, and chown
  // clears setuid/setgid bits.
  if (auto st = io::apply_meta_fd(fd, e.meta, ctx_.needs_chown(e), final_path); !st)
    return reject(st.error().message);
  if (ctx_.opts.xattrs)
    if (auto st = apply_xattrs(plan, e, fd, final_path); !st) return reject(st.error().message);
  std::string name = plan.name(e);
  if (unnamed) {
    if (detail::link_into_place(fd, dirfd, name, tmp, ctx_.replaces(file)) != 0)
      return fail(errno, "link into place");
    if (owned) {
      if (auto st = owned->close(); !st) {
        ::unlinkat(dirfd, name.c_str(), 0);  // never leave a file whose last write failed
        return fail(st.error().errnum, "close");
      }
    }
  } else {
    if (owned) {
      if (auto st = owned->close(); !st) return fail(st.error().errnum, "close");
    }
    if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0)
      return fail(errno, "rename into place");
  }
  ctx_.stats.files_done.fetch_add(1, std::memory_order_relaxed);
  ctx_.stats.bytes_committed.fetch_add(e.meta.size_bytes, std::memory_order_relaxed);
}

void CommitStage::commit_item(Item& it, DirFdCache& dirs) const {
  uint32_t file = it.ext.file;
  if (it.failed) {
    ctx_.abandon_file(file);  // never commit a file that misses a chunk
  } else {
    ctx_.stats.bytes_done.fetch_add(it.ext.length_bytes, std::memory_order_relaxed);
    if (ctx_.journal && it.ext.chunk_count > 1)
      ctx_.journal->record(ctx_.temp_name(file), it.ext.chunk, it.dst_fd);
  }
  if (ctx_.shared_large && it.ext.chunk_count > 1) return;  // the owner finalizes after all ranks
  if (!ctx_.finish_chunk(file)) return;
  if (it.ext.chunk_count == 1) {
    finalize(file, it.dst_fd, it.unnamed, &it.dst, dirs);
    if (ctx_.manifest && !ctx_.file_failed(file)) {
      ctx_.manifest->add(ctx_.plan.manifest_path(ctx_.plan.entries[file]), it.hash);
    }
    return;
  }
  auto lf = ctx_.take_large_file(file);
  if (!lf) return;
  finalize(file, lf->fd.get(), lf->unnamed, &lf->fd, dirs);
  if (lf->hasher && ctx_.manifest && !ctx_.file_failed(file)) {
    ctx_.manifest->add(ctx_.plan.manifest_path(ctx_.plan.entries[file]), lf->hasher->digest());
  }
}

void CommitStage::operator()(WorkUnit* unit, const std::function<void(WorkUnit*)>& emit) const {
  bool sequenced = ctx_.manifest && !ctx_.shared_large && unit->items.size() == 1 &&
                   unit->items[0].ext.chunk_count > 1;
  DirFdCache dirs;
  if (!sequenced) {
    for (Item& it : unit->items) commit_item(it, dirs);
    emit(unit);
    return;
  }
  // Whole-file hash for the manifest: chunks must be fed in order.
  uint32_t file = unit->items[0].ext.file;
  LargeFile& lf = ctx_.large_file(file);
  std::vector<WorkUnit*> ready;
  {
    std::lock_guard lock(lf.mu);
    lf.parked.emplace(unit->items[0].ext.chunk, unit);
    while (!lf.parked.empty() && lf.parked.begin()->first == lf.next_chunk) {
      WorkUnit* u = lf.parked.begin()->second;
      lf.parked.erase(lf.parked.begin());
      if (!u->items[0].failed) lf.hasher->update(u->bytes(u->items[0]));
      ++lf.next_chunk;
      ready.push_back(u);
    }
  }
  // commit_item may destroy lf (last chunk), so it runs outside the lock.
  for (WorkUnit* u : ready) {
    commit_item(u->items[0], dirs);
    emit(u);
  }
}

void CommitStage::close_shared() const {
  for (uint32_t file : ctx_.open_large_files()) {
    auto lf = ctx_.take_large_file(file);
    if (!lf) continue;
    // With a journal, its last lines point at these bytes: make them durable before closing.
    if ((ctx_.opts.fsync || ctx_.journal) && lf->fd.valid() && ::fsync(lf->fd.get()) != 0) {
      ctx_.fail_file(
          file, io::Error::from_errno(errno, "fsync " + ctx_.plan.dst_path(ctx_.plan.entries[file]))
                    .message);
    }
    if (auto st = lf->fd.close(); !st) {
      ctx_.fail_file(file,
                     io::Error::from_errno(st.error().errnum,
                                           "close " + ctx_.plan.dst_path(ctx_.plan.entries[file]))
                         .message);
    }
  }
}

std::vector<WorkUnit*> CommitStage::abandon_unfinished() const {
  std::vector<WorkUnit*> parked;
  DirFdCache dirs;
  for (uint32_t file : ctx_.open_large_files()) {
    auto lf = ctx_.take_large_file(file);
    if (!lf) continue;
    for (auto& [chunk, u] : lf->parked) parked.push_back(u);
    ctx_.fail_file(file,
                   ctx_.plan.dst_path(ctx_.plan.entries[file]) + ": not copied (run stopped)");
    finalize(file, -1, lf->unnamed, &lf->fd, dirs);
  }
  return parked;
}

}  // namespace barge::pipeline
