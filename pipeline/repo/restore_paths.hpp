// Restore's path and descriptor helpers: parent directories opened beneath DST without
// following any symlink, packs opened once, --path selection, DST's trailing-slash rule.
#pragma once

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "io/unique_fd.hpp"
#include "pipeline/repo/repository.hpp"

namespace barge::pipeline::restore {

std::string parent_of(const std::string& path);  // "" for a name at the top
std::string name_of(const std::string& path);

// Opens directory `rel` beneath `root_fd` without following any symlink on the way.
int open_beneath(int root_fd, const std::string& rel);

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
std::vector<std::pair<size_t, size_t>> write_ranges(std::span<const std::byte> raw, bool sparse);

// DST as given, trailing slashes removed; follow: named "DST/", so a symlink there is
// followed to the directory it points to.
struct Destination {
  std::string path;
  bool follow = false;
};
Destination destination_of(const std::string& given);

// --path, normalized: no leading or trailing slashes.
std::vector<std::string> wanted_paths(const std::vector<std::string>& given);
// Whether `path` is restored by these --path choices (empty: everything).
bool selected_by(const std::string& path, const std::vector<std::string>& wanted);

}  // namespace barge::pipeline::restore
