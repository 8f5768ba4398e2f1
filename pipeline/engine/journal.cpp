#include "pipeline/engine/journal.hpp"

#include "io/full_io.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "io/path_ops.hpp"
#include "pipeline/core/hash.hpp"

namespace barge::pipeline {

std::string Journal::dir_for(const std::string& destination) {
  std::string dst = destination;
  while (dst.size() > 1 && dst.back() == '/') dst.pop_back();
  std::string parent(io::parent_of(dst));
  return io::join_path(parent.empty() ? "." : parent,
                       ".barge-journal." + std::string(io::base_name(dst)));
}

io::Result<std::unique_ptr<Journal>> Journal::open(const std::string& dir, int rank) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return io::Error::from_errno(errno, "create journal " + dir);
  std::string path = dir + "/rank-" + std::to_string(rank) + ".log";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return io::Error::from_errno(errno, "open journal " + path);
  return std::unique_ptr<Journal>(new Journal(dir, io::UniqueFd(fd)));
}

void Journal::record(const std::string& part, uint32_t chunk, int part_fd) {
  std::lock_guard lock(mu_);
  pending_ += part;
  pending_ += ' ';
  pending_ += std::to_string(chunk);
  pending_ += '\n';
  if (std::find(dirty_fds_.begin(), dirty_fds_.end(), part_fd) == dirty_fds_.end())
    dirty_fds_.push_back(part_fd);
}

io::Status Journal::flush() {
  std::string lines;
  std::vector<int> fds;
  {
    std::lock_guard lock(mu_);
    lines.swap(pending_);
    fds.swap(dirty_fds_);
  }
  if (lines.empty()) return io::Status::success();
  // The data first: a journal line must never point at bytes still only in memory. A part
  // closed since it was recorded has been synced by its writer (EBADF is fine).
  for (int fd : fds) {
    if (::fdatasync(fd) != 0 && errno != EBADF && errno != EINVAL)
      return io::Error::from_errno(errno, "sync part file");
  }
  if (auto st = io::write_full(log_.get(), lines.data(), lines.size(), io::kAtPosition,
                               "write journal in " + dir_);
      !st)
    return st;
  if (::fdatasync(log_.get()) != 0) return io::Error::from_errno(errno, "sync journal in " + dir_);
  return io::Status::success();
}

JournalState Journal::load(const std::string& dir) {
  JournalState state;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return state;
  while (dirent* de = ::readdir(d)) {
    std::string name = de->d_name;
    if (name.rfind("rank-", 0) != 0) continue;
    std::string path = dir + "/" + name;
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) continue;
    std::string text;
    char buf[65536];
    ssize_t n;
    while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
    ::close(fd);
    state = parse(text, std::move(state));
  }
  ::closedir(d);
  return state;
}

void Journal::remove(const std::string& dir) {
  DIR* d = ::opendir(dir.c_str());
  if (!d) return;
  std::vector<std::string> names;
  while (dirent* de = ::readdir(d)) {
    std::string name = de->d_name;
    if (name.rfind("rank-", 0) == 0 || name == "roots" || name == "roots.tmp")
      names.push_back(name);
  }
  ::closedir(d);
  for (const auto& n : names) ::unlink((dir + "/" + n).c_str());
  ::rmdir(dir.c_str());
}

io::Status Journal::save_roots(const std::string& dir, const std::vector<Root>& roots) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return io::Error::from_errno(errno, "create journal " + dir);
  std::string text;
  for (const Root& r : roots) {
    for (const std::string* s : {&r.src, &r.dst, &r.manifest_prefix}) {
      text += *s;
      text += '\0';
    }
  }
  std::string tmp = dir + "/roots.tmp", path = dir + "/roots";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return io::Error::from_errno(errno, "write " + tmp);
  bool ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size()) &&
            ::fdatasync(fd) == 0;
  ::close(fd);
  if (!ok || ::rename(tmp.c_str(), path.c_str()) != 0)
    return io::Error::from_errno(errno, "write " + path);
  return io::Status::success();
}

std::optional<std::vector<Root>> Journal::load_roots(const std::string& dir) {
  int fd = ::open((dir + "/roots").c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return std::nullopt;
  std::string text;
  char buf[65536];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) text.append(buf, static_cast<size_t>(n));
  ::close(fd);
  return parse_roots(text);
}

std::optional<std::vector<Root>> Journal::resume_roots(const std::string& dir,
                                                       const std::vector<std::string>& sources,
                                                       const std::string& destination) {
  auto saved = load_roots(dir);
  if (!saved || saved->size() != sources.size()) return std::nullopt;
  std::string dst = destination;
  while (dst.size() > 1 && dst.back() == '/') dst.pop_back();
  for (size_t i = 0; i < saved->size(); ++i) {
    const Root& r = (*saved)[i];
    if (io::base_name(r.src) != io::base_name(sources[i])) return std::nullopt;
    const std::string_view name = io::base_name(r.dst);
    const bool in_dst = r.dst == dst || (io::parent_of(r.dst) == dst && name != "." &&
                                         name != ".." && !name.empty());
    if (!in_dst) return std::nullopt;
  }
  return saved;
}

std::string part_name(const Entry& e, uint64_t chunk_bytes) {
  std::string key = e.rel;
  key += '\0';
  key += std::to_string(e.root) + ' ' + std::to_string(e.meta.size_bytes) + ' ' +
         std::to_string(e.meta.mtime.tv_sec) + ' ' + std::to_string(e.meta.mtime.tv_nsec) + ' ' +
         std::to_string(e.meta.inode) + ' ' + std::to_string(chunk_bytes);
  Hash128 h = hash_bytes(std::as_bytes(std::span(key.data(), key.size())));
  char buf[40];
  std::snprintf(buf, sizeof buf, ".barge-part.%016llx", static_cast<unsigned long long>(h.low));
  return buf;
}

}  // namespace barge::pipeline
