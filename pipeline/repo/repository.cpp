// A repository opened or created: its config and copy, the small-file helpers (read, atomic
// write, link without replacing). Snapshots and packs listed: repo_snapshots.cpp; REPO/lock
// and REPO/sweep: repo_lock.cpp; packs and their stages: packs.cpp.
#include "pipeline/repo/repository.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <optional>

#include "io/full_io.hpp"
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

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

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

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace detail

namespace {

using detail::fsync_dir;
using detail::make_dir;
using detail::now_ns;
using detail::starts_with;
using detail::write_all;
using detail::write_temp;

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

}  // namespace barge::pipeline::repo
