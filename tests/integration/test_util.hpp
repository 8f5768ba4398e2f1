// Helpers for integration tests that drive the real barge binary on real trees: running a
// command with captured output, temporary directories (removed even when deeper than
// PATH_MAX), tree building, and an independent tree comparison (lstat, never following
// symlinks, every operation relative to an open parent so deep trees work).
//
// Everything here is header-only: tests/CMakeLists.txt compiles only *_test.cpp files.
// Not thread-safe; tests run one at a time.
#pragma once

#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace barge::itest {

// ---------------------------------------------------------------------------------------
// Small utilities

inline std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

// One printable line for a raw name (newlines, control and non-UTF-8 bytes escaped).
inline std::string printable(const std::string& s, size_t max_bytes = 200) {
  std::string out;
  for (unsigned char c : s) {
    if (out.size() >= max_bytes) {
      out += "...";
      break;
    }
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out;
}

inline std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : text) {
    if (c == '\n') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  if (!cur.empty()) out.push_back(cur);
  return out;
}

// Deterministic, non-repeating content: a wrong offset or a swapped chunk shows.
inline std::string pattern_bytes(size_t n, uint64_t seed) {
  std::string s(n, '\0');
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + n);
  size_t i = 0;
  while (i + 8 <= n) {
    uint64_t v = rng();
    std::memcpy(&s[i], &v, 8);
    i += 8;
  }
  for (; i < n; ++i) s[i] = static_cast<char>(rng());
  return s;
}

// ---------------------------------------------------------------------------------------
// fd-relative file operations (work below PATH_MAX limits)

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept {
    reset(o.release());
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

inline Fd open_dir_at(int dirfd, const std::string& name) {
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(errno_text("open directory " + printable(name)));
  return Fd(fd);
}

inline void write_file_at(int dirfd, const std::string& name, const std::string& bytes,
                          mode_t mode = 0644) {
  int fd =
      ::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error(errno_text("create " + printable(name)));
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n <= 0) {
      ::close(fd);
      throw std::runtime_error(errno_text("write " + printable(name)));
    }
    done += static_cast<size_t>(n);
  }
  ::fchmod(fd, mode);
  ::close(fd);
}

inline void write_file(const std::string& path, const std::string& bytes, mode_t mode = 0644) {
  write_file_at(AT_FDCWD, path, bytes, mode);
}

inline void make_dir(const std::string& path, mode_t mode = 0755) {
  if (::mkdir(path.c_str(), mode) != 0)
    throw std::runtime_error(errno_text("mkdir " + printable(path)));
  ::chmod(path.c_str(), mode);
}

inline void make_symlink(const std::string& target, const std::string& path) {
  if (::symlink(target.c_str(), path.c_str()) != 0) {
    throw std::runtime_error(errno_text("symlink " + printable(path)));
  }
}

inline void make_fifo(const std::string& path, mode_t mode = 0640) {
  if (::mkfifo(path.c_str(), mode) != 0)
    throw std::runtime_error(errno_text("mkfifo " + printable(path)));
  ::chmod(path.c_str(), mode);
}

// Ownership first: chown clears setuid/setgid, so modes go on afterwards.
inline void set_owner(const std::string& path, uid_t uid, gid_t gid) {
  if (::lchown(path.c_str(), uid, gid) != 0)
    throw std::runtime_error(errno_text("lchown " + printable(path)));
}

inline void set_mode(const std::string& path, mode_t mode) {
  if (::chmod(path.c_str(), mode) != 0)
    throw std::runtime_error(errno_text("chmod " + printable(path)));
}

inline bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

inline std::string read_file(const std::string& path) { return read_all(path); }

