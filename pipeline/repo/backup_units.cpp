// barge backup, each file's work: the walk, the reuse-or-read decision per file (prepare),
// and the graph that reads, hashes and dedupes, compresses and appends to packs, unit by unit
// (transfer). The run object and its other phases: backup.cpp.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>

#include "io/buffer_pool.hpp"
#include "io/host_name.hpp"
#include "io/log.hpp"
#include "io/xattr.hpp"
#include "pipeline/core/rank_stats.hpp"
#include "pipeline/core/wire.hpp"
#include "pipeline/dist/dist_internal.hpp"
#include "pipeline/engine/codec_stages.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/engine/graph.hpp"
#include "pipeline/repo/backup_run.hpp"
#include "pipeline/repo/backup_setup.hpp"
#include "pipeline/repo/rank_entries.hpp"
#include "pipeline/repo/repository.hpp"

namespace barge::pipeline {
namespace {

using repo::BlobRef;
using repo::SnapEntry;

bool same_file(const io::FileMeta& a, const io::FileMeta& b) {
  return a.type == b.type && a.size_bytes == b.size_bytes && a.inode == b.inode &&
         a.mtime.tv_sec == b.mtime.tv_sec && a.mtime.tv_nsec == b.mtime.tv_nsec &&
         a.ctime.tv_sec == b.ctime.tv_sec && a.ctime.tv_nsec == b.ctime.tv_nsec;
}

bool all_zero(std::span<const std::byte> b) {
  for (std::byte x : b)
    if (x != std::byte{0}) return false;
  return true;
}

}  // namespace

void BackupRun::walk(unsigned threads) {
  PathFilter filter(opts_.excludes, opts_.includes);
  std::vector<Root> roots{Root{opts_.source, "", ""}};
  std::vector<uint8_t> flags;
  plan_ = distributed_walk(
      comm_, roots, threads, walk_errors_,
      [&](const Plan&, const DirRef& d, io::DirListing& listing, WalkOutput& out) {
        for (io::DirChild& c : listing.children) {
          auto child = child_entry(d, c, filter);
          if (!child) continue;
          if (child->meta.type == io::FileType::kDirectory)
            out.subdirs.push_back(DirRef{d.root, child->rel});
          out.flags.push_back(0);
          out.entries.push_back(std::move(*child));
        }
      },
      [&](const Plan&, Entry& e) -> std::optional<uint8_t> {
        if (e.meta.type != io::FileType::kDirectory) {
          walk_errors_.add("source " + opts_.source + ": not a directory");
          return std::nullopt;
        }
        return 0;
      },
      flags);
}

// Per entry: the manifest entry; per file: reuse the parent's blobs or read it.
void BackupRun::prepare() {
  const size_t n = plan_.entries.size();
  entries_.resize(n);
  work_.resize(n);
  include_.assign(n, 0);
  dropped_ = std::vector<std::atomic<uint8_t>>(n);
  follower_.assign(n, 0);
  // Hard links seen by this rank: the leader holds the data.
  const std::vector<uint32_t> leader = hard_link_leaders(plan_);
  for (uint32_t i = 0; i < n; ++i) {
    const Entry& e = plan_.entries[i];
    SnapEntry& s = entries_[i];
    s.path = e.rel;
    s.meta = e.meta;
    s.link_target = e.link_target;
    if (opts_.xattrs) {
      auto x = io::read_xattrs(plan_.src_path(e));
      if (x)
        s.xattrs = std::move(x.value());
      else
        errors_.add(x.error().message);
    }
  }
  for (uint32_t f : plan_.files) {
    const Entry& e = plan_.entries[f];
    if (leader[f] != kLeadsItself) {
      follower_[f] = 1;  // linked to its leader when the snapshot is merged
      continue;
    }
    const SnapEntry* old = nullptr;
    if (parent_) {
      auto it = parent_index_.find(e.rel);
      if (it != parent_index_.end()) {
        const SnapEntry& p = parent_->entries[it->second];
        if (p.meta.type == io::FileType::kRegular && p.link_to == repo::kNoLink) old = &p;
      }
    }
    if (old && !opts_.checksum && same_file(old->meta, e.meta)) {
      for (const BlobRef& c : old->chunks) entries_[f].chunks.push_back(remap(c));
      continue;
    }
    work_[f].old = old;
    if (e.meta.size_bytes == 0) continue;
    include_[f] = 1;
    work_[f].chunks.resize(chunk_count_for(e.meta.size_bytes, chunk_bytes(), buffer_bytes()));
    stats_.bytes_total += e.meta.size_bytes;
    stats_.files_total += 1;
  }
  packs_.emplace(repo_, opts_.pack_bytes);
}

BlobRef BackupRun::remap(const BlobRef& c) {
  BlobRef r = c;
  r.pack = pack_table_.index(parent_->packs[c.pack]);
  return r;
}

// read: each extent of the unit, checked to be the file the walk saw, in one batch through
// the ring. A file that changed is named and left out of the snapshot.
void BackupRun::read_unit(WorkUnit& u, io::IoBackend& backend) {
  DirFdCache dirs;
  std::vector<io::IoOp> ops;
  std::vector<io::UniqueFd> fds;
  std::vector<size_t> op_item;
  for (size_t i = 0; i < u.items.size(); ++i) {
    Item& it = u.items[i];
    const Extent& x = it.ext;
    it.failed = true;  // until read completely
    if (failed(x.file)) continue;
    const Entry& e = plan_.entries[x.file];
    int dirfd = dirs.get(plan_.src_parent(e), false);
    if (dirfd < 0) {
      fail_file(x.file,
                io::Error::from_errno(errno, "open directory of " + plan_.src_path(e)).message);
      continue;
    }
    std::string name = plan_.name(e);
    int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
    if (fd < 0 && errno == EPERM)
      fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
      fail_file(x.file, io::Error::from_errno(errno, "open " + plan_.src_path(e)).message);
      continue;
    }
    io::UniqueFd owned(fd);
    struct stat st;
    if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) ||
        static_cast<uint64_t>(st.st_size) != e.meta.size_bytes || st.st_ino != e.meta.inode ||
        st.st_mtim.tv_sec != e.meta.mtime.tv_sec || st.st_mtim.tv_nsec != e.meta.mtime.tv_nsec) {
      fail_file(x.file,
                plan_.src_path(e) + ": file changed while being read (not in this snapshot)");
      continue;
    }
    ops.push_back({io::IoKind::kRead, fd, u.buffer.data() + x.buf_offset_bytes, x.length_bytes,
                   x.offset_bytes, u.buffer.index()});
    op_item.push_back(i);
    fds.push_back(std::move(owned));
  }
  backend.run(ops);
  for (size_t k = 0; k < ops.size(); ++k) {
    Item& it = u.items[op_item[k]];
    const Extent& x = it.ext;
    const Entry& e = plan_.entries[x.file];
    if (ops[k].error != 0) {
      fail_file(x.file, io::Error::from_errno(ops[k].error, "read " + plan_.src_path(e)).message);
    } else if (ops[k].done_bytes != x.length_bytes) {
      fail_file(x.file,
                plan_.src_path(e) + ": file shrank while being read (not in this snapshot)");
    } else {
      it.failed = false;
      bytes_read_ += x.length_bytes;
      stats_.bytes_done += x.length_bytes;
    }
  }
}

