#include "pipeline/check/verify_manifest.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <memory>
#include <mutex>
#include <string_view>
#include <unordered_set>
#include <utility>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/parallel_invoke.h>

#include "io/buffer_pool.hpp"
#include "io/unique_fd.hpp"
#include "pipeline/core/manifest.hpp"
#include "pipeline/core/plan.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/engine/graph.hpp"

namespace barge::pipeline {
namespace {

enum class Outcome : uint8_t { kOk, kMismatched, kMissing, kUnreadable };

struct EntryCheck {
  Outcome outcome = Outcome::kOk;
  std::string error;  // why, for kUnreadable
};

constexpr int kOpenFlags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY;
constexpr int kDirFlags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_DIRECTORY;

// openat2 is missing before Linux 5.6 and may be filtered by seccomp; learn that once.
std::atomic<bool> g_openat2_works{true};

// Opens a manifest path under `root` without following a symlink in any component, so a
// tree with a symlinked directory cannot make verify vouch for files outside it.
int open_beneath(int root, const std::string& rel) {
  if (g_openat2_works.load(std::memory_order_relaxed)) {
    open_how how{};
    how.flags = static_cast<uint64_t>(kOpenFlags);
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
    for (int attempt = 0; attempt < 4; ++attempt) {
      long fd = ::syscall(SYS_openat2, root, rel.c_str(), &how, sizeof(how));
      if (fd >= 0) return static_cast<int>(fd);
      // EAGAIN: the kernel saw a concurrent rename and asks for a retry.
      if (errno == EAGAIN) continue;
      if (errno == ENOSYS || errno == EPERM) {
        g_openat2_works.store(false, std::memory_order_relaxed);
        break;
      }
      if (errno == ENAMETOOLONG) break;
      return -1;
    }
  }
  return detail::open_by_components(root, rel);
}

// The outcome of a listed file that could not be opened as a regular file.
EntryCheck open_outcome(int err, const ManifestEntry& entry) {
  // ENOTDIR: a parent component is a file, so the listed file cannot exist.
  if (err == ENOENT || err == ENOTDIR) return {Outcome::kMissing, {}};
  // ELOOP: a symlink stands where the manifest lists a regular file or a directory on the
  // way to one; its target is not what was hashed.
  if (err == ELOOP) return {Outcome::kMismatched, {}};
  return {Outcome::kUnreadable,
          io::Error::from_errno(err, "open " + printable_path(entry.path)).message};
}

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// The least and the most of a unit's buffer one large file is streamed through: a slice
// hashed right after its read is still in the CPU's cache (4 MiB slices hashed ~10% slower
// than 1 MiB ones here).
constexpr uint64_t kMinSliceBytes = 256 << 10;
constexpr uint64_t kMaxSliceBytes = 1 << 20;

// The stages of verify --manifest. Extent::file is the index of the listed file; an item
// whose file could not be checked is failed, with its outcome already in `checks`.
class ManifestCheck {
 public:
  ManifestCheck(int root, const std::vector<ManifestEntry>& list, std::vector<EntryCheck>& checks)
      : root_(root), list_(list), checks_(checks) {}

  // read: opens each file beneath the root; files that fit the room left in the unit are
  // read in one batch through the ring, larger ones streamed through the whole buffer
  // first (their hash computed on the way).
  void read(WorkUnit& u, const BackendSource& ring) const {
    std::vector<io::UniqueFd> fds;
    std::vector<std::pair<size_t, io::UniqueFd>> big;  // files larger than the room left
    std::vector<io::IoOp> ops;
    std::vector<size_t> op_item;
    const uint64_t cap = u.buffer.capacity_bytes();
    uint64_t used = 0;
    for (size_t k = 0; k < u.items.size(); ++k) {
      Item& it = u.items[k];
      const ManifestEntry& e = list_[it.ext.file];
      io::UniqueFd fd(open_beneath(root_, e.path));
      struct stat st {};
      if (!fd.valid()) {
        fail(it, open_outcome(errno, e));
      } else if (::fstat(fd.get(), &st) != 0) {
        fail(it, {Outcome::kUnreadable,
                  io::Error::from_errno(errno, "stat " + printable_path(e.path)).message});
      } else if (S_ISDIR(st.st_mode)) {
        fail(it, {Outcome::kUnreadable,
                  "hash " + printable_path(e.path) + ": is a directory, not a regular file"});
      } else if (!S_ISREG(st.st_mode)) {
        fail(it, {Outcome::kMismatched, {}});  // a FIFO, socket or device: another kind of file
      } else if (const uint64_t size = static_cast<uint64_t>(st.st_size);
                 round_up(size, io::BufferPool::kAlignment) <= cap - used) {
        it.ext.buf_offset_bytes = used;
        it.ext.length_bytes = size;
        used += round_up(size, io::BufferPool::kAlignment);
        ops.push_back({io::IoKind::kRead, fd.get(), u.buffer.data() + it.ext.buf_offset_bytes, size,
                       0, u.buffer.index()});
        op_item.push_back(k);
        fds.push_back(std::move(fd));
      } else {
        big.emplace_back(k, std::move(fd));
      }
    }
    // The large files first, side by side in slices of the whole buffer (before the small
    // files' reads fill it).
    if (!big.empty()) {
      const size_t ways = static_cast<size_t>(
          std::clamp<uint64_t>(cap / kMinSliceBytes, 1, static_cast<uint64_t>(big.size())));
      const uint64_t slice = std::min(
          kMaxSliceBytes, cap / ways / io::BufferPool::kAlignment * io::BufferPool::kAlignment);
      tbb::parallel_for(size_t{0}, ways, [&](size_t w) {
        std::byte* at = u.buffer.data() + w * slice;
        for (size_t n = w; n < big.size(); n += ways)
          stream(u.items[big[n].first], big[n].second.get(), {at, slice}, u.buffer.index(), ring());
      });
    }
    ring().run(ops);
    for (size_t n = 0; n < ops.size(); ++n) {
      Item& it = u.items[op_item[n]];
      if (ops[n].error != 0) {
        fail(it,
             {Outcome::kUnreadable,
              io::Error::from_errno(ops[n].error, "read " + printable_path(list_[it.ext.file].path))
                  .message});
      } else {
        it.ext.length_bytes = ops[n].done_bytes;  // a file that shrank is hashed as it is
      }
    }
  }

