#include "pipeline/repo/repository.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>

#include "io/full_io.hpp"
#include "io/host_name.hpp"
#include "pipeline/core/compress.hpp"
#include "pipeline/repo/repo_files.hpp"

namespace barge::pipeline::repo {

namespace detail {

io::Status fsync_dir(const std::string& dir) {
  io::UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid() || ::fsync(fd.get()) != 0) return io::Error::from_errno(errno, "sync " + dir);
  return io::Status::success();
}

io::Status make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
    return io::Error::from_errno(errno, "create directory " + path);
  return io::Status::success();
}

io::Status write_all(int fd, const void* p, size_t n, const std::string& path, int64_t offset) {
  return io::write_full(fd, p, n, offset, "write " + path);
}

}  // namespace detail

namespace {

using detail::fsync_dir;
using detail::make_dir;
using detail::write_all;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

io::Result<std::string> read_small_file(const std::string& path) {
  io::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return io::Error::from_errno(errno, "open " + path);
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return io::Error::from_errno(errno, "read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

namespace {

// Writes `bytes` to a new temporary file in `dir` (named prefix + random), fsync'd; returns
// its path. The caller renames or links it into place.
io::Result<std::string> write_temp(const std::string& dir, const std::string& prefix,
                                   const std::string& bytes) {
  std::string tmp = dir + "/" + prefix + random_hex128().substr(0, 8);
  io::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd.valid()) return io::Error::from_errno(errno, "create " + tmp);
  io::Status st = write_all(fd.get(), bytes.data(), bytes.size(), tmp);
  if (st && ::fsync(fd.get()) != 0) st = io::Error::from_errno(errno, "sync " + tmp);
  if (st) st = fd.close();
  if (!st) {
    ::unlink(tmp.c_str());
    return st.error();
  }
  return tmp;
}

// Links a complete file into place as dir/name unless something is there already (EEXIST
// is returned as false, not an error); the temporary is removed either way.
io::Result<bool> write_noreplace(const std::string& dir, const std::string& name,
                                 const std::string& bytes) {
  auto tmp = write_temp(dir, ".tmp-" + name + "-", bytes);
  if (!tmp) return tmp.error();
  std::string final_path = dir + "/" + name;
  int rc = ::link(tmp->c_str(), final_path.c_str());
  int err = errno;
  ::unlink(tmp->c_str());
  if (rc != 0 && err != EEXIST) return io::Error::from_errno(err, "create " + final_path);
  if (auto st = fsync_dir(dir); !st) return st.error();
  return rc == 0;
}

// Names of a directory's entries ("." and ".." left out); nullopt when it cannot be listed.
std::optional<std::vector<std::string>> dir_names(const std::string& path) {
  DIR* d = ::opendir(path.c_str());
  if (!d) return std::nullopt;
  std::vector<std::string> out;
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") out.push_back(std::move(n));
  }
  ::closedir(d);
  return out;
}

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

// What a repository's creation leaves before its config is in place (a creation interrupted
// or still running): the lock and its temporaries, the config's temporary, empty packs/ and
// snapshots/.
bool creation_leftover(const std::string& repo, const std::string& name) {
  if (name == "lock" || starts_with(name, ".lock-") || name == "lock.break" ||
      starts_with(name, ".tmp-config-") || name == kSweepName)
    return true;
  if (name != "packs" && name != "snapshots") return false;
  auto inside = dir_names(repo + "/" + name);
  return inside && inside->empty();
}

std::string repair_hint(const std::string& repo) {
  return "; it holds packs or snapshots: run `barge repair " + repo + "` to rebuild the config";
}

}  // namespace

bool looks_like_repository(const std::string& path) {
  struct stat st;
  for (const char* name : {"/config.bak", "/packs", "/snapshots"})
    if (::lstat((path + name).c_str(), &st) == 0) return true;
  return false;
}

Repository Repository::open_without_config(const std::string& path) {
  Repository r;
  r.path_ = path;
  while (r.path_.size() > 1 && r.path_.back() == '/') r.path_.pop_back();
  return r;
}

io::Status write_file_atomic(const std::string& dir, const std::string& name,
                             const std::string& bytes) {
  auto tmp = write_temp(dir, ".tmp-" + name + "-", bytes);
  if (!tmp) return tmp.error();
  std::string final_path = dir + "/" + name;
  if (::rename(tmp->c_str(), final_path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp->c_str());
    return io::Error::from_errno(err, "rename " + final_path);
  }
  return fsync_dir(dir);
}

io::Result<Repository> Repository::open(const std::string& path, bool create,
                                        uint32_t chunk_bytes) {
  Repository r;
  r.path_ = path;
  while (r.path_.size() > 1 && r.path_.back() == '/') r.path_.pop_back();
  std::string config_path = r.path_ + "/" + kConfigName;
  struct stat st;
  if (::stat(config_path.c_str(), &st) != 0) {
    int err = errno;
    if (err != ENOENT) return io::Error::from_errno(err, "open repository " + path);
    if (!create) {
      if (looks_like_repository(r.path_))
        return io::Error::plain(path + ": no config" + repair_hint(path));
      return io::Error::plain(path + ": not a barge repository (no config)");
    }
    // New repository: an absent or empty directory (or one whose creation was interrupted).
    if (::mkdir(r.path_.c_str(), 0700) != 0 && errno != EEXIST)
      return io::Error::from_errno(errno, "create repository " + path);
    auto names = dir_names(r.path_);
    if (!names) return io::Error::from_errno(errno, "open repository " + path);
    bool fresh = std::all_of(names->begin(), names->end(),
                             [&](const std::string& n) { return creation_leftover(r.path_, n); });
    if (!fresh && ::stat(config_path.c_str(), &st) != 0) {  // not made meanwhile by another run
      if (looks_like_repository(r.path_))
        return io::Error::plain(path + ": no config" + repair_hint(path));
      return io::Error::plain(path + ": not a barge repository and not empty (refusing to use it)");
    }
    if (fresh) {
      // The directories first: whoever sees the config can list them.
      for (const char* sub : {"/packs", "/snapshots"}) {
        if (auto s = make_dir(r.path_ + sub); !s) return s.error();
      }
      Config c;
      c.repo_id = random_hex128();
      c.chunk_bytes = chunk_bytes;
      c.created_ns = now_ns();
      // Linked, never renamed over: of several runs creating it at once, the first one's
      // config stands and the others read it below.
      auto made = write_noreplace(r.path_, kConfigName, encode_config(c));
      if (!made) return made.error();
    }
  }
  auto bytes = read_small_file(config_path);
  if (!bytes) return bytes.error();
  auto config = decode_config(*bytes);
  if (!config)
    return io::Error::plain(config_path + ": " + config.error().message + "; run `barge repair " +
                            path + "` to rebuild it");
  r.config_ = *config;
  if (create) {
    if (auto s = r.ensure_config_copy(); !s) return s.error();
  }
  return r;
}

io::Status Repository::ensure_config_copy() const {
  // Linked, never renamed over: every run writes the same bytes (those of the config that
  // stands), and a copy already there is left for `barge repair` to compare.
  std::string copy_path = path_ + "/" + kConfigCopyName;
  struct stat st;
  if (::stat(copy_path.c_str(), &st) == 0) return io::Status::success();
  if (errno != ENOENT) return io::Error::from_errno(errno, "stat " + copy_path);
  auto made = write_noreplace(path_, kConfigCopyName, encode_config(config_));
  if (!made) return made.error();
  return io::Status::success();
}

io::Result<std::vector<std::string>> Repository::list_snapshots() const {
  std::string dir = path_ + "/snapshots";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return io::Error::from_errno(errno, "list " + dir);
  std::vector<std::string> ids;
  while (dirent* de = ::readdir(d)) {
    std::string_view n = de->d_name;
    if (n.size() > 5 && n.substr(n.size() - 5) == ".snap" &&
        is_snapshot_id(n.substr(0, n.size() - 5)))
      ids.emplace_back(n.substr(0, n.size() - 5));
  }
  ::closedir(d);
  std::sort(ids.begin(), ids.end());
  return ids;
}

io::Result<Snapshot> Repository::load_snapshot(const std::string& id) const {
  std::string p = path_ + "/snapshots/" + id + ".snap";
  auto bytes = read_small_file(p);
  if (!bytes) return bytes.error();
  auto s = decode_snapshot(*bytes);
  if (!s) return io::Error::plain(p + ": " + s.error().message);
  if (s->id != id) return io::Error::plain(p + ": holds snapshot " + s->id);
  return s;
}

io::Result<SnapKind> Repository::snapshot_kind(const std::string& id) const {
  std::string p = path_ + "/snapshots/" + id + ".snap";
  io::UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) return io::Error::from_errno(errno, "open " + p);
  std::string header(kSnapshotHeaderBytes, '\0');
  ssize_t n = ::pread(fd.get(), header.data(), header.size(), 0);
  if (n < 0) return io::Error::from_errno(errno, "read " + p);
  header.resize(static_cast<size_t>(n));
  auto k = peek_snapshot_kind(header);
  if (!k) return io::Error::plain(p + ": " + k.error().message);
  return k;
}

