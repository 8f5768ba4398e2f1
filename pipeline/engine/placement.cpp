#include "pipeline/engine/placement.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>

#include "io/path_ops.hpp"
#include "pipeline/engine/journal.hpp"

namespace barge::pipeline {
namespace {

std::string strip_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

std::string record_path(const std::string& destination) {
  return Journal::dir_for(destination) + "/placement";
}

enum class RecordState { kNone, kValid, kGarbled };

RecordState read_record(const std::string& path, PlacementRecord& record) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return errno == ENOENT ? RecordState::kNone : RecordState::kGarbled;
  std::string text;
  char buf[8192];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0 && text.size() < 2 * PATH_MAX)
    text.append(buf, static_cast<size_t>(n));
  ::close(fd);
  auto parsed = n < 0 ? std::nullopt : parse_placement_record(text);
  if (!parsed) return RecordState::kGarbled;
  record = std::move(*parsed);
  return RecordState::kValid;
}

// Birth time of `path` in ns, 0 where the file system keeps none.
uint64_t birth_ns(const std::string& path) {
  struct statx sx;
  if (::statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, STATX_BTIME, &sx) != 0 ||
      !(sx.stx_mask & STATX_BTIME))
    return 0;
  return static_cast<uint64_t>(sx.stx_btime.tv_sec) * 1000000000u + sx.stx_btime.tv_nsec;
}

std::optional<std::string> canonical(const std::string& path) {
  char buf[PATH_MAX];
  if (!::realpath(path.c_str(), buf)) return std::nullopt;
  return std::string(buf);
}

}  // namespace

namespace {

// Writes `text` to `path` durably (temporary, fdatasync, rename, then the directory and its
// parent synced): a crash leaves the old record or the new one.
io::Status write_record(const std::string& path, const std::string& text) {
  std::string tmp = path + ".tmp";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) return io::Error::from_errno(errno, "write placement record " + tmp);
  ssize_t n = ::write(fd, text.data(), text.size());
  int err = n == static_cast<ssize_t>(text.size()) ? 0 : (n < 0 ? errno : EIO);
  if (err == 0 && ::fdatasync(fd) != 0) err = errno;
  ::close(fd);
  if (err == 0 && ::rename(tmp.c_str(), path.c_str()) != 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    return io::Error::from_errno(err, "write placement record " + path);
  }
  std::string dir(io::parent_of(path));
  std::string parent(io::parent_of(dir));
  for (const std::string& d : {dir, parent.empty() ? std::string(".") : parent}) {
    int dfd = ::open(d.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0 || ::fsync(dfd) != 0) {
      int e = errno;
      if (dfd >= 0) ::close(dfd);
      return io::Error::from_errno(e, "sync " + d + " (placement record)");
    }
    ::close(dfd);
  }
  return io::Status::success();
}

}  // namespace

std::optional<PlacementRecord> load_placement_record(const std::string& destination) {
  PlacementRecord r;
  if (read_record(record_path(destination), r) != RecordState::kValid) return std::nullopt;
  return r;
}

io::Result<Placement> resolve_placement(const std::vector<std::string>& sources,
                                        const std::string& destination) {
  Placement p;
  // Only one named source directory makes cp's rule depend on whether DST exists.
  bool one_named_dir = false;
  std::string src;
  if (sources.size() == 1 && !sources[0].empty()) {
    src = strip_trailing_slashes(sources[0]);
    std::string_view base = io::base_name(src);
    // As resolve_roots: a symlink is the link itself, unless named "LINK/".
    struct stat st;
    const bool follow = sources[0].back() == '/';
    one_named_dir = base != "." && base != ".." && base != "/" &&
                    (follow ? ::stat(sources[0].c_str(), &st) : ::lstat(src.c_str(), &st)) == 0 &&
                    S_ISDIR(st.st_mode);
  }
  std::string dst = strip_trailing_slashes(destination);
  struct stat dst_st;
  bool dst_exists = !dst.empty() && ::lstat(dst.c_str(), &dst_st) == 0;

  if (one_named_dir && dst_exists && S_ISDIR(dst_st.st_mode)) {
    PlacementRecord rec;
    std::string path = record_path(destination);
    RecordState state = read_record(path, rec);
    const std::string& recorded = rec.src;
    if (state == RecordState::kValid && rec.has_dst &&
        (rec.dst_device != static_cast<uint64_t>(dst_st.st_dev) ||
         rec.dst_inode != static_cast<uint64_t>(dst_st.st_ino) ||
         rec.dst_birth_ns != birth_ns(dst))) {
      // The record is of a DST that was removed; this one was made otherwise: cp's rule.
      state = RecordState::kNone;
      p.record = Placement::Record::kDrop;
    }
    if (state == RecordState::kGarbled) {
      return io::Error::plain("placement record " + path + " is unreadable, so whether " + dst +
                              " is the copy of " + src +
                              " or should receive it cannot be told; remove the record to copy "
                              "into " +
                              dst + " (cp's rule), or name " + src +
                              "/. to complete the copy in place");
    }
    if (state == RecordState::kValid) {
      auto csrc = canonical(src);
      if (csrc && *csrc == recorded) {
        // The copy this record describes: resolve it as SRC/. (contents into DST itself;
        // "SRC/." also keeps a LINK/ source followed).
        auto roots = resolve_roots({src + "/."}, destination);
        if (!roots) return roots.error();
        p.roots = std::move(roots.value());
        p.honoured = true;
        p.note = dst + " was created by an earlier run as the copy of " + src +
                 ": completing it in place (record: " + path + ")";
        return p;
      }
      if (io::base_name(recorded) == io::base_name(src)) {
        return io::Error::plain(
            dst + " was created by an earlier run as the copy of " + recorded + ", not of " +
            (csrc ? *csrc : src) + "; cannot tell whether to complete it or copy into it: name " +
            src + "/. to copy the contents into " + dst + ", or " +
            io::join_path(dst, io::base_name(src)) + " to copy it inside (record: " + path + ")");
      }
    }
  }
  auto roots = resolve_roots(sources, destination);
  if (!roots) return roots.error();
  p.roots = std::move(roots.value());
  if (!dst_exists) {
    if (one_named_dir) {
      auto csrc = canonical(src);
      if (!csrc) return io::Error::from_errno(errno, "source " + src);
      p.record = Placement::Record::kWrite;
      p.record_src = *csrc;
    } else {
      // Whatever a record beside a missing DST said, it described a tree that is gone.
      p.record = Placement::Record::kDrop;
    }
  }
  return p;
}