  // hash: XXH3-128 of the files read whole.
  void hash(WorkUnit& u) const {
    for (Item& it : u.items)
      if (!it.failed && !it.streamed) it.hash = hash_bytes(u.bytes(it));
  }

  // compare: each file's hash against the manifest's.
  void compare(WorkUnit& u) {
    for (const Item& it : u.items) {
      if (it.failed) continue;
      files_.fetch_add(1, std::memory_order_relaxed);
      bytes_.fetch_add(it.ext.length_bytes, std::memory_order_relaxed);
      checks_[it.ext.file] = {
          it.hash == list_[it.ext.file].hash ? Outcome::kOk : Outcome::kMismatched, {}};
    }
  }

  uint64_t files() const { return files_.load(); }
  uint64_t bytes() const { return bytes_.load(); }

 private:
  void fail(Item& it, EntryCheck outcome) const {
    it.failed = true;
    checks_[it.ext.file] = std::move(outcome);
  }

  // Reads the whole file through `room` (a slice of the unit's registered buffer `index`),
  // hashing as it goes. (Hashing one part while a task reads the next was faster with the
  // worker threads awake, twice slower when they slept: a wake-up per part.)
  void stream(Item& it, int fd, std::span<std::byte> room, int index,
              io::IoBackend& backend) const {
    (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);  // advice only
    StreamHasher hasher;
    uint64_t offset = 0;
    for (;;) {
      io::IoOp op{io::IoKind::kRead, fd, room.data(), room.size(), offset, index};
      backend.run(std::span<io::IoOp>(&op, 1));
      if (op.error != 0) {
        fail(it,
             {Outcome::kUnreadable,
              io::Error::from_errno(op.error, "read " + printable_path(list_[it.ext.file].path) +
                                                  " at offset " + std::to_string(offset))
                  .message});
        return;
      }
      hasher.update({room.data(), static_cast<size_t>(op.done_bytes)});
      offset += op.done_bytes;
      if (op.done_bytes < room.size()) break;  // end of file
    }
    it.streamed = true;
    it.hash = hasher.digest();
    it.ext.length_bytes = offset;
  }

  int root_;
  const std::vector<ManifestEntry>& list_;
  std::vector<EntryCheck>& checks_;
  std::atomic<uint64_t> files_{0};
  std::atomic<uint64_t> bytes_{0};
};

struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  bool valid = false;
};

// Finds regular files under `root` that the manifest omits. Symlinks are neither followed
// nor reported: the manifest lists regular files only, so a copied symlink is not "extra".
class ExtraFinder {
 public:
  ExtraFinder(const std::unordered_set<std::string_view>& listed, FileId manifest_id)
      : listed_(listed), manifest_id_(manifest_id) {}