io::Result<std::string> Repository::resolve(const std::string& which) const {
  auto ids = list_snapshots();
  if (!ids) return ids.error();
  if (ids->empty()) return io::Error::plain(path_ + ": no snapshots");
  if (which.empty() || which == "latest") return ids->back();
  std::vector<std::string> hits;
  for (const std::string& id : *ids) {
    std::string_view short_id = std::string_view(id).substr(21);  // the random part
    if (starts_with(id, which) || starts_with(short_id, which)) hits.push_back(id);
  }
  if (hits.size() == 1) return hits.front();
  if (hits.empty())
    return io::Error::plain("--snapshot " + which + ": no such snapshot in " + path_);
  std::string some;
  for (size_t i = 0; i < hits.size() && i < 3; ++i) some += (i ? ", " : "") + hits[i];
  return io::Error::plain("--snapshot " + which + ": ambiguous, matches " +
                          std::to_string(hits.size()) + " snapshots (" + some +
                          (hits.size() > 3 ? ", ..." : "") + "); give more of the id");
}

io::Status Repository::save_snapshot(const Snapshot& s) const {
  return write_file_atomic(path_ + "/snapshots", s.id + ".snap", encode_snapshot(s));
}

io::Status Repository::remove_snapshot(const std::string& id) const {
  std::string p = path_ + "/snapshots/" + id + ".snap";
  if (::unlink(p.c_str()) != 0) return io::Error::from_errno(errno, "remove " + p);
  return fsync_dir(path_ + "/snapshots");
}