// After hash: a chunk with the same bytes at the same place as in the parent points at the
// parent's blob, a zero chunk of a sparse file is a hole; only the others get a stored form.
void BackupRun::dedupe_unit(WorkUnit& u) {
  for (Item& it : u.items) {
    if (it.failed) continue;
    const Extent& x = it.ext;
    FileWork& w = work_[x.file];
    it.stored.present = true;
    if (w.old) {
      for (const BlobRef& c : w.old->chunks) {
        if (c.file_offset == x.offset_bytes && c.raw_bytes == x.length_bytes && c.hash == it.hash) {
          w.chunks[x.chunk] = remap(c);
          it.stored.present = false;
          break;
        }
      }
    }
    if (it.stored.present && io::is_sparse(plan_.entries[x.file].meta) && all_zero(u.bytes(it))) {
      w.chunks[x.chunk] = BlobRef{};  // a hole: restore leaves it unwritten
      it.stored.present = false;
    }
  }
}

// Last: the stored chunks' references go into their files' work; whole files are counted.
void BackupRun::record_unit(WorkUnit& u) {
  for (Item& it : u.items) {
    if (it.failed || failed(it.ext.file)) continue;
    const Extent& x = it.ext;
    if (it.stored.present) {
      BlobRef ref;
      ref.file_offset = x.offset_bytes;
      ref.raw_bytes = static_cast<uint32_t>(x.length_bytes);
      ref.hash = it.hash;
      ref.codec = it.stored.compressed ? repo::Codec::kZstd : repo::Codec::kRaw;
      ref.stored_bytes = it.stored.stored_bytes;
      ref.pack = it.stored.pack;
      ref.pack_offset = it.stored.pack_offset;
      work_[x.file].chunks[x.chunk] = ref;
    }
    if (x.chunk + 1 == x.chunk_count) {
      stats_.files_done += 1;
      files_read_ += 1;
    }
  }
}