  void run(int root, VerifyManifestResult& out) {
    // Pending directories share their parent's fd, so open fds stay bounded by the depth
    // of the tree rather than its width.
    struct Pending {
      std::shared_ptr<io::UniqueFd> parent;
      std::string name;  // relative to parent; empty for the root
      std::string rel;   // relative to the tree root; empty for the root
    };
    std::vector<Pending> stack;
    stack.push_back({nullptr, {}, {}});
    while (!stack.empty()) {
      Pending p = std::move(stack.back());
      stack.pop_back();
      auto dir = std::make_shared<io::UniqueFd>(
          p.parent ? ::openat(p.parent->get(), p.name.c_str(), kDirFlags)
                   : ::openat(root, ".", O_RDONLY | O_CLOEXEC | O_DIRECTORY));
      if (!dir->valid()) {
        // Gone since it was listed, or replaced by a symlink: nothing under it to report.
        if (errno == ENOENT || errno == ELOOP || errno == ENOTDIR) continue;
        fail(out, p.rel, io::Error::from_errno(errno, "open directory " + display(p.rel)));
        continue;
      }
      std::vector<std::string> subdirs;
      if (!list(dir->get(), p.rel, subdirs, out)) continue;
      // Reverse so the walk visits subdirectories in readdir order; only cosmetic.
      for (auto it = subdirs.rbegin(); it != subdirs.rend(); ++it) {
        std::string rel = p.rel.empty() ? *it : p.rel + "/" + *it;
        stack.push_back({dir, std::move(*it), std::move(rel)});
      }
    }
  }

 private:
  static std::string display(const std::string& rel) {
    return rel.empty() ? "." : printable_path(rel);
  }

  static void fail(VerifyManifestResult& out, const std::string& rel, const io::Error& err) {
    out.unreadable.push_back(rel.empty() ? "." : rel);
    out.errors.push_back(err.message);
  }

  // Reads one directory; false if it could not be read (already recorded in `out`).
  bool list(int dirfd, const std::string& rel, std::vector<std::string>& subdirs,
            VerifyManifestResult& out) {
    // fdopendir takes over the fd it is given; hand it a duplicate so `dirfd` stays valid
    // for opening the subdirectories. The shared file offset is harmless: only readdir
    // uses it.
    int own = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (own < 0) {
      fail(out, rel, io::Error::from_errno(errno, "open directory " + display(rel)));
      return false;
    }
    std::unique_ptr<DIR, int (*)(DIR*)> d(::fdopendir(own), ::closedir);
    if (!d) {
      fail(out, rel, io::Error::from_errno(errno, "opendir " + display(rel)));
      ::close(own);
      return false;
    }
    while (true) {
      errno = 0;
      const dirent* e = ::readdir(d.get());
      if (!e) {
        if (errno != 0) {
          fail(out, rel, io::Error::from_errno(errno, "readdir " + display(rel)));
          return false;
        }
        return true;
      }
      const std::string_view name = e->d_name;
      if (name == "." || name == "..") continue;
      unsigned char type = e->d_type;
      if (type == DT_UNKNOWN) {
        struct stat st {};
        if (::fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        type = S_ISDIR(st.st_mode) ? DT_DIR : S_ISREG(st.st_mode) ? DT_REG : DT_UNKNOWN;
      }
      if (type == DT_DIR) {
        subdirs.emplace_back(name);
      } else if (type == DT_REG) {
        std::string path = rel.empty() ? std::string(name) : rel + "/" + std::string(name);
        if (!listed_.contains(path) && !is_manifest(dirfd, e->d_name)) {
          out.extra.push_back(std::move(path));
        }
      }
    }
  }

  bool is_manifest(int dirfd, const char* name) const {
    if (!manifest_id_.valid) return false;
    struct stat st {};
    if (::fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) != 0) return false;
    return st.st_dev == manifest_id_.dev && st.st_ino == manifest_id_.ino;
  }

  const std::unordered_set<std::string_view>& listed_;
  FileId manifest_id_;
};

void sort_bytewise(std::vector<std::string>& v) { std::sort(v.begin(), v.end()); }

}  // namespace

