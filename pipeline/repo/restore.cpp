// barge restore: rebuild a snapshot's tree under DST. Rank 0 makes the directories; files
// are shared out over ranks by bytes and restored on all cores (chunks of a large file in
// parallel), each written as an unnamed inode, every chunk's XXH3-128 checked after
// decompression and before it is written, and linked into place only when complete; then
// symlinks, special files and hard links; directory metadata last, deepest first.
//
// Nothing is written outside DST whatever the manifest says: paths are checked when the
// manifest is decoded, and every parent directory is opened beneath DST with openat2
// (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS), so a symlink in DST or in the snapshot cannot
// redirect a write.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

#include "io/metadata.hpp"
#include "io/path_ops.hpp"
#include "io/unique_fd.hpp"
#include "io/xattr.hpp"
#include "pipeline/core/plan.hpp"
#include "pipeline/core/rank_stats.hpp"
#include "pipeline/core/wire.hpp"
#include "pipeline/engine/codec_stages.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/engine/graph.hpp"
#include "pipeline/repo/backup.hpp"
#include "pipeline/repo/repository.hpp"

namespace barge::pipeline {
namespace {

using Clock = std::chrono::steady_clock;
using repo::SnapEntry;

std::string parent_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}
std::string name_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

// Opens directory `rel` beneath `root_fd` without following any symlink on the way.
int open_beneath(int root_fd, const std::string& rel) {
  if (rel.empty()) return ::fcntl(root_fd, F_DUPFD_CLOEXEC, 0);
  open_how how{};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, root_fd, rel.c_str(), &how, sizeof how));
}

// The last parent directory opened, per thread (entries arrive sorted by path).
class ParentCache {
 public:
  explicit ParentCache(int root_fd) : root_fd_(root_fd) {}
  int get(const std::string& rel) {
    if (fd_.valid() && rel == rel_) return fd_.get();
    fd_.reset(open_beneath(root_fd_, rel));
    rel_ = fd_.valid() ? rel : std::string("\x01");
    new_gid_ = ::getegid();
    struct stat st {};
    // A new file takes the group of a setgid directory (unknown: assume it differs).
    if (fd_.valid() && (::fstat(fd_.get(), &st) != 0 || (st.st_mode & S_ISGID)))
      new_gid_ = st.st_mode & S_ISGID ? st.st_gid : static_cast<gid_t>(-1);
    return fd_.get();
  }
  // The group a file created now in the last directory returned by get() is given.
  gid_t new_gid() const { return new_gid_; }

 private:
  int root_fd_;
  std::string rel_;
  io::UniqueFd fd_;
  gid_t new_gid_ = static_cast<gid_t>(-1);
};

// Pack files opened once, shared by all threads (pread is thread-safe).
class PackFds {
 public:
  PackFds(const repo::Repository& r, const std::vector<std::string>& packs)
      : repo_(r), packs_(packs), fds_(packs.size()) {}
  int get(uint32_t pack, std::string* error) {
    std::lock_guard lock(mu_);
    auto& slot = fds_[pack];
    if (!slot.valid()) {
      std::string path = repo_.pack_path(packs_[pack]);
      slot.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!slot.valid()) {
        *error = io::Error::from_errno(errno, "open " + path).message;
        return -1;
      }
      std::byte header[repo::kPackHeaderBytes];
      if (::pread(slot.get(), header, sizeof header, 0) != static_cast<ssize_t>(sizeof header)) {
        *error = path + ": pack truncated";
        slot.reset();
        return -1;
      }
      if (auto st = repo::check_pack_header(header, packs_[pack]); !st) {
        *error = path + ": " + st.error().message;
        slot.reset();
        return -1;
      }
    }
    return slot.get();
  }

 private:
  const repo::Repository& repo_;
  const std::vector<std::string>& packs_;
  std::mutex mu_;
  std::vector<io::UniqueFd> fds_;
};

