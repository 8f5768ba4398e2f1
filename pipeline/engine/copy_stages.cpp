#include "pipeline/engine/copy_stages.hpp"
#include "pipeline/engine/copy_internal.hpp"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
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

namespace barge::pipeline {
namespace {

using detail::is_fatal_write_error;

constexpr uint64_t kDirectAlign = 4096;

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

}  // namespace

void find_data(int fd, uint64_t begin, uint64_t end,
               std::vector<std::pair<uint64_t, uint64_t>>& out) {
  out.clear();
  uint64_t pos = begin;
  while (pos < end) {
    off_t d = ::lseek(fd, static_cast<off_t>(pos), SEEK_DATA);
    if (d < 0) {
      if (errno != ENXIO) out.emplace_back(pos, end);  // no SEEK_DATA here: treat as data
      return;
    }
    if (static_cast<uint64_t>(d) >= end) return;
    off_t h = ::lseek(fd, d, SEEK_HOLE);
    uint64_t stop = h < 0 ? end : std::min<uint64_t>(static_cast<uint64_t>(h), end);
    out.emplace_back(static_cast<uint64_t>(d), stop);
    pos = stop;
  }
}

// Opens the source of item `it` beneath its directory and checks it is still the file the
// walk saw (else the item fails and -1 comes back).
int ReadStage::open_source(Item& it, DirFdCache& dirs) const {
  const Plan& plan = ctx_.plan;
  const uint32_t file = it.ext.file;
  const Entry& e = plan.entries[file];
  int dirfd = dirs.get(ctx_.src_dir_of(e), e.rel.empty());
  std::string name =
      e.rel.empty() ? std::string(io::base_name(plan.roots[e.root].src)) : plan.name(e);
  if (dirfd < 0) {
    ctx_.fail_file(file,
                   io::Error::from_errno(errno, "open directory of " + plan.src_path(e)).message);
    it.failed = true;
    return -1;
  }
  int flags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC;
  int fd = ::openat(dirfd, name.c_str(), flags | (ctx_.opts.direct_read ? O_DIRECT : 0));
  if (fd < 0 && ctx_.opts.direct_read && errno == EINVAL) fd = ::openat(dirfd, name.c_str(), flags);
  if (fd < 0) {
    ctx_.fail_file(file, io::Error::from_errno(errno, "open " + plan.src_path(e)).message);
    it.failed = true;
    return -1;
  }
  if (ctx_.opts.direct_read && io::dio_alignment(fd) > kDirectAlign) {
    // Buffers and lengths are aligned to 4 KiB; a device that needs more reads buffered.
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_DIRECT);
  }
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<uint64_t>(st.st_size) != e.meta.size_bytes || st.st_ino != e.meta.inode ||
      st.st_dev != e.meta.device || st.st_mtim.tv_sec != e.meta.mtime.tv_sec ||
      st.st_mtim.tv_nsec != e.meta.mtime.tv_nsec) {
    ctx_.fail_file(file, plan.src_path(e) +
                             ": file changed while being copied (replaced, resized or modified)");
    it.failed = true;
    return -1;
  }
  return fd;
}

namespace {

// A read of the item's source that failed or met end of file before `want` bytes fails the
// file, naming it; true when it read them all.
bool check_read(CopyContext& ctx, Item& it, const io::IoOp& op, uint64_t want) {
  const std::string& src = ctx.plan.src_path(ctx.plan.entries[it.ext.file]);
  if (op.error != 0) {
    ctx.fail_file(it.ext.file,
                  io::Error::from_errno(
                      op.error, "read " + src + " at offset " + std::to_string(it.ext.offset_bytes))
                      .message);
  } else if (op.done_bytes < want) {
    ctx.fail_file(it.ext.file, src + ": file shrank while being copied");
  } else {
    return true;
  }
  it.failed = true;
  return false;
}

}  // namespace

