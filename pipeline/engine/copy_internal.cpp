// The engine's copy support shared by copy, sync, the MPI copy and the repository commands:
// the copy assembly (read → hash → write → commit), special files, hard-link followers,
// --resume's planning, the journal flusher, per-thread I/O backends and thread defaults.
#include "pipeline/engine/copy_internal.hpp"

#include <fcntl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <chrono>
#include <cstdlib>
#include <thread>

#include "io/log.hpp"
#include "io/path_ops.hpp"
#include "io/xattr.hpp"
#include "pipeline/core/manifest.hpp"
#include "pipeline/engine/graph.hpp"

namespace barge::pipeline {

void create_special(CopyContext& ctx, int parent_fd, uint32_t index, RunResult& result) {
  const Plan& plan = ctx.plan;
  const Entry& e = plan.entries[index];
  std::string name = plan.name(e);
  std::string path = plan.dst_path(e);
  std::string tmp = ctx.temp_name(index);
  int rc;
  if (e.meta.type == io::FileType::kSymlink) {
    rc = ::symlinkat(e.link_target.c_str(), parent_fd, tmp.c_str());
  } else {
    mode_t type = e.meta.type == io::FileType::kFifo         ? S_IFIFO
                  : e.meta.type == io::FileType::kCharDevice ? S_IFCHR
                                                             : S_IFBLK;
    rc = ::mknodat(parent_fd, tmp.c_str(), type | 0600, static_cast<dev_t>(e.meta.rdev));
  }
  if (rc != 0) {
    ctx.errors.add(io::Error::from_errno(
                       errno, std::string("create ") + io::file_type_name(e.meta.type) + " " + path)
                       .message);
    return;
  }
  auto st = io::apply_meta_path(parent_fd, tmp.c_str(), e.meta, ctx.apply_owner);
  if (st && ::renameat(parent_fd, tmp.c_str(), parent_fd, name.c_str()) != 0) {
    st = io::Error::from_errno(errno, "rename into place " + path);
  }
  if (!st) {
    ::unlinkat(parent_fd, tmp.c_str(), 0);
    ctx.errors.add(st.error().message + " (" + path + ")");
    return;
  }
  if (ctx.opts.xattrs) {
    if (auto xs = apply_xattrs(plan, e, -1, path); !xs) ctx.errors.add(xs.error().message);
  }
  if (e.meta.type == io::FileType::kSymlink) {
    ++result.symlinks;
  } else {
    ++result.others;
  }
}

unsigned default_threads_per_rank() {
  // Ranks sharing a node share its cores: split the default between them.
  long local = 1;
  for (const char* var :
       {"OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "SLURM_NTASKS_PER_NODE"}) {
    if (const char* v = std::getenv(var)) {
      local = std::max(1L, std::atol(v));
      break;
    }
  }
  return std::max(2u, default_threads() / static_cast<unsigned>(local));
}

// Units in flight hold a descriptor per small file, and deep trees one per level: use the
// hard limit, as cp and rsync effectively may.
void raise_fd_limit() {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &rl);
  }
}

unsigned default_threads() {
  unsigned cores = std::max(1u, std::thread::hardware_concurrency());
  return std::max(4u, 2 * cores);
}

namespace {

// copy = read → hash → write(+verify) → commit, over the units next_unit cuts.
struct CopyAssembly {
  CopyAssembly(CopyContext& ctx, const UnitSource& next_unit) : read(ctx), write(ctx), commit(ctx) {
    a.next = [&next_unit, this](WorkUnit& u) {
      if (!next_unit(extents)) return false;
      u.items.reserve(extents.size());
      for (const Extent& x : extents) u.items.emplace_back().ext = x;
      return true;
    };
    a.stopping = [&ctx] {
      if (int sig = stop_signal().load(); sig != 0 && !ctx.stop.load()) {
        ctx.resumable = true;
        ctx.set_fatal("stopped by signal " + std::to_string(sig) +
                      "; rerun with --resume to finish");
      }
      return ctx.stop.load();
    };
    a.stages = {{kStageRead, StageKind::kIo, [this](WorkUnit& u) { read(u); }},
                {kStageHash, StageKind::kCpu, [this](WorkUnit& u) { hash(u); }},
                {kStageWrite, StageKind::kIo, [this](WorkUnit& u) { write(u); }}};
    a.last = [this](WorkUnit* u, const Emit& emit) { commit(u, emit); };
    a.drain = [this] { return commit.abandon_unfinished(); };
    a.on_throw = [&ctx](WorkUnit& u, const std::string& why) {
      ctx.set_fatal(why);
      for (Item& it : u.items) {
        it.failed = true;
        ctx.abandon_file(it.ext.file);
      }
    };
  }
  ReadStage read;
  HashStage hash;
  WriteStage write;
  CommitStage commit;
  std::vector<Extent> extents;
  Assembly a;
};

}  // namespace