inline std::string read_fd_all(int fd) {
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(errno_text("read"));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

inline std::vector<std::string> list_names(int dirfd) {
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error(errno_text("open directory for listing"));
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    throw std::runtime_error(errno_text("fdopendir"));
  }
  std::vector<std::string> names;
  while (dirent* de = ::readdir(d)) {
    std::string n = de->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

inline std::vector<std::string> list_names(const std::string& dir) {
  Fd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid()) throw std::runtime_error(errno_text("open " + printable(dir)));
  return list_names(fd.get());
}

// Removes `name` under dirfd and everything below it, however deep.
inline void remove_tree_at(int dirfd, const std::string& name) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  if (S_ISDIR(st.st_mode)) {
    ::fchmodat(dirfd, name.c_str(), 0700, 0);
    int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
      Fd owned(fd);
      for (const std::string& child : list_names(fd)) remove_tree_at(fd, child);
    }
    ::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR);
  } else {
    ::unlinkat(dirfd, name.c_str(), 0);
  }
}

// Post-order walk calling fn(dirfd, name, stat) for every entry below `dirfd`, then the
// directory contents before the directory itself.
template <class F>
void walk_post_order(int dirfd, F&& fn) {
  for (const std::string& name : list_names(dirfd)) {
    struct stat st;
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      Fd sub = open_dir_at(dirfd, name);
      walk_post_order(sub.get(), fn);
    }
    fn(dirfd, name, st);
  }
}

// Gives every entry below (and including) `root` a distinct mtime with nanoseconds and an
// old atime, directories after their contents, symlinks themselves (never followed).
inline void stamp_times(const std::string& root, uint64_t seed = 1) {
  std::mt19937_64 rng(seed);
  auto stamp = [&](int dirfd, const std::string& name) {
    timespec ts[2];
    ts[0].tv_sec = 1000000000 + static_cast<time_t>(rng() % 100000000);
    ts[0].tv_nsec = static_cast<long>(rng() % 1000000000);
    ts[1].tv_sec = 900000000 + static_cast<time_t>(rng() % 100000000);
    ts[1].tv_nsec = static_cast<long>(rng() % 999999998) + 1;  // never a round second
    if (::utimensat(dirfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW) != 0) {
      throw std::runtime_error(errno_text("utimensat " + printable(name)));
    }
  };
  struct stat st;
  if (::lstat(root.c_str(), &st) != 0) throw std::runtime_error(errno_text("lstat " + root));
  if (S_ISDIR(st.st_mode)) {
    Fd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    walk_post_order(fd.get(), [&](int dirfd, const std::string& name, const struct stat&) {
      stamp(dirfd, name);
    });
  }
  stamp(AT_FDCWD, root);
}

// ---------------------------------------------------------------------------------------
// Temporary directories and mounts