void ReadStage::operator()(WorkUnit& unit) const {
  const Plan& plan = ctx_.plan;
  DirFdCache dirs;
  std::vector<io::IoOp> ops;
  std::vector<io::UniqueFd> fds;
  std::vector<size_t> op_item;
  std::vector<uint64_t> op_want;
  std::vector<size_t> fd_item;  // the item each of fds belongs to
  ops.reserve(unit.items.size());
  fds.reserve(unit.items.size());
  for (size_t i = 0; i < unit.items.size(); ++i) {
    Item& it = unit.items[i];
    uint32_t file = it.ext.file;
    if (ctx_.stop.load(std::memory_order_relaxed) || ctx_.file_failed(file) ||
        !ctx_.parent_ok[file]) {
      ctx_.abandon_file(file);
      it.failed = true;
      continue;
    }
    const Entry& e = plan.entries[file];
    int fd = open_source(it, dirs);
    if (fd < 0) continue;
    io::UniqueFd owned(fd);
    it.sparse = io::is_sparse(e.meta);
    if (it.sparse) {
      // Read only the data; holes stay zero in the buffer and are not written.
      find_data(fd, it.ext.offset_bytes, it.ext.offset_bytes + it.ext.length_bytes, it.data);
      std::memset(unit.buffer.data() + it.ext.buf_offset_bytes, 0, it.ext.length_bytes);
      for (const auto& [b, en] : it.data) {
        uint64_t len = en - b;
        if (ctx_.opts.direct_read) len = round_up(len, kDirectAlign);
        ops.push_back(
            io::IoOp{io::IoKind::kRead, fd,
                     unit.buffer.data() + it.ext.buf_offset_bytes + (b - it.ext.offset_bytes), len,
                     b, unit.buffer.index()});
        op_item.push_back(i);
        op_want.push_back(en - b);
      }
    } else if (ctx_.clone_unread()) {
      it.unread = true;  // the write stage clones it (or reads it, if the clone fails)
    } else {
      uint64_t len = it.ext.length_bytes;
      if (ctx_.opts.direct_read) len = round_up(len, kDirectAlign);
      ops.push_back(io::IoOp{io::IoKind::kRead, fd, unit.buffer.data() + it.ext.buf_offset_bytes,
                             len, it.ext.offset_bytes, unit.buffer.index()});
      op_item.push_back(i);
      op_want.push_back(it.ext.length_bytes);
    }
    fds.push_back(std::move(owned));
    fd_item.push_back(i);
  }
  ctx_.backend().run(ops);
  for (size_t k = 0; k < ops.size(); ++k)
    check_read(ctx_, unit.items[op_item[k]], ops[k], op_want[k]);
  // The write stage may clone these bytes from the source instead of writing them.
  if (ctx_.may_clone())
    for (size_t n = 0; n < fds.size(); ++n) unit.items[fd_item[n]].src = std::move(fds[n]);
}

void HashStage::operator()(WorkUnit& unit) const {
  for (Item& it : unit.items) {
    if (!it.failed && !it.unread) it.hash = hash_bytes(unit.bytes(it));
  }
}

int WriteStage::open_part(uint32_t file, DirFdCache& dirs, std::string& err) const {
  const Entry& e = ctx_.plan.entries[file];
  int dirfd = dirs.get(ctx_.dst_dir_of(e), e.rel.empty());
  if (dirfd < 0) {
    err = io::Error::from_errno(errno, "open directory " + ctx_.dst_dir_of(e)).message;
    return -1;
  }
  // A resumed part keeps its bytes; otherwise a stale part of an earlier run is truncated.
  int flags = (ctx_.opts.verify ? O_RDWR : O_WRONLY) | O_CREAT | O_CLOEXEC |
              (ctx_.resume_parts.count(file) ? 0 : O_TRUNC);
  std::string part = ctx_.temp_name(file);
  int fd = ::openat(dirfd, part.c_str(), flags | (ctx_.opts.direct_write ? O_DIRECT : 0),
                    e.meta.mode & 0777);
  if (fd < 0 && ctx_.opts.direct_write && errno == EINVAL)
    fd = ::openat(dirfd, part.c_str(), flags, e.meta.mode & 0777);
  if (fd < 0) {
    int e_no = errno;
    err = io::Error::from_errno(e_no, "create " + io::join_path(ctx_.dst_dir_of(e), part)).message;
    if (is_fatal_write_error(e_no)) ctx_.set_fatal(err);
  }
  return fd;
}