void transfer(CopyContext& ctx, io::BufferPool& pool, unsigned threads,
              const UnitSource& next_unit) {
  CopyAssembly copy(ctx, next_unit);
  auto drain = std::move(copy.a.drain);
  copy.a.drain = {};
  run_graph(copy.a, pool, ctx.stats, threads);
  // Shared large files are closed before the unfinished ones are abandoned.
  if (ctx.shared_large) copy.commit.close_shared();
  for (WorkUnit* u : drain()) delete u;
}

void transfer_serial(CopyContext& ctx, io::BufferPool& pool, const UnitSource& next_unit) {
  CopyAssembly copy(ctx, next_unit);
  run_serial(copy.a, pool, ctx.stats);
}

io::Status link_into_place_path(const std::string& target_path, int dirfd, const std::string& name,
                                const std::string& tmp) {
  if (::linkat(AT_FDCWD, target_path.c_str(), dirfd, name.c_str(), 0) == 0)
    return io::Status::success();
  if (errno != EEXIST) return io::Error::from_errno(errno, "link " + name + " to " + target_path);
  ::unlinkat(dirfd, tmp.c_str(), 0);
  if (::linkat(AT_FDCWD, target_path.c_str(), dirfd, tmp.c_str(), 0) != 0) {
    return io::Error::from_errno(errno, "link " + name + " to " + target_path);
  }
  if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) {
    int err = errno;
    ::unlinkat(dirfd, tmp.c_str(), 0);
    return io::Error::from_errno(err, "link " + name + " to " + target_path);
  }
  return io::Status::success();
}

