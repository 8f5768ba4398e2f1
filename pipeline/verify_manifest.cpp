#include "pipeline/verify_manifest.hpp"

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

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/parallel_invoke.h>
#include <oneapi/tbb/task_arena.h>

#include "io/unique_fd.hpp"
#include "pipeline/manifest.hpp"

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

EntryCheck check_entry(int root, const ManifestEntry& entry, std::atomic<uint64_t>& files,
                       std::atomic<uint64_t>& bytes) {
  io::UniqueFd fd(open_beneath(root, entry.path));
  if (!fd.valid()) {
    const int err = errno;
    // ENOTDIR: a parent component is a file, so the listed file cannot exist.
    if (err == ENOENT || err == ENOTDIR) return {Outcome::kMissing, {}};
    // ELOOP: a symlink stands where the manifest lists a regular file or a directory on the
    // way to one; its target is not what was hashed.
    if (err == ELOOP) return {Outcome::kMismatched, {}};
    return {Outcome::kUnreadable,
            io::Error::from_errno(err, "open " + printable_path(entry.path)).message};
  }
  auto digest = detail::hash_fd(fd.get(), entry.path);
  if (!digest) {
    // A FIFO, socket or device is a different kind of file, not a read failure.
    if (digest.error().errnum == EINVAL) return {Outcome::kMismatched, {}};
    return {Outcome::kUnreadable, digest.error().message};
  }
  files.fetch_add(1, std::memory_order_relaxed);
  bytes.fetch_add(digest->bytes, std::memory_order_relaxed);
  return {digest->hash == entry.hash ? Outcome::kOk : Outcome::kMismatched, {}};
}

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
  std::atomic<uint64_t> files{0};
  std::atomic<uint64_t> bytes{0};
  VerifyManifestResult result;

  tbb::task_arena arena(opts.threads == 0 ? tbb::task_arena::automatic
                                          : static_cast<int>(opts.threads));
  arena.execute([&] {
    tbb::parallel_invoke(
        [&] {
          // Grain 1: file sizes vary by orders of magnitude, so let stealing balance them.
          tbb::parallel_for(tbb::blocked_range<size_t>(0, list.size(), 1),
                            [&](const tbb::blocked_range<size_t>& r) {
                              for (size_t i = r.begin(); i != r.end(); ++i) {
                                checks[i] = check_entry(root.get(), list[i], files, bytes);
                              }
                            });
        },
        [&] {
          // Runs beside the hashing; only this task touches result.extra and the walk's
          // entries in result.unreadable/errors until parallel_invoke returns.
          if (opts.report_extra) ExtraFinder(listed, manifest_id).run(root.get(), result);
        });
  });

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
  result.files_checked = files.load();
  result.bytes_checked = bytes.load();
  sort_bytewise(result.mismatched);
  sort_bytewise(result.missing);
  sort_bytewise(result.extra);
  // unreadable and errors are parallel lists; sort them together.
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
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace barge::pipeline