int WriteStage::open_temp(uint32_t file, DirFdCache& dirs, bool& unnamed, std::string& err) const {
  const Entry& e = ctx_.plan.entries[file];
  int dirfd = dirs.get(ctx_.dst_dir_of(e), e.rel.empty());
  if (dirfd < 0) {
    err = io::Error::from_errno(errno, "open directory " + ctx_.dst_dir_of(e)).message;
    return -1;
  }
  int access = ctx_.opts.verify ? O_RDWR : O_WRONLY;
  int direct = ctx_.opts.direct_write ? O_DIRECT : 0;
  mode_t mode = e.meta.mode & 0777;
  unnamed = false;
  if (ctx_.use_tmpfile.load(std::memory_order_relaxed)) {
    // An unnamed inode, linked in under its final name only when complete: one directory
    // operation instead of create + rename, and nothing left behind if the run dies.
    int fd = ::openat(dirfd, ".", O_TMPFILE | access | O_CLOEXEC | direct, mode);
    if (fd < 0 && direct && errno == EINVAL)
      fd = ::openat(dirfd, ".", O_TMPFILE | access | O_CLOEXEC, mode);
    if (fd >= 0) {
      unnamed = true;
      // Replacing a file: blocks allocated now (unwritten extents) leave ext4 no delayed
      // allocation to flush synchronously when the rename replaces the old file
      // (auto_da_alloc), which otherwise costs each replaced file a writeback in the
      // foreground. Best effort: a file system without fallocate just skips it.
      if (ctx_.replaces(file) && e.meta.size_bytes > 0 && !io::is_sparse(e.meta) &&
          ::fallocate(fd, 0, 0, static_cast<off_t>(e.meta.size_bytes)) != 0 &&
          (errno == ENOSPC || errno == EDQUOT)) {
        int e_no = errno;
        ::close(fd);
        err = io::Error::from_errno(e_no, "create " + ctx_.plan.dst_path(e)).message;
        ctx_.set_fatal(err);
        return -1;
      }
      return fd;
    }
    if (errno == EOPNOTSUPP || errno == EISDIR || errno == EINVAL) {
      ctx_.use_tmpfile.store(false);
      io::log_once(io::LogLevel::kInfo, "no-tmpfile",
                   "destination has no O_TMPFILE; using named temporaries (.barge-tmp.*)");
    } else {
      int e_no = errno;
      err = io::Error::from_errno(e_no, "create " + ctx_.plan.dst_path(e)).message;
      if (is_fatal_write_error(e_no)) ctx_.set_fatal(err);
      return -1;
    }
  }
  std::string tmp = ctx_.temp_name(file);
  int flags = access | O_CREAT | O_EXCL | O_CLOEXEC;
  int fd = ::openat(dirfd, tmp.c_str(), flags | direct, mode);
  if (fd < 0 && direct && errno == EINVAL) {
    // Some file systems create the file and then refuse O_DIRECT: the file is ours (O_EXCL).
    ::unlinkat(dirfd, tmp.c_str(), 0);
    fd = ::openat(dirfd, tmp.c_str(), flags, mode);
  }
  if (fd < 0) {
    int e_no = errno;
    err = io::Error::from_errno(e_no, "create " + io::join_path(ctx_.dst_dir_of(e), tmp)).message;
    if (is_fatal_write_error(e_no)) ctx_.set_fatal(err);
  }
  return fd;
}

io::Result<Hash128> WriteStage::reread_hash(io::IoBackend& backend, int fd, uint64_t offset,
                                            uint64_t length) {
  constexpr size_t kScratchBytes = 1 << 20;
  thread_local std::unique_ptr<std::byte, decltype(&std::free)> scratch(
      static_cast<std::byte*>(std::aligned_alloc(kDirectAlign, kScratchBytes)), &std::free);
  StreamHasher hasher;
  uint64_t done = 0;
  while (done < length) {
    uint64_t want = std::min<uint64_t>(kScratchBytes, length - done);
    io::IoOp op{io::IoKind::kRead, fd, scratch.get(), round_up(want, kDirectAlign),
                offset + done,     -1};
    backend.run(std::span<io::IoOp>(&op, 1));
    if (op.error != 0) return io::Error::from_errno(op.error, "re-read");
    if (op.done_bytes < want) return io::Error::plain("re-read: destination shorter than written");
    hasher.update({scratch.get(), static_cast<size_t>(want)});
    done += want;
  }
  return hasher.digest();
}

