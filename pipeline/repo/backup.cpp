// barge backup: walk (all ranks) → decide per file: unchanged since the parent snapshot
// (size, mtime, ctime, inode) → reuse its blobs; otherwise read → hash → compress → pack.
// Each rank stores into its own packs; rank 0 merges every rank's entries into the snapshot
// manifest and renames it into place only after every pack is synced.
#include "pipeline/repo/backup.hpp"

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
#include "pipeline/repo/backup_setup.hpp"
#include "pipeline/repo/rank_entries.hpp"
#include "pipeline/repo/repository.hpp"

namespace barge::pipeline {
namespace {

using Clock = std::chrono::steady_clock;
using repo::BlobRef;
using repo::SnapEntry;
using repo::SnapKind;

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

// This rank's pack names, by first use; BlobRef::pack indexes it until rank 0 remaps.
class PackTable {
 public:
  uint32_t index(const std::string& name) {
    std::lock_guard lock(mu_);
    auto [it, fresh] = index_.try_emplace(name, static_cast<uint32_t>(names_.size()));
    if (fresh) names_.push_back(name);
    return it->second;
  }
  std::vector<std::string> names() const {
    std::lock_guard lock(mu_);
    return names_;
  }

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, uint32_t> index_;
  std::vector<std::string> names_;
};

struct FileWork {
  std::vector<BlobRef> chunks;     // by chunk number; raw_bytes 0 = hole
  const SnapEntry* old = nullptr;  // the parent's entry, for chunk reuse
};

// One rank's share of a backup, phase by phase.
class BackupRun {
 public:
  // `parent`: the parent snapshot when this rank has read it already (rank 0, in decide).
  BackupRun(const BackupOptions& opts, transport::Comm& comm, const repo::Repository& repo,
            const Decision& d, std::optional<repo::Snapshot> parent)
      : opts_(opts), comm_(comm), repo_(repo), decision_(d), parent_(std::move(parent)) {}

  void execute(BackupResult& out) {
    RunResult& result = out.run;
    auto t0 = Clock::now();
    const unsigned threads = engine_threads(opts_.threads, comm_.size());
    // More threads than cores: reads block in the kernel while others compress.
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    raise_fd_limit();
    if (!load_parent(result)) return;

    walk(threads);
    result.walk_seconds = since(t0);
    prepare();
    auto tb = Clock::now();
    transfer(threads);
    double busy = since(tb);
    if (auto st = packs_->finish(); !st) ctx_fatal(st.error().message);
    bool all_ok = comm_.agree(fatal_.empty());

    // merge on rank 0; the snapshot appears only if every rank's packs are durable
    std::string mine = serialize_local();
    std::vector<std::string> blobs = comm_.gather(mine, 0);
    RankStats me;
    me.bytes = bytes_read_.load();
    me.files = files_read_.load();
    me.busy_seconds = busy;
    me.walk_seconds = result.walk_seconds;
    me.bytes_stored = packs_->bytes_written();
    uint64_t stored_new = 0;
    for (const RankStats& k : reduce_rank_stats(comm_, me, result, comm_.size() > 1))
      stored_new += k.bytes_stored;
    std::vector<std::string> errs = errors_.take();
    for (auto& e : walk_errors_.take()) errs.push_back(std::move(e));
    std::vector<std::string> all_errors;
    for (const std::string& b : comm_.gather(encode_strings(errs), 0)) {
      for (auto& e : decode_strings(b)) all_errors.push_back(std::move(e));
    }
    std::string fatal_any;
    for (const std::string& f : comm_.gather(fatal_, 0))
      if (fatal_any.empty() && !f.empty()) fatal_any = f;
    uint64_t signalled = stop_signal().load() != 0 ? 1 : 0;
    comm_.allreduce_max(std::span<uint64_t>(&signalled, 1));

    if (comm_.rank() == 0) {
      result.errors = std::move(all_errors);
      result.fatal = fatal_any;
      out.bytes_read = result.bytes_transferred;
      if (all_ok) save(out, blobs, stored_new);
    }
    discard_if_unsaved(out);
    if (comm_.rank() == 0) {
      result.seconds = since(t0);
      result.resumable = signalled != 0;
      result.exit_code =
          exit_code_for(signalled != 0, !result.fatal.empty(), !result.errors.empty());
    }
    result.exit_code = agree_exit_code(comm_, result.exit_code);
  }

 private:
  // The parent snapshot: rank 0 read it in decide, the others read it now (it is on the
  // repository's shared file system). Agreed; false ends the run.
  bool load_parent(RunResult& result) {
    if (decision_.parent.empty()) return true;
    std::string error;
    if (!parent_) {
      auto p = repo_.load_snapshot(decision_.parent);
      if (p)
        parent_ = std::move(p.value());
      else
        error = p.error().message;
    }
    if (!comm_.agree(error.empty())) {
      result.fatal =
          error.empty() ? "a rank could not read the parent snapshot " + decision_.parent : error;
      result.exit_code = kExitFatal;
      return false;
    }
    parent_index_.reserve(parent_->entries.size());
    for (uint32_t i = 0; i < parent_->entries.size(); ++i)
      parent_index_.emplace(parent_->entries[i].path, i);
    return true;
  }