uint64_t link_followers(CopyContext& ctx, const std::vector<uint32_t>& followers,
                        const std::function<std::string(uint32_t)>& leader_path,
                        const std::function<std::string(uint32_t)>& leader_manifest,
                        const std::function<bool(uint32_t)>& leader_ok, bool skip_if_same) {
  const Plan& plan = ctx.plan;
  DirFdCache dirs;
  uint64_t linked = 0;
  for (uint32_t f : followers) {
    const Entry& e = plan.entries[f];
    if (!leader_ok(f)) {
      ctx.fail_file(f, plan.dst_path(e) + ": not linked, its hard-link leader was not copied");
      continue;
    }
    std::string target = leader_path(f);
    int dirfd = dirs.get(plan.dst_parent(e), e.rel.empty());
    if (dirfd < 0) {
      ctx.fail_file(f,
                    io::Error::from_errno(errno, "open directory " + plan.dst_parent(e)).message);
      continue;
    }
    std::string name = plan.name(e);
    if (skip_if_same) {
      struct stat a, b;
      if (::fstatat(dirfd, name.c_str(), &a, AT_SYMLINK_NOFOLLOW) == 0 &&
          ::stat(target.c_str(), &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
        if (ctx.manifest) ctx.manifest->add_link(plan.manifest_path(e), leader_manifest(f));
        continue;  // already the same file
      }
    }
    if (auto st = link_into_place_path(target, dirfd, name, ctx.temp_name(f)); !st) {
      ctx.fail_file(f, st.error().message);
      continue;
    }
    if (ctx.manifest) ctx.manifest->add_link(plan.manifest_path(e), leader_manifest(f));
    ++linked;
  }
  return linked;
}

bool in_place(const Plan& plan, const Entry& e, DirFdCache& dirs) {
  int dirfd = dirs.get(plan.dst_parent(e), e.rel.empty());
  if (dirfd < 0) return false;
  struct stat st;
  std::string name = plan.name(e);
  return ::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
         static_cast<uint64_t>(st.st_size) == e.meta.size_bytes &&
         st.st_mtim.tv_sec == e.meta.mtime.tv_sec && st.st_mtim.tv_nsec == e.meta.mtime.tv_nsec;
}

uint64_t plan_resume(CopyContext& ctx, std::vector<uint8_t>& include, const JournalState& state,
                     std::vector<const std::unordered_set<uint32_t>*>& done_chunks) {
  const Plan& plan = ctx.plan;
  done_chunks.assign(plan.entries.size(), nullptr);
  DirFdCache dirs;
  std::vector<uint32_t> skipped;
  for (uint32_t f : plan.files) {
    if (!include[f]) continue;
    const Entry& e = plan.entries[f];
    if (in_place(plan, e, dirs)) {
      include[f] =
          0;  // put in place (complete: linked or renamed in only when done) by an earlier run
      skipped.push_back(f);
      continue;
    }
    int dirfd = dirs.get(plan.dst_parent(e), e.rel.empty());
    if (dirfd < 0) continue;
    struct stat st;
    // A manifest hashes a large file's chunks in order as they pass: its journaled chunks are
    // copied again rather than left out of the checksum.
    if (!ctx.is_large(f) || ctx.manifest) continue;
    std::string part = ctx.temp_name(f);
    auto it = state.find(part);
    if (it == state.end()) continue;
    if (::fstatat(dirfd, part.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(st.st_mode) ||
        static_cast<uint64_t>(st.st_size) != e.meta.size_bytes) {
      continue;
    }
    ctx.resume_parts.insert(f);
    done_chunks[f] = &it->second;
    uint32_t chunks = chunk_count_for(e.meta.size_bytes, ctx.opts.chunk_bytes,
                                      (ctx.opts.chunk_bytes + 4095) / 4096 * 4096);
    uint32_t done = 0;
    for (uint32_t c : it->second)
      done += c + 1 < chunks ? 1 : 0;  // the last chunk is always redone
    ctx.set_chunks_left(f, chunks - done);
  }
  hash_in_place_for_manifest(ctx, skipped);
  return skipped.size();
}

void hash_in_place_for_manifest(CopyContext& ctx, const std::vector<uint32_t>& files) {
  if (!ctx.manifest || files.empty()) return;
  // Not copied again, but listed: their checksum is taken from the source, as for a copy.
  tbb::parallel_for(size_t{0}, files.size(), [&](size_t i) {
    const Entry& e = ctx.plan.entries[files[i]];
    auto h = hash_file(AT_FDCWD, ctx.plan.src_path(e));
    if (h) {
      ctx.manifest->add(ctx.plan.manifest_path(e), h.value());
    } else {
      ctx.fail_file(files[i], h.error().message + " (in place, but not in --checksum-manifest)");
    }
  });
}

JournalFlusher::JournalFlusher(Journal* journal, CopyContext& ctx) : journal_(journal), ctx_(ctx) {
  if (!journal_) return;
  // BARGE_JOURNAL_FLUSH_MS tunes the interval (tests use a short one to stop runs mid-way).
  long interval_ms = 1000;
  if (const char* env = std::getenv("BARGE_JOURNAL_FLUSH_MS"))
    interval_ms = std::clamp(std::atol(env), 1L, 60000L);
  thread_ = std::thread([this, interval_ms] {
    std::unique_lock lock(mu_);
    while (!cv_.wait_for(lock, std::chrono::milliseconds(interval_ms), [&] { return done_; })) {
      if (auto st = journal_->flush(); !st) ctx_.set_fatal(st.error().message);
    }
  });
}

JournalFlusher::~JournalFlusher() {
  if (!journal_) return;
  {
    std::lock_guard lock(mu_);
    done_ = true;
  }
  cv_.notify_all();
  thread_.join();
  if (auto st = journal_->flush(); !st) ctx_.set_fatal(st.error().message);
}

BackendSource BackendSet::source() {
  return [this]() -> io::IoBackend& {
    auto& slot = backends_.local();
    if (!slot) {
      slot = io::make_backend(opts_);
      if (slot->buffers_registered()) registered_ = true;
      std::lock_guard lock(mu_);
      name_ = std::string(slot->name());
    }
    return *slot;
  };
}

std::string BackendSet::name() const {
  std::lock_guard lock(mu_);
  return name_.empty() ? "none" : name_;
}

void apply_meta_changes(CopyContext& ctx, const std::vector<uint8_t>& flags, uint32_t count) {
  const Plan& plan = ctx.plan;
  DirFdCache dirs;
  for (uint32_t i = 0; i < count; ++i) {
    const Entry& e = plan.entries[i];
    if (e.meta.type == io::FileType::kDirectory || (flags[i] & (kActTransfer | kActCreate)) ||
        !(flags[i] & kActMeta))
      continue;
    int dirfd = dirs.get(plan.dst_parent(e), e.rel.empty());
    io::Status st = dirfd < 0
                        ? io::Error::from_errno(errno, "open directory " + plan.dst_parent(e))
                        : io::apply_meta_path(dirfd, plan.name(e).c_str(), e.meta, ctx.apply_owner);
    if (st && ctx.opts.xattrs) st = apply_xattrs(plan, e, -1, plan.dst_path(e));
    if (!st) ctx.errors.add(st.error().message);
  }
}

std::unique_ptr<Journal> open_journal(CopyContext& ctx, const std::vector<uint8_t>& include,
                                      const std::string& dir) {
  const Plan& plan = ctx.plan;
  if (std::none_of(plan.files.begin(), plan.files.end(),
                   [&](uint32_t f) { return include[f] && ctx.is_large(f); }))
    return nullptr;
  auto j = Journal::open(dir, 0);
  if (!j) {
    io::log_warn(j.error().message + " (a stopped run will not be resumable)");
    return nullptr;
  }
  ctx.journal = j.value().get();
  return std::move(j.value());
}

}  // namespace barge::pipeline