// The descriptor of large file `file`'s part, opened (or created and its space reserved) by
// the first of its chunks to get here; -1 with `err` set once that failed.
int WriteStage::large_file_fd(uint32_t file, DirFdCache& dirs, std::string& err) const {
  const Plan& plan = ctx_.plan;
  LargeFile& lf = ctx_.large_file(file);
  std::lock_guard lock(lf.mu);
  if (!lf.create_attempted && ctx_.shared_large) {
    // Created (and space reserved) by the file's owner before the transfer phase.
    lf.create_attempted = true;
    const Entry& e = plan.entries[file];
    int dirfd = dirs.get(ctx_.dst_dir_of(e), e.rel.empty());
    int flags = (ctx_.opts.verify ? O_RDWR : O_WRONLY) | O_CLOEXEC;
    int fd = dirfd < 0 ? -1
                       : ::openat(dirfd, ctx_.temp_name(file).c_str(),
                                  flags | (ctx_.opts.direct_write ? O_DIRECT : 0));
    if (fd < 0 && dirfd >= 0 && ctx_.opts.direct_write && errno == EINVAL) {
      fd = ::openat(dirfd, ctx_.temp_name(file).c_str(), flags);
    }
    if (fd < 0) err = io::Error::from_errno(errno, "open temporary of " + plan.dst_path(e)).message;
    lf.fd.reset(fd);
  }
  if (!lf.create_attempted) {
    lf.create_attempted = true;
    int fd = open_part(file, dirs, err);
    bool reused = ctx_.resume_parts.count(file) > 0;
    if (fd >= 0) lf.fd.reset(fd);
    if (fd >= 0 && !reused) {
      // Reserve the space up front: less fragmentation, and a full disk shows at once.
      // Sparse files only get their size, so their holes stay holes.
      const io::FileMeta& m = plan.entries[file].meta;
      // Once clones work, they bring their own extents: then the part only gets its size.
      int rc = io::is_sparse(m) || ctx_.clone_state.load(std::memory_order_relaxed) == 1
                   ? (::ftruncate(fd, static_cast<off_t>(m.size_bytes)) == 0 ? 0 : errno)
                   : ::posix_fallocate(fd, 0, static_cast<off_t>(m.size_bytes));
      if (rc == ENOSPC || rc == EDQUOT) {
        ctx_.set_fatal(
            io::Error::from_errno(rc, "write " + plan.dst_path(plan.entries[file])).message);
      }
    }
  }
  if (lf.fd.get() < 0 && err.empty())
    err = "create temporary for " + plan.dst_path(plan.entries[file]) + " failed";
  return lf.fd.get();
}

// --reflink: the item's bytes shared with the source's extents (FICLONERANGE) instead of
// written. True when done (or, with --reflink always, when the file failed for want of
// it); false: write the bytes. A clone that fails before any worked turns cloning off.
bool WriteStage::clone(Item& it) const {
  file_clone_range r{};
  r.src_fd = it.src.get();
  r.src_offset = it.ext.offset_bytes;
  r.src_length = it.ext.length_bytes;
  r.dest_offset = it.ext.offset_bytes;
  if (it.ext.length_bytes == 0) return true;  // nothing to share; says nothing of clones
  if (::ioctl(it.dst_fd, FICLONERANGE, &r) == 0) {
    ctx_.clone_state.store(1, std::memory_order_relaxed);
    ctx_.stats.bytes_cloned.fetch_add(it.ext.length_bytes, std::memory_order_relaxed);
    return true;
  }
  const int err = errno;
  if (ctx_.opts.reflink == Reflink::kAlways) {
    ctx_.fail_file(
        it.ext.file,
        io::Error::from_errno(err, "reflink " + ctx_.plan.dst_path(ctx_.plan.entries[it.ext.file]))
            .message);
    it.failed = true;
    return true;
  }
  int untried = 0;
  ctx_.clone_state.compare_exchange_strong(untried, -1, std::memory_order_relaxed);
  return false;
}

// An item left unread for a clone that then failed: its bytes read now, before the write.
bool WriteStage::read_unread(WorkUnit& unit, Item& it) const {
  io::IoOp op{
      io::IoKind::kRead,   it.src.get(),        unit.buffer.data() + it.ext.buf_offset_bytes,
      it.ext.length_bytes, it.ext.offset_bytes, unit.buffer.index()};
  ctx_.backend().run(std::span<io::IoOp>(&op, 1));
  it.unread = false;
  return check_read(ctx_, it, op, it.ext.length_bytes);
}