// The byte ranges of a chunk to write: all of it, or for a sparse file its non-zero 4 KiB
// blocks, neighbours merged.
std::vector<std::pair<size_t, size_t>> write_ranges(std::span<const std::byte> raw, bool sparse) {
  if (!sparse) return {{0, raw.size()}};
  constexpr size_t kBlock = 4096;
  std::vector<std::pair<size_t, size_t>> out;
  for (size_t b = 0; b < raw.size(); b += kBlock) {
    size_t e = std::min(raw.size(), b + kBlock);
    bool zero = std::all_of(raw.begin() + static_cast<long>(b), raw.begin() + static_cast<long>(e),
                            [](std::byte x) { return x == std::byte{0}; });
    if (zero) continue;
    if (!out.empty() && out.back().second == b)
      out.back().second = e;
    else
      out.emplace_back(b, e);
  }
  return out;
}

// DST as given, trailing slashes removed; follow: named "DST/", so a symlink there is
// followed to the directory it points to.
struct Destination {
  std::string path;
  bool follow = false;
};
Destination destination_of(const std::string& given) {
  Destination d{given, false};
  while (d.path.size() > 1 && d.path.back() == '/') {
    d.path.pop_back();
    d.follow = true;
  }
  return d;
}

// --path, normalized: no leading or trailing slashes.
std::vector<std::string> wanted_paths(const std::vector<std::string>& given) {
  std::vector<std::string> wanted;
  for (std::string p : given) {
    while (!p.empty() && p.back() == '/') p.pop_back();
    while (!p.empty() && p.front() == '/') p.erase(0, 1);
    wanted.push_back(p);
  }
  return wanted;
}

bool selected_by(const std::string& path, const std::vector<std::string>& wanted) {
  if (wanted.empty()) return true;
  for (const std::string& w : wanted) {
    if (path == w) return true;
    if (path.size() > w.size() && path.compare(0, w.size(), w) == 0 && path[w.size()] == '/')
      return true;  // below w
    if (w.size() > path.size() &&
        (path.empty() || (w.compare(0, path.size(), path) == 0 && w[path.size()] == '/')))
      return true;  // an ancestor directory of w
  }
  return false;
}

class RestoreRun {
 public:
  RestoreRun(const RestoreOptions& opts, transport::Comm& comm, const repo::Repository& r,
             const repo::Snapshot& s)
      : opts_(opts), comm_(comm), repo_(r), snap_(s), packs_(r, s.packs) {}

  // select → hard links → destination → directories → share → transfer → rank 0's
  // specials, links and directory metadata → report; the collective steps in this order
  // on every rank.
  void execute(RunResult& result) {
    auto t0 = Clock::now();
    unsigned threads = opts_.threads      ? opts_.threads
                       : comm_.size() > 1 ? default_threads_per_rank()
                                          : default_threads();
    // More threads than cores: reads block in the kernel while others compress.
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    raise_fd_limit();
    apply_owner_ = io::can_chown();
    if (!select(result)) return;
    hard_links();
    if (!open_destination(result)) return;
    result.started = true;
    // Files are created with their final permission bits; the caller's umask comes back
    // when execute returns, however it returns.
    io::ScopedUmask umask0(0);
    if (comm_.rank() == 0) make_directories();
    comm_.barrier();
    const std::vector<uint32_t> mine = share();
    auto tb = Clock::now();
    {
      std::unique_ptr<transport::AsyncSum> across = comm_.make_async_sum();
      Progress::Across share{across.get(), comm_.size(), {}, {}};
      Progress progress(stats_, comm_.rank() == 0 ? opts_.progress : ProgressMode::kNone, "restore",
                        opts_.progress_interval_s, std::move(share));
      transfer(mine, threads, result);
    }
    const double busy = since(tb);
    comm_.barrier();
    if (comm_.rank() == 0) {
      ParentCache parents(root_.get());
      links_and_specials(parents);
      directory_metadata(parents);
    }
    report(result, busy, t0);
  }