bool Repository::snapshot_exists(const std::string& id) const {
  struct stat st;
  return ::lstat((path_ + "/snapshots/" + id + ".snap").c_str(), &st) == 0;
}

std::string Repository::pack_path(const std::string& name) const {
  return path_ + "/packs/" + name.substr(0, 2) + "/" + name + ".pack";
}

io::Result<std::vector<std::string>> Repository::list_packs() const {
  std::vector<std::string> out;
  std::string top = path_ + "/packs";
  DIR* d = ::opendir(top.c_str());
  if (!d) return io::Error::from_errno(errno, "list " + top);
  std::vector<std::string> subs;
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n.size() == 2 && n != "..") subs.push_back(n);
  }
  ::closedir(d);
  for (const std::string& sub : subs) {
    std::string dir = top + "/" + sub;
    DIR* s = ::opendir(dir.c_str());
    if (!s) return io::Error::from_errno(errno, "list " + dir);
    while (dirent* de = ::readdir(s)) {
      std::string_view n = de->d_name;
      if (n.size() == 37 && n.substr(32) == ".pack" && is_pack_name(n.substr(0, 32)))
        out.emplace_back(n.substr(0, 32));
    }
    ::closedir(s);
  }
  std::sort(out.begin(), out.end());
  return out;
}

