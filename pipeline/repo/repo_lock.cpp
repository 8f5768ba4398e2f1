// REPO/lock (RepoLock: taken by linking, a dead holder's lock broken under REPO/lock.break)
// and REPO/sweep, the mark that unreferenced packs may be left.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <ctime>
#include <fstream>
#include <optional>
#include <sstream>

#include "io/host_name.hpp"
#include "pipeline/repo/repo_files.hpp"
#include "pipeline/repo/repository.hpp"

namespace barge::pipeline::repo {

using detail::fsync_dir;
using detail::now_ns;
using detail::write_temp;

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

// No such process, or one that has exited and waits to be reaped (a zombie: a killed rank
// whose parent has not collected it yet holds nothing).
bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(stat, line);
  const size_t close = line.rfind(')');  // the state follows the command name in parentheses
  return close != std::string::npos && close + 2 < line.size() &&
         (line[close + 2] == 'Z' || line[close + 2] == 'X');
}

bool holder_is_gone(const LockHolder& h, const std::string& me) {
  return h.well_formed && h.host == me && process_gone(static_cast<pid_t>(h.pid));
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

}  // namespace barge::pipeline::repo