void WriteStage::operator()(WorkUnit& unit) const {
  const Plan& plan = ctx_.plan;
  DirFdCache dirs;
  std::vector<io::IoOp> ops;
  std::vector<size_t> op_item;
  for (size_t i = 0; i < unit.items.size(); ++i) {
    Item& it = unit.items[i];
    uint32_t file = it.ext.file;
    if (it.failed || ctx_.file_failed(file)) {
      it.failed = true;
      continue;
    }
    std::string err;
    if (it.ext.chunk_count == 1) {
      int fd = open_temp(file, dirs, it.unnamed, err);
      if (fd >= 0) it.dst.reset(fd);
      it.dst_fd = fd;
    } else {
      it.dst_fd = large_file_fd(file, dirs, err);
    }
    if (it.dst_fd < 0) {
      ctx_.fail_file(file, err);
      it.failed = true;
      continue;
    }
    auto add_write = [&](uint64_t file_off, uint64_t len) {
      std::byte* p =
          unit.buffer.data() + it.ext.buf_offset_bytes + (file_off - it.ext.offset_bytes);
      if (ctx_.opts.direct_write) {
        // O_DIRECT writes whole blocks; the padding is zeroed and cut off by ftruncate at commit.
        uint64_t padded = round_up(len, kDirectAlign);
        std::memset(p + len, 0, padded - len);
        len = padded;
      }
      ops.push_back(io::IoOp{io::IoKind::kWrite, it.dst_fd, p, len, file_off, unit.buffer.index()});
      op_item.push_back(i);
    };
    if (it.src.valid() && ctx_.may_clone() && clone(it)) continue;
    if (it.unread && !read_unread(unit, it)) continue;
    if (it.sparse) {
      for (const auto& [b, en] : it.data) add_write(b, en - b);
    } else {
      add_write(it.ext.offset_bytes, it.ext.length_bytes);
    }
  }
  io::IoBackend& backend = ctx_.backend();
  backend.run(ops);
  for (size_t k = 0; k < ops.size(); ++k) {
    Item& it = unit.items[op_item[k]];
    const Entry& e = plan.entries[it.ext.file];
    if (ops[k].error != 0) {
      std::string msg = io::Error::from_errno(ops[k].error, "write " + plan.dst_path(e)).message;
      if (is_fatal_write_error(ops[k].error)) ctx_.set_fatal(msg);
      ctx_.fail_file(it.ext.file, msg);
      it.failed = true;
    }
  }
  if (ctx_.opts.verify) verify(unit, ops, op_item, backend);
}

// --verify: every write read back and hashed against the source's checksum.
void WriteStage::verify(WorkUnit& unit, const std::vector<io::IoOp>& ops,
                        const std::vector<size_t>& op_item, io::IoBackend& backend) const {
  const Plan& plan = ctx_.plan;
  auto t0 = std::chrono::steady_clock::now();
  for (size_t k = 0; k < ops.size(); ++k) {
    Item& it = unit.items[op_item[k]];
    if (it.failed) continue;
    const Entry& e = plan.entries[it.ext.file];
    auto h = reread_hash(backend, it.dst_fd, it.ext.offset_bytes, it.ext.length_bytes);
    if (!h) {
      ctx_.fail_file(it.ext.file, "verify " + plan.dst_path(e) + ": " + h.error().message);
      it.failed = true;
    } else if (!(*h == it.hash)) {
      ctx_.fail_file(it.ext.file, "verify " + plan.dst_path(e) + ": checksum mismatch in bytes " +
                                      std::to_string(it.ext.offset_bytes) + ".." +
                                      std::to_string(it.ext.offset_bytes + it.ext.length_bytes));
      it.failed = true;
    } else {
      ctx_.stats.bytes_verified.fetch_add(it.ext.length_bytes, std::memory_order_relaxed);
    }
  }
  auto ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  ctx_.stats.stage_busy_ns[kStageVerify].fetch_add(static_cast<uint64_t>(ns),
                                                   std::memory_order_relaxed);
}

}  // namespace barge::pipeline