io::Result<std::set<std::string>> referenced_packs(const Repository& r,
                                                   const std::vector<std::string>& ids) {
  std::set<std::string> out;
  for (const std::string& id : ids) {
    auto snap = r.load_snapshot(id);
    if (!snap) return snap.error();
    out.insert(snap->packs.begin(), snap->packs.end());
  }
  return out;
}

io::Result<PackSweep> remove_packs_except(const Repository& r, const std::set<std::string>& keep,
                                          bool dry_run) {
  auto packs = r.list_packs();
  if (!packs) return packs.error();
  PackSweep out;
  for (const std::string& p : *packs) {
    if (keep.count(p)) continue;
    std::string path = r.pack_path(p);
    struct stat st;
    if (::stat(path.c_str(), &st) == 0) out.bytes += static_cast<uint64_t>(st.st_size);
    ++out.packs;
    if (!dry_run && ::unlink(path.c_str()) != 0 && errno != ENOENT)
      return io::Error::from_errno(errno, "remove " + path);
  }
  return out;
}

// RepoLock -------------------------------------------------------------------------------

namespace {

struct LockHolder {
  std::string text;  // the whole file, to tell a replaced lock from the one read before
  std::string host, command;
  long long pid = 0, since = 0;
  ino_t inode = 0;
  time_t mtime = 0;
  bool well_formed = false;
};

// The lock at `path` as it is now; nullopt when there is none (ENOENT).
io::Result<std::optional<LockHolder>> read_lock(const std::string& path) {
  io::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid()) {
    if (errno == ENOENT) return std::optional<LockHolder>();
    return io::Error::from_errno(errno, "open " + path);
  }
  LockHolder h;
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return io::Error::from_errno(errno, "stat " + path);
  h.inode = st.st_ino;
  h.mtime = st.st_mtime;
  char buf[1024];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io::Error::from_errno(errno, "read " + path);
    if (n == 0 || h.text.size() > 4096) break;
    h.text.append(buf, static_cast<size_t>(n));
  }
  std::istringstream in(h.text);
  h.well_formed = static_cast<bool>(in >> h.host >> h.pid >> h.since >> h.command) && h.pid > 0 &&
                  !h.host.empty() && !h.text.empty() && h.text.back() == '\n';
  return std::optional<LockHolder>(std::move(h));
}

bool holder_is_gone(const LockHolder& h, const std::string& me) {
  return h.well_formed && h.host == me && ::kill(static_cast<pid_t>(h.pid), 0) != 0 &&
         errno == ESRCH;
}

std::string since_text(long long since) {
  time_t t = static_cast<time_t>(since);
  struct tm tm;
  char buf[64] = "?";
  if (localtime_r(&t, &tm)) std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

// A temporary file that goes away with its owner.
struct TempFile {
  std::string path;
  ~TempFile() {
    if (!path.empty()) ::unlink(path.c_str());
  }
};

}  // namespace

io::Status mark_sweep(const std::string& repo_path) {
  std::string p = repo_path + "/" + kSweepName;
  io::UniqueFd fd(::open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0644));
  if (!fd.valid()) return io::Error::from_errno(errno, "create " + p);
  if (::fsync(fd.get()) != 0) return io::Error::from_errno(errno, "sync " + p);
  return fsync_dir(repo_path);
}

bool sweep_marked(const std::string& repo_path) {
  struct stat st;
  return ::lstat((repo_path + "/" + kSweepName).c_str(), &st) == 0;
}

io::Status clear_sweep(const std::string& repo_path) {
  std::string p = repo_path + "/" + kSweepName;
  if (::unlink(p.c_str()) != 0 && errno != ENOENT)
    return io::Error::from_errno(errno, "remove " + p);
  return io::Status::success();
}