// backup = read → hash → compress → pack-append, on the graph.
void BackupRun::transfer(unsigned threads) {
  const uint32_t files_per_unit = opts_.max_files_per_unit;
  io::BufferPool pool(buffer_bytes(),
                      2 * pool_buffer_count(plan_, {.memory_bytes = opts_.memory_bytes / 2,
                                                    .chunk_bytes = chunk_bytes(),
                                                    .buffer_bytes = buffer_bytes(),
                                                    .files_per_unit = files_per_unit,
                                                    .include = &include_,
                                                    .min_buffers = 2}));
  BackendSet backends(io::BackendOptions{opts_.backend, opts_.queue_depth, &pool});
  BackendSource backend = backends.source();
  UnitCutter cutter(plan_, chunk_bytes(), buffer_bytes(), files_per_unit, &include_);
  std::unique_ptr<transport::AsyncSum> across = comm_.make_async_sum();
  using RunState = Progress::RunState;
  Progress::Across share{across.get(), comm_.size(),
                         [this] {
                           if (!stop_.load()) return RunState::kRunning;
                           return stop_signal().load() ? RunState::kSignalled : RunState::kFailed;
                         },
                         [this](RunState peer) {
                           ctx_fatal(peer == RunState::kSignalled
                                         ? "stopped by a signal to another rank"
                                         : "stopped because another rank failed");
                         }};
  Progress progress(stats_, comm_.rank() == 0 ? opts_.progress : ProgressMode::kNone, "backup",
                    opts_.progress_interval_s, std::move(share));
  CompressUnitStage compress(opts_.level, repo::kBlobHeaderBytes);
  std::unique_ptr<LevelTuner> tuner = make_tuner(threads);
  if (tuner) compress.follow(tuner->level());
  repo::PackAppendStage append(
      *packs_, backend, [this](const std::string& pack) { return pack_table_.index(pack); },
      [this](Item& it, const io::Error& e) {
        it.failed = true;
        ctx_fatal(e.message + (e.errnum == ENOSPC || e.errnum == EDQUOT
                                   ? ": free space (or quota) on the repository's file "
                                     "system, then run the same backup again"
                                   : std::string()));
      });
  std::vector<Extent> extents;
  Assembly a;
  a.buffers_per_unit = 2;
  a.next = [&](WorkUnit& u) {
    if (!cutter.next(extents)) return false;
    for (const Extent& x : extents) u.items.emplace_back().ext = x;
    return true;
  };
  a.stopping = [&] {
    if (int sig = stop_signal().load(); sig != 0)
      ctx_fatal("stopped by signal " + std::to_string(sig) +
                "; no snapshot written (run the backup again)");
    return stop_.load();
  };
  a.stages = {{kStageRead, StageKind::kIo, [&](WorkUnit& u) { read_unit(u, backend()); }},
              {kStageHash, StageKind::kCpu,
               [&](WorkUnit& u) {
                 HashStage{}(u);
                 dedupe_unit(u);
               }},
              {kStageCompress, StageKind::kCpu, [&](WorkUnit& u) { compress(u); }},
              {kStagePackAppend, StageKind::kIo, [&](WorkUnit& u) {
                 if (!stop_.load()) append(u);
               }}};
  a.last = [&](WorkUnit* u, const Emit& emit) {
    if (!stop_.load()) record_unit(*u);
    if (tuner) count_for_tuner(*u, *tuner);
    emit(u);
  };
  a.on_throw = [&](WorkUnit& u, const std::string& why) {
    ctx_fatal(why);
    for (Item& it : u.items) it.failed = true;
  };
  if (tuner) tuner->start();
  run_graph(a, pool, stats_, threads);
  if (tuner) tuner->finish();
  progress.stop();
  result_backend_ = backends.name();
}

// --tune: the zstd level is tuned on the backup itself (pipeline/engine/level_tuner.hpp),
// among 1, 3 and 6 (and --level), starting at --level. Each rank tunes its own share.
std::unique_ptr<LevelTuner> BackupRun::make_tuner(unsigned threads) {
  if (!opts_.tune) return nullptr;
  return make_level_tuner({plan_,
                           &include_,
                           chunk_bytes(),
                           opts_.queue_depth,
                           threads,
                           opts_.tune_seconds,
                           opts_.level,
                           {1, 3, 6},
                           "the repository's chunk size and the threads are not tuned",
                           &stats_,
                           kStagePackAppend},
                          tune_.emplace());
}

// A unit's raw bytes and the bytes it put into the packs (none for a deduplicated chunk).
void BackupRun::count_for_tuner(const WorkUnit& u, LevelTuner& tuner) {
  uint64_t raw = 0, stored = 0;
  for (const Item& it : u.items) {
    if (it.failed) continue;
    raw += it.ext.length_bytes;
    if (it.stored.present) stored += it.stored.stored_bytes;
  }
  tuner.count(u.level, raw, stored);
}

void BackupRun::fail_file(uint32_t f, const std::string& why) {
  if (dropped_[f].exchange(1) == 0) errors_.add(why);
}

}  // namespace barge::pipeline