  // Rank 0, every rank's packs durable: the merged snapshot saved (renamed into place).
  void save(BackupResult& out, const std::vector<std::string>& blobs, uint64_t stored_new) {
    RunResult& result = out.run;
    repo::Snapshot snap = merge(blobs, stored_new);
    snap.unreadable = result.errors.size();
    out.snapshot = snap;
    out.snapshot.entries.clear();
    result.files = snap.files;
    result.bytes = snap.bytes_raw;
    for (const SnapEntry& e : snap.entries) result.count_kind(e.meta.type);
    if (auto st = repo_.save_snapshot(snap); !st) {
      result.fatal = st.error().message;
      // A failure after the rename (syncing the directory) leaves the snapshot in place:
      // its packs must stay.
      if (!repo_.snapshot_exists(snap.id)) out.snapshot.id.clear();
    }
  }

  // No snapshot: every rank removes the packs it wrote, so that they neither fill the
  // repository nor make the next run fail for want of the space they hold. Collective.
  void discard_if_unsaved(BackupResult& out) {
    uint64_t written = comm_.rank() == 0 && !out.snapshot.id.empty() ? 1 : 0;
    comm_.allreduce_max(std::span<uint64_t>(&written, 1));
    if (written) return;
    repo::PackWriter::Discarded d = packs_->discard();
    uint64_t sums[3] = {d.packs, d.bytes, d.failed};
    comm_.allreduce_sum(sums);
    if (comm_.rank() != 0) return;
    std::string what = "no snapshot written";
    if (sums[0] != 0)
      what += "; the " + std::to_string(sums[0]) + " packs (" +
              Progress::human_bytes(static_cast<double>(sums[1])) + ") this run wrote were removed";
    if (sums[2] != 0) {
      // The next backup removes them (REPO/sweep), or forget does.
      auto st = repo::mark_sweep(repo_.path());
      what +=
          "; " + std::to_string(sums[2]) + " could not be removed (" +
          (st ? std::string("the next backup will") : st.error().message + "; run barge forget") +
          ")";
    }
    std::string& fatal = out.run.fatal;
    if (!fatal.empty()) fatal += " (" + what + ")";
  }

  void ctx_fatal(const std::string& why) {
    std::lock_guard lock(mu_);
    if (fatal_.empty()) fatal_ = why;
    stop_ = true;
  }

  static std::string encode_strings(const std::vector<std::string>& v) {
    WireWriter w;
    for (const std::string& s : v) w.str(s);
    return w.take();
  }
  static std::vector<std::string> decode_strings(const std::string& b) {
    std::vector<std::string> out;
    WireReader r(b);
    while (!r.done()) out.push_back(r.str());
    return out;
  }