namespace {

// Removes the stale lock `seen`, if it is still the file at `path`. Only one run at a time
// does this, the one holding REPO/lock.break: so no run removes a lock another run has just
// taken. false when another run is removing it (try again).
io::Result<bool> break_stale_lock(const std::string& repo_path, const std::string& path,
                                  const LockHolder& seen, const std::string& me,
                                  const std::string& mine) {
  std::string brk = repo_path + "/lock.break";
  if (::link(mine.c_str(), brk.c_str()) != 0) {
    if (errno != EEXIST) return io::Error::from_errno(errno, "create " + brk);
    // A breaker that died in the few instructions below leaves lock.break: its holder is
    // gone as well, and it is removed the same way.
    auto b = read_lock(brk);
    if (b && *b && holder_is_gone(**b, me)) ::unlink(brk.c_str());
    return false;
  }
  io::Status st = io::Status::success();
  auto now = read_lock(path);
  if (!now) {
    st = now.error();
  } else if (*now && (*now)->inode == seen.inode && (*now)->text == seen.text) {
    // The dead run may have left packs: the next lock holder sweeps them.
    st = mark_sweep(repo_path);
    if (st && ::unlink(path.c_str()) != 0 && errno != ENOENT)
      st = io::Error::from_errno(errno, "remove the stale lock " + path);
  }
  ::unlink(brk.c_str());
  if (!st) return st.error();
  return true;
}

}  // namespace

io::Result<RepoLock> RepoLock::acquire(const std::string& repo_path, const std::string& command) {
  std::string path = repo_path + "/lock";
  std::string me = io::host_name();
  std::ostringstream line;
  line << me << ' ' << ::getpid() << ' ' << now_ns() / 1000000000 << ' ' << command << '\n';
  // Complete before it becomes visible: written to a temporary, then linked as REPO/lock.
  auto tmp = write_temp(repo_path, ".lock-", line.str());
  if (!tmp) return tmp.error();
  TempFile mine{*tmp};
  for (int attempt = 0; attempt < 200; ++attempt) {
    if (::link(mine.path.c_str(), path.c_str()) == 0) {
      RepoLock lock;
      lock.path_ = path;
      lock.line_ = line.str();
      return lock;
    }
    if (errno != EEXIST) return io::Error::from_errno(errno, "create " + path);
    auto held = read_lock(path);
    if (!held) return held.error();
    if (!*held) continue;  // released meanwhile: try again
    const LockHolder& h = **held;
    if (!h.well_formed) {
      // Earlier versions wrote the lock in place: give one still being written a moment.
      if (std::time(nullptr) - h.mtime < 3) {
        ::usleep(20000);
        continue;
      }
      return io::Error::plain(path + " holds no barge lock line (\"" +
                              h.text.substr(0, std::min<size_t>(h.text.find('\n'), 60)) +
                              "\"); if no barge run uses " + repo_path + ", remove it");
    }
    if (holder_is_gone(h, me)) {
      auto broken = break_stale_lock(repo_path, path, h, me, mine.path);
      if (!broken) return broken.error();
      if (!*broken) ::usleep(5000);  // another run is removing it
      continue;
    }
    // A live holder, or one on another host that cannot be checked from here: named, never
    // offered for removal.
    // On another host (a requeued job's old node, say) it may be gone: say how to tell,
    // never invite removing it.
    return io::Error::plain(
        repo_path + ": locked by barge " + h.command + " on " + h.host +
        (h.host == me ? " (this host)" : "") + ", pid " + std::to_string(h.pid) + ", since " +
        since_text(h.since) +
        (h.host == me ? "; wait for it to finish"
                      : "; wait for it to finish (it runs on another host, so whether it is "
                        "still alive cannot be checked from here: `kill -0 " +
                            std::to_string(h.pid) + "` on " + h.host + " tells)"));
  }
  return io::Error::plain(repo_path + ": could not take the lock " + path +
                          " (other runs keep taking it)");
}

RepoLock& RepoLock::operator=(RepoLock&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    line_ = std::move(o.line_);
    o.path_.clear();
  }
  return *this;
}

void RepoLock::release() {
  if (!path_.empty()) {
    auto held = read_lock(path_);
    if (held && *held && (*held)->text == line_) ::unlink(path_.c_str());
  }
  path_.clear();
}

// PackWriter ------------------------------------------------------------------------------

}  // namespace barge::pipeline::repo
