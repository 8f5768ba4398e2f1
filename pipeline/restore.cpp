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
#include <oneapi/tbb/parallel_for.h>
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
#include "pipeline/backup.hpp"
#include "pipeline/copy_internal.hpp"
#include "pipeline/plan.hpp"
#include "pipeline/repository.hpp"
#include "pipeline/wire.hpp"

namespace barge::pipeline {
namespace {

using Clock = std::chrono::steady_clock;
using repo::SnapEntry;

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

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
    return fd_.get();
  }

 private:
  int root_fd_;
  std::string rel_;
  io::UniqueFd fd_;
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

  void execute(RunResult& result) {
    auto t0 = Clock::now();
    unsigned threads = opts_.threads      ? opts_.threads
                       : comm_.size() > 1 ? default_threads_per_rank()
                                          : default_threads();
    // More threads than cores: reads block in the kernel while others compress.
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    raise_fd_limit();
    apply_owner_ = io::can_chown();
    // select
    const std::vector<std::string> wanted = wanted_paths(opts_.paths);
    std::vector<uint32_t> chosen;
    for (uint32_t i = 0; i < snap_.entries.size(); ++i)
      if (selected_by(snap_.entries[i].path, wanted)) chosen.push_back(i);
    for (const std::string& w : wanted) {
      bool found = false;
      for (uint32_t i : chosen) found = found || snap_.entries[i].path == w;
      if (!found) {
        result.fatal = "--path " + w + ": not in snapshot " + snap_.id;
        result.exit_code = kExitFatal;
        return;
      }
    }
    // Hard links: a member whose data holder is not restored (--path) holds the data itself,
    // and the group's other chosen members link to it.
    link_of_.assign(snap_.entries.size(), repo::kNoLink);
    data_of_.resize(snap_.entries.size());
    for (uint32_t i = 0; i < data_of_.size(); ++i) data_of_[i] = i;
    {
      std::unordered_set<uint32_t> chosen_set(chosen.begin(), chosen.end());
      std::unordered_map<uint32_t, uint32_t> stand_in;
      for (uint32_t i : chosen) {
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
    // destination: a symlink is followed only when named "DST/" (checked in run_restore;
    // O_NOFOLLOW keeps it so should DST be swapped for a symlink meanwhile)
    const Destination where = destination_of(opts_.destination);
    if (comm_.rank() == 0 && ::mkdir(where.path.c_str(), 0700) != 0 && errno != EEXIST)
      fatal_ = io::Error::from_errno(errno, "create destination " + opts_.destination).message;
    comm_.barrier();
    const std::string root_path = where.follow ? where.path + "/" : where.path;
    root_.reset(::open(root_path.c_str(),
                       O_RDONLY | O_DIRECTORY | O_CLOEXEC | (where.follow ? 0 : O_NOFOLLOW)));
    if (!root_.valid() && fatal_.empty())
      fatal_ = io::Error::from_errno(errno, "open destination " + opts_.destination).message;
    if (!comm_.agree(fatal_.empty())) {
      result.fatal = fatal_.empty() ? "destination not usable on every rank" : fatal_;
      result.exit_code = kExitFatal;
      return;
    }
    result.started = true;
    // Files are created with their final permission bits; the caller's umask comes back
    // when execute returns, however it returns.
    io::ScopedUmask umask0(0);
    // directories (rank 0), parents first
    if (comm_.rank() == 0) {
      ParentCache parents(root_.get());
      for (uint32_t i : chosen) {
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
    comm_.barrier();
    // files with data: shared out by bytes, the same way on every rank
    std::vector<uint32_t> mine;
    {
      std::vector<uint64_t> load(static_cast<size_t>(comm_.size()), 0);
      for (uint32_t i : chosen) {
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
    }
    auto tb = Clock::now();
    {
      std::unique_ptr<transport::AsyncSum> across = comm_.make_async_sum();
      Progress::Across share{across.get(), comm_.size(), {}, {}};
      Progress progress(stats_, comm_.rank() == 0 ? opts_.progress : ProgressMode::kNone, "restore",
                        opts_.progress_interval_s, std::move(share));
      tbb::task_arena arena(static_cast<int>(threads));
      arena.execute([&] {
        tbb::parallel_for(size_t{0}, mine.size(), [&](size_t k) {
          if (stop_signal().load() == 0) restore_file(mine[k]);
        });
      });
    }
    double busy = since(tb);
    comm_.barrier();
    // rank 0: symlinks, special files, hard links, then directory metadata deepest first
    if (comm_.rank() == 0) {
      ParentCache parents(root_.get());
      for (uint32_t i : chosen) {
        const SnapEntry& e = snap_.entries[i];
        if (e.meta.type == io::FileType::kRegular && link_of_[i] != repo::kNoLink) {
          link_follower(i, parents);
        } else if (e.meta.type != io::FileType::kRegular &&
                   e.meta.type != io::FileType::kDirectory) {
          create_special(i, parents);
        }
      }
      for (auto it = chosen.rbegin(); it != chosen.rend(); ++it) {
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
    // report
    uint64_t counts[4] = {stats_.bytes_done.load(), stats_.files_done.load(),
                          static_cast<uint64_t>(busy * 1e9), peak_rss_bytes()};
    std::vector<std::string> all_stats =
        comm_.gather(std::string(reinterpret_cast<const char*>(counts), sizeof counts), 0);
    WireWriter ew;
    for (const std::string& e : errors_.take()) ew.str(e);
    std::vector<std::string> all_errors = comm_.gather(ew.take(), 0);
    uint64_t signalled = stop_signal().load() != 0 ? 1 : 0;
    comm_.allreduce_max(std::span<uint64_t>(&signalled, 1));
    if (comm_.rank() == 0) {
      uint64_t min_busy = UINT64_MAX, max_busy = 0;
      for (size_t r = 0; r < all_stats.size(); ++r) {
        uint64_t c[4];
        std::memcpy(c, all_stats[r].data(), sizeof c);
        RankStats k;
        k.rank = static_cast<int>(r);
        k.bytes = c[0];
        k.files = c[1];
        k.busy_seconds = static_cast<double>(c[2]) / 1e9;
        k.peak_rss_bytes = c[3];
        min_busy = std::min(min_busy, c[2]);
        max_busy = std::max(max_busy, c[2]);
        result.bytes += c[0];
        result.bytes_transferred += c[0];
        result.files += c[1];
        result.peak_rss_bytes = std::max(result.peak_rss_bytes, c[3]);
        if (comm_.size() > 1) result.ranks.push_back(k);
      }
      result.balance = max_busy ? static_cast<double>(min_busy) / max_busy : 1.0;
      for (const std::string& b : all_errors) {
        WireReader r(b);
        while (!r.done()) result.errors.push_back(r.str());
      }
      for (uint32_t i : chosen) {
        const SnapEntry& e = snap_.entries[i];
        if (e.meta.type == io::FileType::kDirectory)
          ++result.dirs;
        else if (e.meta.type == io::FileType::kSymlink)
          ++result.symlinks;
        else if (e.meta.type != io::FileType::kRegular)
          ++result.others;
      }
      result.files += links_made_;
      result.seconds = since(t0);
      result.resumable = false;
      result.exit_code =
          exit_code_for(signalled != 0, !result.fatal.empty(), !result.errors.empty());
    }
    uint64_t code = static_cast<uint64_t>(result.exit_code);
    comm_.allreduce_max(std::span<uint64_t>(&code, 1));
    result.exit_code = static_cast<int>(code);
  }

 private:
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

  void restore_file(uint32_t i) {
    const SnapEntry& e = snap_.entries[i];
    thread_local std::unique_ptr<ParentCache> parents;
    thread_local int parents_root = -1;
    if (!parents || parents_root != root_.get()) {
      parents = std::make_unique<ParentCache>(root_.get());
      parents_root = root_.get();
    }
    int pfd = parents->get(parent_of(e.path));
    if (pfd < 0) {
      fail(i, io::Error::from_errno(errno, "open parent of " + dst(e)).message);
      return;
    }
    std::string name = name_of(e.path);
    io::UniqueFd fd(::openat(pfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, 0600));
    if (!fd.valid()) {
      fail(i, io::Error::from_errno(errno, "create " + dst(e)).message);
      return;
    }
    if (::ftruncate(fd.get(), static_cast<off_t>(e.meta.size_bytes)) != 0) {
      fail(i, io::Error::from_errno(errno, "write " + dst(e)).message);
      return;
    }
    std::atomic<bool> ok{true};
    const bool sparse = io::is_sparse(e.meta);
    const std::vector<repo::BlobRef>& chunks = snap_.entries[data_of_[i]].chunks;
    auto one_chunk = [&](size_t c) {
      if (!ok.load()) return;
      const repo::BlobRef& ref = chunks[c];
      thread_local std::vector<std::byte> raw, scratch;
      raw.resize(ref.raw_bytes);
      std::string err;
      int pack_fd = packs_.get(ref.pack, &err);
      io::Status st = pack_fd < 0 ? io::Status(io::Error::plain(err))
                                  : repo::read_blob(pack_fd, ref, raw, scratch);
      if (!st) {
        if (!ok.exchange(false)) return;
        fail(i, dst(e) + ": not restored: chunk at offset " + std::to_string(ref.file_offset) +
                    " in pack " + snap_.packs[ref.pack] + ": " + st.error().message);
        return;
      }
      // A sparse file stays sparse: its zero blocks are left as holes (the file was sized
      // with ftruncate, so they read back as zeros).
      for (auto [begin, end] :
           write_ranges(std::span<const std::byte>(raw.data(), ref.raw_bytes), sparse)) {
        while (begin < end) {
          ssize_t n = ::pwrite(fd.get(), raw.data() + begin, end - begin,
                               static_cast<off_t>(ref.file_offset + begin));
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0) {
            if (ok.exchange(false))
              fail(i, io::Error::from_errno(errno, "write " + dst(e)).message);
            return;
          }
          begin += static_cast<size_t>(n);
        }
      }
      stats_.bytes_done += ref.raw_bytes;
    };
    if (chunks.size() > 1) {
      // Isolated: while it waits for the chunks, this thread must not pick up another file's
      // restore_file, which would move its thread-local parent directory under our feet.
      tbb::this_task_arena::isolate(
          [&] { tbb::parallel_for(size_t{0}, chunks.size(), one_chunk); });
    } else if (!chunks.empty()) {
      one_chunk(0);
    }
    if (!ok.load()) return;  // the unnamed inode goes away with its descriptor
    if (opts_.xattrs && !e.xattrs.empty()) {
      if (auto st = io::write_xattrs(e.xattrs, fd.get(), dst(e)); !st)
        errors_.add(st.error().message);
    }
    if (auto st = io::apply_meta_fd(fd.get(), e.meta, apply_owner_, dst(e)); !st) {
      fail(i, st.error().message);
      return;
    }
    std::string tmp = ".barge-tmp." + name_of(e.path).substr(0, 32) + "." + std::to_string(i);
    if (detail::link_into_place(fd.get(), pfd, name, tmp) != 0) {
      fail(i, io::Error::from_errno(errno, "link into place " + dst(e)).message);
      return;
    }
    stats_.files_done += 1;
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
      bool at_or_below = e.path == rel || (e.path.size() > rel.size() &&
                                           e.path.compare(0, rel.size(), rel) == 0 &&
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