  void walk(unsigned threads) {
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
  void prepare() {
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

  uint64_t chunk_bytes() const { return repo_.config().chunk_bytes; }
  uint64_t buffer_bytes() const { return (chunk_bytes() + 4095) / 4096 * 4096; }

  BlobRef remap(const BlobRef& c) {
    BlobRef r = c;
    r.pack = pack_table_.index(parent_->packs[c.pack]);
    return r;
  }

  // read: each extent of the unit, checked to be the file the walk saw, in one batch through
  // the ring. A file that changed is named and left out of the snapshot.
  void read_unit(WorkUnit& u, io::IoBackend& backend) {
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
  void dedupe_unit(WorkUnit& u) {
    for (Item& it : u.items) {
      if (it.failed) continue;
      const Extent& x = it.ext;
      FileWork& w = work_[x.file];
      it.stored.present = true;
      if (w.old) {
        for (const BlobRef& c : w.old->chunks) {
          if (c.file_offset == x.offset_bytes && c.raw_bytes == x.length_bytes &&
              c.hash == it.hash) {
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
  void record_unit(WorkUnit& u) {
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
  void transfer(unsigned threads) {
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
      emit(u);
    };
    a.on_throw = [&](WorkUnit& u, const std::string& why) {
      ctx_fatal(why);
      for (Item& it : u.items) it.failed = true;
    };
    run_graph(a, pool, stats_, threads);
    progress.stop();
    result_backend_ = backends.name();
  }

  bool failed(uint32_t f) const { return dropped_[f].load(std::memory_order_relaxed) != 0; }
  void fail_file(uint32_t f, const std::string& why) {
    if (dropped_[f].exchange(1) == 0) errors_.add(why);
  }

  // Entries this rank keeps (not dropped), with pack indices into its pack table.
  std::string serialize_local() {
    RankEntriesWriter w(pack_table_.names());
    // A local leader that failed takes its local followers with it.
    std::map<std::pair<uint64_t, uint64_t>, bool> leader_failed;
    for (uint32_t f : plan_.files) {
      const io::FileMeta& m = plan_.entries[f].meta;
      if (m.nlink > 1 && !follower_[f] && failed(f)) leader_failed[{m.device, m.inode}] = true;
    }
    for (uint32_t i = 0; i < entries_.size(); ++i) {
      SnapEntry& s = entries_[i];
      if (failed(i)) continue;
      if (follower_[i] && leader_failed.count({s.meta.device, s.meta.inode})) {
        errors_.add(plan_.src_path(plan_.entries[i]) +
                    ": not in this snapshot (its hard-linked "
                    "twin could not be read)");
        continue;
      }
      if (include_[i]) {
        for (const BlobRef& c : work_[i].chunks)
          if (c.raw_bytes != 0) s.chunks.push_back(c);
      }
      w.add(s, follower_[i] != 0);
    }
    return w.take();
  }

  // Rank 0: every rank's entries (and pack names, renumbered) in one snapshot, sorted by
  // path, hard links across ranks resolved, totals counted.
  repo::Snapshot merge(const std::vector<std::string>& blobs, uint64_t stored_new) const {
    repo::Snapshot snap = merge_rank_entries(snapshot_header(), blobs);
    snap.bytes_stored_new = stored_new;
    return snap;
  }

  repo::Snapshot snapshot_header() const {
    repo::Snapshot snap;
    int64_t now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
    snap.id = repo::new_snapshot_id(now);
    snap.kind = decision_.kind;
    snap.parent = decision_.parent;
    snap.base_full = decision_.kind == SnapKind::kFull ? snap.id : decision_.base_full;
    snap.time_ns = now;
    snap.host = io::host_name();
    char* abs = ::realpath(opts_.source.c_str(), nullptr);
    snap.source = abs ? abs : opts_.source;
    std::free(abs);
    snap.tag = opts_.tag;
    snap.level = static_cast<uint32_t>(opts_.level);
    return snap;
  }

  const BackupOptions& opts_;
  transport::Comm& comm_;
  const repo::Repository& repo_;
  Decision decision_;
  std::optional<repo::Snapshot> parent_;
  std::unordered_map<std::string, uint32_t> parent_index_;
  Plan plan_;
  ErrorList walk_errors_, errors_;
  std::vector<SnapEntry> entries_;
  std::vector<FileWork> work_;
  std::vector<uint8_t> include_, follower_;
  std::vector<std::atomic<uint8_t>> dropped_;
  PackTable pack_table_;
  std::optional<repo::PackWriter> packs_;
  LiveStats stats_;
  std::atomic<uint64_t> bytes_read_{0}, files_read_{0};
  std::mutex mu_;
  std::string fatal_;
  std::atomic<bool> stop_{false};
  std::string result_backend_;
};

}  // namespace

BackupResult run_backup(const BackupOptions& opts, transport::Comm& comm) {
  BackupResult out;
  RunResult& result = out.run;
  const bool rank0 = comm.rank() == 0;
  auto fail_all = [&](const std::string& why) {
    result.fatal = why;
    result.exit_code = kExitFatal;
    return out;
  };
  // Same options on every rank (checked by main), so the same verdict: nothing is created.
  if (auto st = validate(opts); !st) return fail_all(st.error().message);

  // Source and repository: rank 0 checks where they are, opens (or creates) and locks; all
  // agree before going on.
  std::string setup_error;
  {
    struct stat st;
    if (::stat(opts.source.c_str(), &st) != 0)
      setup_error = io::Error::from_errno(errno, "source " + opts.source).message;
    else if (!S_ISDIR(st.st_mode))
      setup_error = "source " + opts.source + ": not a directory";
  }
  std::optional<repo::Repository> repository;
  std::optional<repo::Snapshot> parent;
  repo::RepoLock lock;
  Decision decision;
  if (rank0 && setup_error.empty()) {
    if (auto st = check_backup_paths(opts); !st) setup_error = st.error().message;
  }
  if (rank0 && setup_error.empty())
    setup_error = open_and_decide(opts, repository, lock, decision, parent);
  // Every rank's verdict (rank 0's: repository, lock, decision; each rank's: its view of
  // SRC), the same on all: the first failure, naming its rank, fails them all.
  {
    std::vector<std::string> verdicts = comm.allgather(setup_error);
    for (size_t r = 0; r < verdicts.size(); ++r) {
      if (verdicts[r].empty()) continue;
      return fail_all(r == 0 ? verdicts[r] : "rank " + std::to_string(r) + ": " + verdicts[r]);
    }
  }
  if (!rank0) {
    auto r = repo::Repository::open(opts.repo, false);
    if (!comm.agree(static_cast<bool>(r)))
      return fail_all(r ? "a rank could not open the repository" : r.error().message);
    repository = std::move(r.value());
  } else {
    (void)comm.agree(true);
  }
  broadcast_decision(comm, decision);
  result.started = true;
  // Warnings, not info: a backup other than the one asked for is said even with -q.
  if (rank0)
    for (const std::string& note : decision.notes) io::log_warn(note);
  BackupRun run(opts, comm, *repository, decision, std::move(parent));
  try {
    run.execute(out);
  } catch (...) {
    // Whatever packs this run wrote are referenced by no snapshot: the next backup removes
    // them (REPO/sweep), as after a killed run. Then the failure goes on to main.
    if (auto st = repo::mark_sweep(repository->path()); !st) io::log_warn(st.error().message);
    throw;
  }
  return out;
}

}  // namespace barge::pipeline