 private:
  // The entries --path selects (all without it); a --path not in the snapshot ends the run.
  bool select(RunResult& result) {
    const std::vector<std::string> wanted = wanted_paths(opts_.paths);
    for (uint32_t i = 0; i < snap_.entries.size(); ++i)
      if (selected_by(snap_.entries[i].path, wanted)) chosen_.push_back(i);
    for (const std::string& w : wanted) {
      bool found = false;
      for (uint32_t i : chosen_) found = found || snap_.entries[i].path == w;
      if (!found) {
        result.fatal = "--path " + w + ": not in snapshot " + snap_.id;
        result.exit_code = kExitFatal;
        return false;
      }
    }
    return true;
  }

  // Hard links: a member whose data holder is not restored (--path) holds the data itself,
  // and the group's other chosen members link to it.
  void hard_links() {
    link_of_.assign(snap_.entries.size(), repo::kNoLink);
    data_of_.resize(snap_.entries.size());
    for (uint32_t i = 0; i < data_of_.size(); ++i) data_of_[i] = i;
    std::unordered_set<uint32_t> chosen_set(chosen_.begin(), chosen_.end());
    std::unordered_map<uint32_t, uint32_t> stand_in;
    for (uint32_t i : chosen_) {
      uint32_t leader = snap_.entries[i].link_to;
      if (leader == repo::kNoLink) continue;
      if (chosen_set.count(leader)) {
        link_of_[i] = leader;
        continue;
      }
      auto [it, fresh] = stand_in.try_emplace(leader, i);
      if (fresh)
        data_of_[i] = leader;
      else
        link_of_[i] = it->second;
    }
  }

  // DST made by rank 0 and opened by every rank (agreed). A symlink is followed only when
  // named "DST/" (checked in run_restore; O_NOFOLLOW keeps it so should DST be swapped for a
  // symlink meanwhile).
  bool open_destination(RunResult& result) {
    const Destination where = destination_of(opts_.destination);
    if (comm_.rank() == 0 && ::mkdir(where.path.c_str(), 0700) != 0 && errno != EEXIST)
      fatal_ = io::Error::from_errno(errno, "create destination " + opts_.destination).message;
    comm_.barrier();
    const std::string root_path = where.follow ? where.path + "/" : where.path;
    root_.reset(::open(root_path.c_str(),
                       O_RDONLY | O_DIRECTORY | O_CLOEXEC | (where.follow ? 0 : O_NOFOLLOW)));
    if (!root_.valid() && fatal_.empty())
      fatal_ = io::Error::from_errno(errno, "open destination " + opts_.destination).message;
    if (comm_.agree(fatal_.empty())) return true;
    result.fatal = fatal_.empty() ? "destination not usable on every rank" : fatal_;
    result.exit_code = kExitFatal;
    return false;
  }