io::Status apply_placement_record(const Placement& placement, const std::string& destination) {
  std::string path = record_path(destination);
  if (placement.record == Placement::Record::kKeep) return io::Status::success();
  if (placement.record == Placement::Record::kDrop) {
    if (::unlink(path.c_str()) != 0 && errno != ENOENT)
      return io::Error::from_errno(errno, "remove stale placement record " + path);
    return io::Status::success();
  }
  std::string dir = Journal::dir_for(destination);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return io::Error::from_errno(errno, "create " + dir + " (placement record)");
  // Record, then DST (so a crash in between still leaves a record), then the record with
  // DST's identity (so a DST made again by hand later is not taken for this one).
  PlacementRecord rec{placement.record_src};
  if (auto st = write_record(path, format_placement_record(rec)); !st) return st;
  std::string dst = destination;
  while (dst.size() > 1 && dst.back() == '/') dst.pop_back();
  if (::mkdir(dst.c_str(), 0700) != 0 && errno != EEXIST)
    return io::Error::from_errno(errno, "create destination " + dst);
  struct stat st;
  if (::lstat(dst.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return io::Error::plain("destination " + dst + ": not a directory after creating it");
  rec.has_dst = true;
  rec.dst_device = static_cast<uint64_t>(st.st_dev);
  rec.dst_inode = static_cast<uint64_t>(st.st_ino);
  rec.dst_birth_ns = birth_ns(dst);
  return write_record(path, format_placement_record(rec));
}

io::Status check_sync_destination(const std::string& dst) {
  struct stat st;
  if (::stat(dst.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode)) return io::Error::plain("destination " + dst + ": not a directory");
  } else if (errno != ENOENT) {
    return io::Error::from_errno(errno, "destination " + dst);
  } else {
    std::string parent(io::parent_of(dst));
    if (::stat(parent.empty() ? "." : parent.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
      return io::Error::plain("destination " + dst + ": parent directory does not exist");
  }
  return io::Status::success();
}

io::Result<std::vector<Root>> resolve_sync_root(const std::vector<std::string>& sources,
                                                const std::string& dst_arg) {
  if (sources.size() != 1)
    return io::Error::plain("sync: need exactly one SRC directory and a DST");
  std::string src = sources[0];
  while (src.size() > 1 && src.back() == '/') src.pop_back();
  std::string dst = dst_arg;
  while (dst.size() > 1 && dst.back() == '/') dst.pop_back();
  struct stat st;
  if (::stat(src.c_str(), &st) != 0) return io::Error::from_errno(errno, "source " + src);
  if (!S_ISDIR(st.st_mode))
    return io::Error::plain("source " + src + ": not a directory (sync mirrors directories)");
  int fd = ::open(src.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return io::Error::from_errno(errno, "source " + src);
  ::close(fd);
  if (auto ok = check_sync_destination(dst); !ok) return ok.error();
  char a[PATH_MAX], b[PATH_MAX];
  std::string csrc = ::realpath(src.c_str(), a) ? a : src;
  std::string dparent(io::parent_of(dst));
  std::string cdst = ::realpath(dst.c_str(), b) ? std::string(b)
                     : ::realpath(dparent.empty() ? "." : dparent.c_str(), b)
                         ? io::join_path(b, io::base_name(dst))
                         : dst;
  auto inside = [](const std::string& in, const std::string& out) {
    return in == out ||
           (in.size() > out.size() && in.compare(0, out.size(), out) == 0 && in[out.size()] == '/');
  };
  if (inside(cdst, csrc) || inside(csrc, cdst)) {
    return io::Error::plain("sync: " + src + " and " + dst + " overlap (one is inside the other)");
  }
  // The source directory itself maps onto DST (its contents are mirrored).
  return std::vector<Root>{Root{src + "/.", dst, ""}};
}

}  // namespace barge::pipeline