namespace detail {

int open_by_components(int root, std::string_view rel) {
  io::UniqueFd cur;
  size_t start = 0;
  while (true) {
    const size_t slash = rel.find('/', start);
    const std::string comp(rel.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
    const int at = cur.valid() ? cur.get() : root;
    if (slash == std::string_view::npos) return ::openat(at, comp.c_str(), kOpenFlags);
    int next = ::openat(at, comp.c_str(), kDirFlags);
    if (next < 0) {
      // O_DIRECTORY|O_NOFOLLOW reports a symlinked directory as ENOTDIR; say ELOOP, as
      // openat2 does, so the caller can tell a symlink from a file in the way.
      struct stat st {};
      const int err = errno;
      errno = err == ENOTDIR && ::fstatat(at, comp.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                      S_ISLNK(st.st_mode)
                  ? ELOOP
                  : err;
      return -1;
    }
    cur.reset(next);
    start = slash + 1;
  }
}

}  // namespace detail

io::Status validate(const VerifyManifestOptions& opts) {
  if (opts.manifest.empty()) return io::Error::plain("verify: no manifest file given");
  if (opts.dir.empty()) return io::Error::plain("verify: no directory given");
  return io::Status::success();
}

namespace {

// Each listed file's outcome into the result's lists.
void collect(const std::vector<ManifestEntry>& list, std::vector<EntryCheck>& checks,
             VerifyManifestResult& result) {
  for (size_t i = 0; i < list.size(); ++i) {
    switch (checks[i].outcome) {
      case Outcome::kOk:
        break;
      case Outcome::kMismatched:
        result.mismatched.push_back(list[i].path);
        break;
      case Outcome::kMissing:
        result.missing.push_back(list[i].path);
        break;
      case Outcome::kUnreadable:
        result.unreadable.push_back(list[i].path);
        result.errors.push_back(std::move(checks[i].error));
        break;
    }
  }
}

// Every list in byte order; unreadable and errors are parallel lists, sorted together.
void sort_lists(VerifyManifestResult& result) {
  sort_bytewise(result.mismatched);
  sort_bytewise(result.missing);
  sort_bytewise(result.extra);
  std::vector<std::pair<std::string, std::string>> unreadable;
  unreadable.reserve(result.unreadable.size());
  for (size_t i = 0; i < result.unreadable.size(); ++i) {
    unreadable.emplace_back(std::move(result.unreadable[i]), std::move(result.errors[i]));
  }
  std::sort(unreadable.begin(), unreadable.end());
  result.unreadable.clear();
  result.errors.clear();
  for (auto& [path, why] : unreadable) {
    result.unreadable.push_back(std::move(path));
    result.errors.push_back(std::move(why));
  }
}

}  // namespace

io::Result<VerifyManifestResult> verify_manifest(const VerifyManifestOptions& opts) {
  const auto start = std::chrono::steady_clock::now();
  if (io::Status st = validate(opts); !st) return st.error();

  auto entries = read_manifest(opts.manifest);
  if (!entries) return entries.error();
  io::UniqueFd root(::open(opts.dir.c_str(), O_RDONLY | O_CLOEXEC | O_DIRECTORY));
  if (!root.valid()) return io::Error::from_errno(errno, "open directory " + opts.dir.string());

  FileId manifest_id;
  if (struct stat st{}; ::stat(opts.manifest.c_str(), &st) == 0) {
    manifest_id = {st.st_dev, st.st_ino, true};
  }
  std::unordered_set<std::string_view> listed;
  if (opts.report_extra) {
    listed.reserve(entries->size());
    for (const ManifestEntry& e : *entries) listed.insert(e.path);
  }

  const std::vector<ManifestEntry>& list = *entries;
  std::vector<EntryCheck> checks(list.size());
  VerifyManifestResult result;
  const unsigned threads = opts.threads ? opts.threads : default_threads();
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads + 1);
  const uint64_t buffer_bytes = round_up(opts.chunk_bytes, io::BufferPool::kAlignment);
  // Useful: two units per thread in flight, and no more than the list has units.
  const uint64_t units = (list.size() + opts.max_files_per_unit - 1) / opts.max_files_per_unit;
  io::BufferPool pool(buffer_bytes,
                      pool_buffers(opts.memory_bytes, buffer_bytes,
                                   std::min<uint64_t>(units, 2 * uint64_t{threads} + 2), 2));
  BackendSet backends(io::BackendOptions{opts.backend, opts.queue_depth, &pool});
  const BackendSource ring = backends.source();
  ManifestCheck check(root.get(), list, checks);
  size_t next = 0;
  Assembly a;
  a.next = [&](WorkUnit& u) {
    for (; next < list.size() && u.items.size() < opts.max_files_per_unit; ++next)
      u.items.emplace_back().ext.file = static_cast<uint32_t>(next);
    return !u.items.empty();
  };
  a.stages = {{kStageRead, StageKind::kIo, [&](WorkUnit& u) { check.read(u, ring); }},
              {kStageHash, StageKind::kCpu, [&](WorkUnit& u) { check.hash(u); }}};
  a.last = [&](WorkUnit* u, const Emit& emit) {
    check.compare(*u);
    emit(u);
  };
  a.on_throw = [&](WorkUnit& u, const std::string& why) {
    for (Item& it : u.items) {
      it.failed = true;
      checks[it.ext.file] = {Outcome::kUnreadable,
                             printable_path(list[it.ext.file].path) + ": " + why};
    }
  };
  LiveStats stats;
  // The walk for extra files runs beside the checking; only it touches result.extra and the
  // walk's entries in result.unreadable/errors until both are done.
  tbb::parallel_invoke([&] { run_graph(a, pool, stats, threads); },
                       [&] {
                         if (opts.report_extra)
                           ExtraFinder(listed, manifest_id).run(root.get(), result);
                       });

  collect(list, checks, result);
  result.files_checked = check.files();
  result.bytes_checked = check.bytes();
  sort_lists(result);
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace barge::pipeline