  // Rank 0: the directories, parents first (owner-only until their metadata at the end).
  void make_directories() {
    ParentCache parents(root_.get());
    for (uint32_t i : chosen_) {
      const SnapEntry& e = snap_.entries[i];
      if (e.meta.type != io::FileType::kDirectory || e.path.empty()) continue;
      int pfd = parents.get(parent_of(e.path));
      if (pfd < 0) {
        fail(i, io::Error::from_errno(errno, "open parent of " + dst(e)).message);
        continue;
      }
      std::string name = name_of(e.path);
      if (::mkdirat(pfd, name.c_str(), 0700) != 0) {
        struct stat st;
        if (errno != EEXIST)
          fail(i, io::Error::from_errno(errno, "create directory " + dst(e)).message);
        else if (::fstatat(pfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0 ||
                 !S_ISDIR(st.st_mode))
          fail(i, dst(e) + ": exists and is not a directory (left as it is)");
      }
    }
  }

  // This rank's files with data: shared out by bytes, the same way on every rank.
  std::vector<uint32_t> share() {
    std::vector<uint32_t> mine;
    std::vector<uint64_t> load(static_cast<size_t>(comm_.size()), 0);
    for (uint32_t i : chosen_) {
      const SnapEntry& e = snap_.entries[i];
      if (e.meta.type != io::FileType::kRegular || link_of_[i] != repo::kNoLink) continue;
      size_t r = static_cast<size_t>(std::min_element(load.begin(), load.end()) - load.begin());
      load[r] += e.meta.size_bytes + 4096;
      if (static_cast<int>(r) == comm_.rank()) {
        mine.push_back(i);
        stats_.bytes_total += e.meta.size_bytes;
        stats_.files_total += 1;
      }
    }
    return mine;
  }

  // Rank 0, once every rank's files are in place: hard links, symlinks, special files.
  void links_and_specials(ParentCache& parents) {
    for (uint32_t i : chosen_) {
      const SnapEntry& e = snap_.entries[i];
      if (e.meta.type == io::FileType::kRegular && link_of_[i] != repo::kNoLink) {
        link_follower(i, parents);
      } else if (e.meta.type != io::FileType::kRegular && e.meta.type != io::FileType::kDirectory) {
        create_special(i, parents);
      }
    }
  }

  // Rank 0: directory xattrs and metadata, deepest first.
  void directory_metadata(ParentCache& parents) {
    for (auto it = chosen_.rbegin(); it != chosen_.rend(); ++it) {
      const SnapEntry& e = snap_.entries[*it];
      if (e.meta.type != io::FileType::kDirectory || failed_.count(*it)) continue;
      int pfd = e.path.empty() ? root_.get() : parents.get(parent_of(e.path));
      io::UniqueFd dfd(pfd < 0 ? -1
                       : e.path.empty()
                           ? ::fcntl(root_.get(), F_DUPFD_CLOEXEC, 0)
                           : ::openat(pfd, name_of(e.path).c_str(),
                                      O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!dfd.valid()) {
        fail(*it, io::Error::from_errno(errno, "open directory " + dst(e)).message);
        continue;
      }
      if (opts_.xattrs && !e.xattrs.empty()) {
        if (auto st = io::write_xattrs(e.xattrs, dfd.get(), dst(e)); !st)
          fail(*it, st.error().message);
      }
      if (auto st = io::apply_meta_fd(dfd.get(), e.meta, apply_owner_, dst(e)); !st)
        fail(*it, st.error().message);
    }
  }

  // Per-rank statistics reduced once, errors gathered on rank 0, the exit code agreed.
  void report(RunResult& result, double busy, Clock::time_point t0) {
    RankStats me;
    me.bytes = me.bytes_committed = stats_.bytes_done.load();
    me.files = stats_.files_done.load();
    me.busy_seconds = busy;
    reduce_rank_stats(comm_, me, result, comm_.size() > 1);
    WireWriter ew;
    for (const std::string& e : errors_.take()) ew.str(e);
    std::vector<std::string> all_errors = comm_.gather(ew.take(), 0);
    uint64_t signalled = stop_signal().load() != 0 ? 1 : 0;
    comm_.allreduce_max(std::span<uint64_t>(&signalled, 1));
    if (comm_.rank() == 0) {
      for (const std::string& b : all_errors) {
        WireReader r(b);
        while (!r.done()) result.errors.push_back(r.str());
      }
      for (uint32_t i : chosen_) result.count_kind(snap_.entries[i].meta.type);
      result.files += links_made_;
      result.seconds = since(t0);
      result.resumable = false;
      result.exit_code =
          exit_code_for(signalled != 0, !result.fatal.empty(), !result.errors.empty());
    }
    result.exit_code = agree_exit_code(comm_, result.exit_code);
  }

  std::string dst(const SnapEntry& e) const {
    const std::string root = destination_of(opts_.destination).path;
    return e.path.empty() ? root : io::join_path(root, e.path);
  }
  void fail(uint32_t i, std::string why) {
    {
      std::lock_guard lock(mu_);
      failed_.insert(i);
    }
    errors_.add(std::move(why));
  }

  // One file being restored: its unnamed inode, open from its first chunk's write until its
  // last chunk is committed.
  struct OpenFile {
    std::mutex mu;
    io::UniqueFd fd;
    bool tried = false;
    bool chown = true;  // ownership differs from what the new inode got
    std::atomic<uint32_t> left{0};
    std::atomic<bool> failed{false};
  };

  // restore = pack-fetch → decompress+check → write → commit, over the chunks of `mine`'s
  // files (Extent::file is the position in `mine`), small files batched into one unit.
  void transfer(const std::vector<uint32_t>& mine, unsigned threads, RunResult& result) {
    mine_ = &mine;
    open_ = std::make_unique<OpenFile[]>(mine.size());
    uint64_t max_raw = 0, max_stored = 0, units = 1;
    for (size_t k = 0; k < mine.size(); ++k) {
      const auto& chunks = chunks_of(k);
      open_[k].left.store(std::max<uint32_t>(1, static_cast<uint32_t>(chunks.size())));
      units += std::max<size_t>(1, chunks.size());
      for (const repo::BlobRef& c : chunks) {
        max_raw = std::max<uint64_t>(max_raw, c.raw_bytes);
        max_stored = std::max<uint64_t>(max_stored, c.stored_bytes);
      }
    }
    const repo::BlobPool size =
        repo::blob_pool(max_raw, max_stored, opts_.memory_bytes, units, threads);
    const uint64_t buffer_bytes = size.buffer_bytes;
    io::BufferPool pool(size.buffer_bytes, size.count);
    BackendSet backends(io::BackendOptions{opts_.backend, opts_.queue_depth, &pool});
    const BackendSource backend = backends.source();
    auto fail_item = [this](Item& it, const io::Error& e) {
      it.failed = true;
      const repo::BlobRef& ref = chunks_of(it.ext.file)[it.ext.chunk];
      fail_file(it.ext.file, dst(entry_of(it.ext.file)) + ": not restored: chunk at offset " +
                                 std::to_string(ref.file_offset) + " in pack " +
                                 snap_.packs[ref.pack] + ": " + e.message);
    };
    repo::PackFetchStage fetch(
        [this](uint32_t pack, std::string* err) { return packs_.get(pack, err); }, backend,
        fail_item);
    DecompressCheckStage check(
        [&](Item& it, const std::string& why) { fail_item(it, io::Error::plain(why)); });
    size_t next_file = 0, next_chunk = 0;
    Assembly a;
    a.buffers_per_unit = 2;
    a.next = [&](WorkUnit& u) { return cut(u, buffer_bytes, next_file, next_chunk); };
    a.stopping = [] { return stop_signal().load() != 0; };
    a.stages = {{kStagePackFetch, StageKind::kIo, [&](WorkUnit& u) { fetch(u); }},
                {kStageDecompress, StageKind::kCpu, [&](WorkUnit& u) { check(u); }},
                {kStageWrite, StageKind::kIo, [&](WorkUnit& u) { write_unit(u, backend()); }}};
    a.last = [&](WorkUnit* u, const Emit& emit) {
      commit_unit(*u);
      emit(u);
    };
    a.on_throw = [&](WorkUnit& u, const std::string& why) {
      for (Item& it : u.items) fail_item(it, io::Error::plain(why));
    };
    run_graph(a, pool, stats_, threads);
    // Files a stop left unfinished: their unnamed inodes go away with their descriptors.
    open_.reset();
    result.io_backend = backends.name();
    result.buffers_registered = backends.registered();
  }

  const SnapEntry& entry_of(uint32_t k) const { return snap_.entries[(*mine_)[k]]; }
  const std::vector<repo::BlobRef>& chunks_of(uint32_t k) const {
    return snap_.entries[data_of_[(*mine_)[k]]].chunks;
  }
  void fail_file(uint32_t k, std::string why) {
    if (!open_[k].failed.exchange(true)) fail((*mine_)[k], std::move(why));
  }

  // Fills `u` with the next chunks: as many as fit one buffer (and their stored forms the
  // aux buffer), at most max_files_per_unit; a file without data gets one empty item.
  bool cut(WorkUnit& u, uint64_t cap, size_t& k, size_t& c) const {
    repo::BlobUnitFill fill(u, cap, opts_.max_files_per_unit);
    while (k < mine_->size() && !fill.full()) {
      const auto& chunks = chunks_of(static_cast<uint32_t>(k));
      Item it;
      if (!chunks.empty()) {
        const repo::BlobRef& ref = chunks[c];
        it = repo::blob_item(ref, ref.pack);
        it.ext.chunk = static_cast<uint32_t>(c);
        it.ext.chunk_count = static_cast<uint32_t>(chunks.size());
        it.ext.offset_bytes = ref.file_offset;
      }
      it.ext.file = static_cast<uint32_t>(k);
      if (!fill.add(std::move(it))) break;
      if (chunks.empty() || ++c == chunks.size()) {
        c = 0;
        ++k;
      }
    }
    return !u.items.empty();
  }

  // Opens file k's unnamed inode beneath its parent on first use; -1 once it failed.
  int open_file(uint32_t k, ParentCache& parents) {
    OpenFile& f = open_[k];
    std::lock_guard lock(f.mu);
    if (!f.tried) {
      f.tried = true;
      const SnapEntry& e = entry_of(k);
      int pfd = parents.get(parent_of(e.path));
      if (pfd < 0) {
        fail_file(k, io::Error::from_errno(errno, "open parent of " + dst(e)).message);
        return -1;
      }
      // Created with its final permission bits (the umask is 0 here); the commit sets the
      // mode again, as a default ACL may have masked them.
      f.fd.reset(::openat(pfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, e.meta.mode & 0777));
      f.chown = apply_owner_ && (e.meta.uid != ::geteuid() || e.meta.gid != parents.new_gid());
      if (!f.fd.valid()) {
        fail_file(k, io::Error::from_errno(errno, "create " + dst(e)).message);
      } else if (io::is_sparse(e.meta) &&  // otherwise the writes give the file its length
                 ::ftruncate(f.fd.get(), static_cast<off_t>(e.meta.size_bytes)) != 0) {
        fail_file(k, io::Error::from_errno(errno, "write " + dst(e)).message);
        f.fd.reset();
      }
    }
    return f.failed.load() ? -1 : f.fd.get();
  }

  // write: every checked chunk into its file's unnamed inode, one batch through the ring. A
  // sparse file stays sparse: its zero blocks are left as holes (the inode was sized with
  // ftruncate, so they read back as zeros).
  void write_unit(WorkUnit& u, io::IoBackend& backend) {
    ParentCache parents(root_.get());
    std::vector<io::IoOp> ops;
    std::vector<size_t> op_item;
    for (size_t n = 0; n < u.items.size(); ++n) {
      Item& it = u.items[n];
      if (it.failed) continue;
      int fd = open_file(it.ext.file, parents);
      if (fd < 0) {
        it.failed = true;
        continue;
      }
      std::span<const std::byte> raw = u.bytes(it);
      for (auto [begin, end] : write_ranges(raw, io::is_sparse(entry_of(it.ext.file).meta))) {
        ops.push_back({io::IoKind::kWrite, fd, const_cast<std::byte*>(raw.data()) + begin,
                       end - begin, it.ext.offset_bytes + begin, u.buffer.index()});
        op_item.push_back(n);
      }
    }
    backend.run(ops);
    for (size_t n = 0; n < ops.size(); ++n) {
      Item& it = u.items[op_item[n]];
      if (ops[n].error == 0 && ops[n].done_bytes == ops[n].length_bytes) continue;
      it.failed = true;
      fail_file(it.ext.file, io::Error::from_errno(ops[n].error ? ops[n].error : EIO,
                                                   "write " + dst(entry_of(it.ext.file)))
                                 .message);
    }
    for (const Item& it : u.items)
      if (!it.failed) stats_.bytes_done += it.ext.length_bytes;
  }

  // commit: a file whose last chunk is written gets its xattrs and metadata and is linked
  // into place; a failed one's unnamed inode goes away with its descriptor.
  void commit_unit(WorkUnit& u) {
    ParentCache parents(root_.get());
    for (const Item& it : u.items) {
      OpenFile& f = open_[it.ext.file];
      if (f.left.fetch_sub(1) != 1) continue;
      io::UniqueFd fd = std::move(f.fd);
      if (f.failed.load() || !fd.valid()) continue;
      const uint32_t i = (*mine_)[it.ext.file];
      const SnapEntry& e = snap_.entries[i];
      if (opts_.xattrs && !e.xattrs.empty()) {
        if (auto st = io::write_xattrs(e.xattrs, fd.get(), dst(e)); !st)
          errors_.add(st.error().message);
      }
      if (auto st = io::apply_meta_fd(fd.get(), e.meta, f.chown, dst(e)); !st) {
        fail_file(it.ext.file, st.error().message);
        continue;
      }
      int pfd = parents.get(parent_of(e.path));
      std::string tmp = ".barge-tmp." + name_of(e.path).substr(0, 32) + "." + std::to_string(i);
      if (pfd < 0 || detail::link_into_place(fd.get(), pfd, name_of(e.path), tmp) != 0) {
        fail_file(it.ext.file, io::Error::from_errno(errno, "link into place " + dst(e)).message);
        continue;
      }
      stats_.files_done += 1;
    }
  }

  void link_follower(uint32_t i, ParentCache& parents) {
    const SnapEntry& e = snap_.entries[i];
    const SnapEntry& leader = snap_.entries[link_of_[i]];
    if (failed_.count(link_of_[i])) {
      fail(i, dst(e) + ": not restored (its hard-linked twin " + dst(leader) + " was not)");
      return;
    }
    io::UniqueFd lp(open_beneath(root_.get(), parent_of(leader.path)));
    int pfd = parents.get(parent_of(e.path));
    if (!lp.valid() || pfd < 0) {
      fail(i, io::Error::from_errno(errno, "open parent of " + dst(e)).message);
      return;
    }
    std::string name = name_of(e.path);
    std::string tmp = ".barge-tmp.link." + std::to_string(i);
    ::unlinkat(pfd, tmp.c_str(), 0);  // left by a killed run
    if (::linkat(lp.get(), name_of(leader.path).c_str(), pfd, tmp.c_str(), 0) != 0 ||
        ::renameat(pfd, tmp.c_str(), pfd, name.c_str()) != 0) {
      int err = errno;
      ::unlinkat(pfd, tmp.c_str(), 0);
      fail(i, io::Error::from_errno(err, "link " + dst(e)).message);
      return;
    }
    ++links_made_;
  }

  void create_special(uint32_t i, ParentCache& parents) {
    const SnapEntry& e = snap_.entries[i];
    int pfd = parents.get(parent_of(e.path));
    if (pfd < 0) {
      fail(i, io::Error::from_errno(errno, "open parent of " + dst(e)).message);
      return;
    }
    std::string tmp = ".barge-tmp.special." + std::to_string(i);
    ::unlinkat(pfd, tmp.c_str(), 0);  // left by a killed run
    int rc;
    if (e.meta.type == io::FileType::kSymlink) {
      rc = ::symlinkat(e.link_target.c_str(), pfd, tmp.c_str());
    } else {
      mode_t type = e.meta.type == io::FileType::kFifo          ? S_IFIFO
                    : e.meta.type == io::FileType::kCharDevice  ? S_IFCHR
                    : e.meta.type == io::FileType::kBlockDevice ? S_IFBLK
                                                                : S_IFSOCK;
      rc = ::mknodat(pfd, tmp.c_str(), type | 0600, static_cast<dev_t>(e.meta.rdev));
    }
    io::Status st =
        rc == 0
            ? io::Status::success()
            : io::Status(io::Error::from_errno(
                  errno, std::string("create ") + io::file_type_name(e.meta.type) + " " + dst(e)));
    if (st) st = io::apply_meta_path(pfd, tmp.c_str(), e.meta, apply_owner_);
    if (st && ::renameat(pfd, tmp.c_str(), pfd, name_of(e.path).c_str()) != 0)
      st = io::Error::from_errno(errno, "rename into place " + dst(e));
    if (!st) {
      ::unlinkat(pfd, tmp.c_str(), 0);
      fail(i, st.error().message);
    }
  }

  const RestoreOptions& opts_;
  transport::Comm& comm_;
  const repo::Repository& repo_;
  const repo::Snapshot& snap_;
  PackFds packs_;
  io::UniqueFd root_;
  bool apply_owner_ = false;
  std::string fatal_;
  ErrorList errors_;
  std::mutex mu_;
  std::unordered_set<uint32_t> failed_;
  uint64_t links_made_ = 0;
  std::vector<uint32_t> chosen_;                 // the entries restored, in snapshot order
  const std::vector<uint32_t>* mine_ = nullptr;  // the files this rank restores
  std::unique_ptr<OpenFile[]> open_;             // per file of mine_, during the transfer
  std::vector<uint32_t> link_of_;  // per entry: the entry it is a hard link to, or kNoLink
  std::vector<uint32_t> data_of_;  // per entry: the entry whose chunks hold its bytes
  LiveStats stats_;
};

// Rank 0, before anything is written: DST is not a symlink unless named "DST/", does not lie
// inside the repository, and does not hold the repository where the snapshot writes.
io::Status check_destination(const RestoreOptions& opts, const repo::Repository& r,
                             const repo::Snapshot& snap) {
  const Destination where = destination_of(opts.destination);
  if (where.path.empty()) return io::Error::plain("restore: DST is an empty path");
  struct stat st;
  if (::lstat(where.path.c_str(), &st) == 0 && S_ISLNK(st.st_mode) && !where.follow) {
    char target[4096];
    ssize_t n = ::readlink(where.path.c_str(), target, sizeof target - 1);
    target[n < 0 ? 0 : n] = '\0';
    return io::Error::plain("destination " + where.path + " is a symlink (to " + target +
                            "): name it " + where.path +
                            "/ to restore into the directory it points to");
  }
  const std::string dst = canonical_or_parent(where.path);  // resolves a DST/ symlink too
  const std::string repo = canonical_or_parent(r.path());
  if (is_inside(dst, repo))
    return io::Error::plain("destination " + opts.destination + " lies inside the repository " +
                            opts.repo + " (refusing to restore into it)");
  if (is_inside(repo, dst)) {
    // REPO below DST: refused only where this restore would write, at or below REPO.
    const std::string rel = repo.substr(dst == "/" ? 1 : dst.size() + 1);
    const std::vector<std::string> wanted = wanted_paths(opts.paths);
    for (const SnapEntry& e : snap.entries) {
      bool at_or_below =
          e.path == rel || (e.path.size() > rel.size() && e.path.compare(0, rel.size(), rel) == 0 &&
                            e.path[rel.size()] == '/');
      if (at_or_below && selected_by(e.path, wanted))
        return io::Error::plain("destination " + opts.destination + " holds the repository " +
                                opts.repo + " at " + rel + ", where snapshot " + snap.id +
                                " would write (restore elsewhere)");
    }
  }
  return io::Status::success();
}

}  // namespace

RestoreResult run_restore(const RestoreOptions& opts, transport::Comm& comm) {
  RestoreResult out;
  std::string error, id;
  std::optional<repo::Repository> r;
  auto opened = repo::Repository::open(opts.repo, false);
  if (!opened) {
    error = opened.error().message;
  } else {
    r = std::move(opened.value());
    if (comm.rank() == 0) {
      auto which = r->resolve(opts.snapshot);
      if (which)
        id = *which;
      else
        error = which.error().message;
    }
  }
  id = comm.broadcast(id, 0);
  if (!comm.agree(error.empty() && !id.empty())) {
    out.run.fatal = error.empty() ? "repository not readable on every rank" : error;
    out.run.exit_code = kExitFatal;
    return out;
  }
  auto snap = r->load_snapshot(id);
  if (!comm.agree(static_cast<bool>(snap))) {
    out.run.fatal = snap ? "snapshot not readable on every rank"
                         : snap.error().message +
                               " (restore another one with --snapshot; barge snapshots lists them)";
    out.run.exit_code = kExitFatal;
    return out;
  }
  std::string where_error;
  if (comm.rank() == 0) {
    if (auto st = check_destination(opts, *r, *snap); !st) where_error = st.error().message;
  }
  where_error = comm.broadcast(where_error, 0);
  if (!where_error.empty()) {
    out.run.fatal = where_error;
    out.run.exit_code = kExitFatal;
    return out;
  }
  out.snapshot_id = id;
  RestoreRun run(opts, comm, *r, *snap);
  run.execute(out.run);
  return out;
}

}  // namespace barge::pipeline