class TempDir {
 public:
  explicit TempDir(const std::string& base = "/tmp") {
    std::string tmpl = base + "/barge-itest-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error(errno_text("mkdtemp in " + base));
    path_ = tmpl;
  }
  ~TempDir() {
    std::string parent = path_.substr(0, path_.rfind('/'));
    std::string name = path_.substr(path_.rfind('/') + 1);
    Fd pfd(::open(parent.empty() ? "/" : parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (pfd.valid()) remove_tree_at(pfd.get(), name);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

// A tmpfs mounted for the lifetime of this object; unmounted (lazily if busy) on
// destruction, also when the test failed.
class TmpfsMount {
 public:
  TmpfsMount() = default;
  // `size` may carry more tmpfs options after a comma ("8m,nr_inodes=30"). Returns an
  // empty string on success, else why mounting is impossible.
  std::string mount(const std::string& dir, const std::string& size) {
    std::string opts = "size=" + size + ",mode=0755";
    if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) != 0)
      return errno_text("mount tmpfs on " + dir);
    dir_ = dir;
    return {};
  }
  std::string remount(const std::string& size) {
    std::string opts = "size=" + size;
    if (::mount("tmpfs", dir_.c_str(), "tmpfs", MS_REMOUNT, opts.c_str()) != 0) {
      return errno_text("remount tmpfs " + dir_);
    }
    return {};
  }
  ~TmpfsMount() {
    if (dir_.empty()) return;
    if (::umount2(dir_.c_str(), 0) != 0) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  TmpfsMount(const TmpfsMount&) = delete;
  TmpfsMount& operator=(const TmpfsMount&) = delete;

 private:
  std::string dir_;
};

// ---------------------------------------------------------------------------------------
// Running commands

struct RunResult {
  int rc = -1;  // exit status, or 128+signal
  std::string out;
  std::string err;
};

struct RunOptions {
  std::vector<std::pair<std::string, std::string>> env;  // added or overridden
  std::vector<std::string> unset_env;
  std::optional<uid_t> as_uid;  // drop privileges (uid and gid) before exec
  std::string cwd;
  int timeout_s = 120;
};

inline RunResult run_command(const std::vector<std::string>& argv, const RunOptions& opts = {}) {
  TempDir io_dir;
  std::string out_path = io_dir / "stdout";
  std::string err_path = io_dir / "stderr";
  // Everything the child needs is prepared before fork: only async-signal-safe calls after.
  std::vector<char*> cargv;
  for (const auto& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::vector<std::string> env_storage;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    std::string key = kv.substr(0, kv.find('='));
    bool drop =
        std::find(opts.unset_env.begin(), opts.unset_env.end(), key) != opts.unset_env.end();
    for (const auto& [k, v] : opts.env) drop = drop || k == key;
    if (!drop) env_storage.push_back(kv);
  }
  for (const auto& [k, v] : opts.env) env_storage.push_back(k + "=" + v);
  std::vector<char*> cenv;
  for (auto& s : env_storage) cenv.push_back(s.data());
  cenv.push_back(nullptr);
  int out_fd = ::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int err_fd = ::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  int null_fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (out_fd < 0 || err_fd < 0 || null_fd < 0)
    throw std::runtime_error(errno_text("open capture files"));
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(errno_text("fork"));
  if (pid == 0) {
    ::dup2(null_fd, 0);
    ::dup2(out_fd, 1);
    ::dup2(err_fd, 2);
    if (!opts.cwd.empty() && ::chdir(opts.cwd.c_str()) != 0) ::_exit(126);
    if (opts.as_uid) {
      gid_t gid = static_cast<gid_t>(*opts.as_uid);
      if (::setgroups(0, nullptr) != 0 || ::setresgid(gid, gid, gid) != 0 ||
          ::setresuid(*opts.as_uid, *opts.as_uid, *opts.as_uid) != 0) {
        ::_exit(125);
      }
    }
    ::execve(cargv[0], cargv.data(), cenv.data());
    ::_exit(127);
  }
  ::close(out_fd);
  ::close(err_fd);
  ::close(null_fd);
  int status = 0;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(opts.timeout_s);
  bool killed = false;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) throw std::runtime_error(errno_text("waitpid"));
    if (!killed && std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      killed = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  RunResult res;
  res.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  res.out = read_all(out_path);
  res.err = read_all(err_path);
  if (killed) res.err += "\n[test harness: killed after " + std::to_string(opts.timeout_s) + " s]";
  return res;
}

// BARGE_TEST_BINARY runs the suite against another build (an older main: "fails before").
inline std::string barge_binary() {
  const char* other = std::getenv("BARGE_TEST_BINARY");
  return other && *other ? other : BARGE_BINARY;
}

inline RunResult run_barge(std::vector<std::string> args, const RunOptions& opts = {}) {
  args.insert(args.begin(), barge_binary());
  return run_command(args, opts);
}

inline std::string find_program(const std::string& name) {
  for (const char* dir : {"/usr/bin", "/bin", "/usr/local/bin", "/usr/sbin", "/sbin"}) {
    std::string p = std::string(dir) + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return {};
}

// ---------------------------------------------------------------------------------------
// Independent tree comparison

struct CompareOptions {
  bool check_owner = true;
  bool check_mtime = true;
  size_t max_diffs = 20;
};

class TreeComparer {
 public:
  explicit TreeComparer(CompareOptions opts = {}) : opts_(opts) {}

  // Compares src and dst (both lstat'ed, never followed) and everything below them.
  std::vector<std::string> compare(const std::string& src, const std::string& dst) {
    diffs_.clear();
    compare_entry(AT_FDCWD, src, AT_FDCWD, dst, dst);  // differences are named by their DST path
    return diffs_;
  }

  uint64_t entries_compared() const { return entries_; }

 private:
  void diff(const std::string& where, const std::string& what) {
    if (diffs_.size() < opts_.max_diffs) diffs_.push_back(printable(where, 300) + ": " + what);
  }

  static std::string mode_str(mode_t m) {
    char buf[16];
    std::snprintf(buf, sizeof buf, "%07o", static_cast<unsigned>(m));
    return buf;
  }

  void compare_entry(int sdir, const std::string& sname, int ddir, const std::string& dname,
                     const std::string& where) {
    ++entries_;
    struct stat s, d;
    if (::fstatat(sdir, sname.c_str(), &s, AT_SYMLINK_NOFOLLOW) != 0) {
      diff(where, errno_text("lstat source"));
      return;
    }
    if (::fstatat(ddir, dname.c_str(), &d, AT_SYMLINK_NOFOLLOW) != 0) {
      diff(where, errno_text("lstat destination"));
      return;
    }
    if ((s.st_mode & S_IFMT) != (d.st_mode & S_IFMT)) {
      diff(where, "type differs: " + mode_str(s.st_mode) + " vs " + mode_str(d.st_mode));
      return;
    }
    if (s.st_mode != d.st_mode)
      diff(where, "mode " + mode_str(s.st_mode) + " vs " + mode_str(d.st_mode));
    if (opts_.check_owner && (s.st_uid != d.st_uid || s.st_gid != d.st_gid)) {
      diff(where, "owner " + std::to_string(s.st_uid) + ":" + std::to_string(s.st_gid) + " vs " +
                      std::to_string(d.st_uid) + ":" + std::to_string(d.st_gid));
    }
    if (!S_ISDIR(s.st_mode) && s.st_size != d.st_size) {
      diff(where, "size " + std::to_string(s.st_size) + " vs " + std::to_string(d.st_size));
    }
    if (S_ISCHR(s.st_mode) || S_ISBLK(s.st_mode)) {
      if (s.st_rdev != d.st_rdev) diff(where, "device number differs");
    }
    if (S_ISLNK(s.st_mode)) {
      std::string st = link_target(sdir, sname), dt = link_target(ddir, dname);
      if (st != dt)
        diff(where, "symlink target '" + printable(st) + "' vs '" + printable(dt) + "'");
    } else if (S_ISREG(s.st_mode)) {
      compare_content(sdir, sname, ddir, dname, where);
    } else if (S_ISDIR(s.st_mode)) {
      Fd sfd(::openat(sdir, sname.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      Fd dfd(::openat(ddir, dname.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sfd.valid() || !dfd.valid()) {
        diff(where, "cannot open directory");
      } else {
        std::vector<std::string> sn = list_names(sfd.get()), dn = list_names(dfd.get());
        for (const auto& n : sn) {
          if (!std::binary_search(dn.begin(), dn.end(), n))
            diff(where + "/" + n, "missing in destination");
        }
        for (const auto& n : dn) {
          if (!std::binary_search(sn.begin(), sn.end(), n))
            diff(where + "/" + n, "extra in destination");
        }
        for (const auto& n : sn) {
          if (std::binary_search(dn.begin(), dn.end(), n)) {
            compare_entry(sfd.get(), n, dfd.get(), n, where + "/" + n);
          }
        }
      }
    }
    // Times last: reading contents must not matter (atime is not compared), and the
    // directory's mtime is checked after its contents were listed.
    if (opts_.check_mtime) {
      struct stat d2;
      if (::fstatat(ddir, dname.c_str(), &d2, AT_SYMLINK_NOFOLLOW) == 0 &&
          (s.st_mtim.tv_sec != d2.st_mtim.tv_sec || s.st_mtim.tv_nsec != d2.st_mtim.tv_nsec)) {
        diff(where, "mtime " + std::to_string(s.st_mtim.tv_sec) + "." +
                        std::to_string(s.st_mtim.tv_nsec) + " vs " +
                        std::to_string(d2.st_mtim.tv_sec) + "." +
                        std::to_string(d2.st_mtim.tv_nsec));
      }
    }
  }

  static std::string link_target(int dirfd, const std::string& name) {
    std::string buf(8192, '\0');
    ssize_t n = ::readlinkat(dirfd, name.c_str(), buf.data(), buf.size());
    if (n < 0) return "<readlink failed: " + std::string(std::strerror(errno)) + ">";
    buf.resize(static_cast<size_t>(n));
    return buf;
  }

  void compare_content(int sdir, const std::string& sname, int ddir, const std::string& dname,
                       const std::string& where) {
    Fd sfd(::openat(sdir, sname.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    Fd dfd(::openat(ddir, dname.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (!sfd.valid() || !dfd.valid()) {
      diff(where, "cannot open file to compare content");
      return;
    }
    std::string a = read_fd_all(sfd.get()), b = read_fd_all(dfd.get());
    if (a != b) {
      size_t i = 0;
      while (i < a.size() && i < b.size() && a[i] == b[i]) ++i;
      diff(where, "content differs from byte " + std::to_string(i) + " (sizes " +
                      std::to_string(a.size()) + " and " + std::to_string(b.size()) + ")");
    }
  }

  CompareOptions opts_;
  std::vector<std::string> diffs_;
  uint64_t entries_ = 0;
};

inline std::string join_lines(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += "  " + s + "\n";
  return out;
}

// Names of every entry below `root` starting with ".barge-tmp." (relative paths).
inline std::vector<std::string> find_temp_files(const std::string& root) {
  std::vector<std::string> found;
  struct Rec {
    std::vector<std::string>& found;
    void operator()(int dirfd, const std::string& rel) {
      for (const std::string& n : list_names(dirfd)) {
        std::string path = rel.empty() ? n : rel + "/" + n;
        if (n.rfind(".barge-tmp.", 0) == 0) found.push_back(printable(path));
        struct stat st;
        if (::fstatat(dirfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode)) {
          int fd = ::openat(dirfd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
          if (fd >= 0) {
            Fd owned(fd);
            (*this)(fd, path);
          }
        }
      }
    }
  };
  Fd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.valid()) Rec{found}(fd.get(), "");
  return found;
}

// Regular files below `root` (relative path → size), walked without following links.
// Part files of large files (".barge-part.*", kept by a stopped run for --resume) are not
// files under a final name and are left out.
inline std::map<std::string, uint64_t> regular_files(const std::string& root) {
  std::map<std::string, uint64_t> out;
  struct Rec {
    std::map<std::string, uint64_t>& out;
    void operator()(int dirfd, const std::string& rel) {
      for (const std::string& n : list_names(dirfd)) {
        std::string path = rel.empty() ? n : rel + "/" + n;
        struct stat st;
        if (::fstatat(dirfd, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (S_ISREG(st.st_mode) && n.rfind(".barge-part.", 0) != 0)
          out[path] = static_cast<uint64_t>(st.st_size);
        if (S_ISDIR(st.st_mode)) {
          int fd = ::openat(dirfd, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
          if (fd >= 0) {
            Fd owned(fd);
            (*this)(fd, path);
          }
        }
      }
    }
  };
  Fd fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.valid()) Rec{out}(fd.get(), "");
  return out;
}

inline bool is_tmpfs(const std::string& path) {
  struct statfs sf;
  if (::statfs(path.c_str(), &sf) != 0) return false;
  return sf.f_type == 0x01021994;  // TMPFS_MAGIC
}

// A directory on a filesystem where O_DIRECT really works (not tmpfs), or "".
inline std::string find_direct_io_base() {
  for (const char* base : {"/var/tmp", "/work", "/tmp"}) {
    struct stat st;
    if (::stat(base, &st) != 0 || !S_ISDIR(st.st_mode) || is_tmpfs(base)) continue;
    std::string probe =
        std::string(base) + "/.barge-itest-direct-probe-" + std::to_string(::getpid());
    int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_DIRECT | O_CLOEXEC, 0600);
    if (fd < 0) continue;
    ::close(fd);
    ::unlink(probe.c_str());
    return base;
  }
  return {};
}

}  // namespace barge::itest
