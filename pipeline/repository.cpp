#include "pipeline/repository.hpp"

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
#include <fstream>
#include <sstream>

#include "pipeline/compress.hpp"

namespace barge::pipeline::repo {
namespace {

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string hostname() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
}

io::Result<std::string> read_whole(const std::string& path) {
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

io::Status write_all(int fd, const char* p, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return io::Error::from_errno(errno, "write " + path);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return io::Status::success();
}

io::Status fsync_dir(const std::string& dir) {
  io::UniqueFd fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid() || ::fsync(fd.get()) != 0) return io::Error::from_errno(errno, "sync " + dir);
  return io::Status::success();
}

// Writes `bytes` to dir/name through a temporary file, fsync'd, renamed, dir fsync'd.
io::Status write_atomic(const std::string& dir, const std::string& name, const std::string& bytes) {
  std::string tmp = dir + "/.tmp-" + name + "-" + random_hex128().substr(0, 8);
  std::string final_path = dir + "/" + name;
  io::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd.valid()) return io::Error::from_errno(errno, "create " + tmp);
  io::Status st = write_all(fd.get(), bytes.data(), bytes.size(), tmp);
  if (st && ::fsync(fd.get()) != 0) st = io::Error::from_errno(errno, "sync " + tmp);
  if (st) st = fd.close();
  if (st && ::rename(tmp.c_str(), final_path.c_str()) != 0)
    st = io::Error::from_errno(errno, "rename " + final_path);
  if (!st) {
    ::unlink(tmp.c_str());
    return st;
  }
  return fsync_dir(dir);
}

io::Status make_dir(const std::string& path) {
  if (::mkdir(path.c_str(), 0755) != 0 && errno != EEXIST)
    return io::Error::from_errno(errno, "create directory " + path);
  return io::Status::success();
}

}  // namespace

io::Result<Repository> Repository::open(const std::string& path, bool create,
                                        uint32_t chunk_bytes) {
  Repository r;
  r.path_ = path;
  while (r.path_.size() > 1 && r.path_.back() == '/') r.path_.pop_back();
  std::string config_path = r.path_ + "/config";
  struct stat st;
  if (::stat(config_path.c_str(), &st) != 0) {
    int err = errno;
    if (err != ENOENT || !create) {
      if (err == ENOENT) return io::Error::plain(path + ": not a barge repository (no config)");
      return io::Error::from_errno(err, "open repository " + path);
    }
    // New repository: an absent or empty directory.
    if (::mkdir(r.path_.c_str(), 0700) != 0 && errno != EEXIST)
      return io::Error::from_errno(errno, "create repository " + path);
    if (DIR* d = ::opendir(r.path_.c_str())) {
      bool empty = true;
      while (dirent* de = ::readdir(d)) {
        std::string n = de->d_name;
        if (n != "." && n != ".." && n != "lock") empty = false;
      }
      ::closedir(d);
      if (!empty)
        return io::Error::plain(path +
                                ": not a barge repository and not empty (refusing to use it)");
    } else {
      return io::Error::from_errno(errno, "open repository " + path);
    }
    for (const char* sub : {"/packs", "/snapshots"}) {
      if (auto s = make_dir(r.path_ + sub); !s) return s.error();
    }
    Config c;
    c.repo_id = random_hex128();
    c.chunk_bytes = chunk_bytes;
    c.created_ns = now_ns();
    if (auto s = write_atomic(r.path_, "config", encode_config(c)); !s) return s.error();
  }
  auto bytes = read_whole(config_path);
  if (!bytes) return bytes.error();
  auto config = decode_config(*bytes);
  if (!config) return io::Error::plain(config_path + ": " + config.error().message);
  r.config_ = *config;
  return r;
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
  auto bytes = read_whole(p);
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
  for (const std::string& id : *ids)
    if (id.compare(0, which.size(), which) == 0) hits.push_back(id);
  if (hits.size() == 1) return hits.front();
  if (hits.empty())
    return io::Error::plain("--snapshot " + which + ": no such snapshot in " + path_);
  return io::Error::plain("--snapshot " + which + ": matches " + std::to_string(hits.size()) +
                          " snapshots; give more of the id");
}

io::Status Repository::save_snapshot(const Snapshot& s) const {
  return write_atomic(path_ + "/snapshots", s.id + ".snap", encode_snapshot(s));
}

io::Status Repository::remove_snapshot(const std::string& id) const {
  std::string p = path_ + "/snapshots/" + id + ".snap";
  if (::unlink(p.c_str()) != 0) return io::Error::from_errno(errno, "remove " + p);
  return fsync_dir(path_ + "/snapshots");
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

// RepoLock -------------------------------------------------------------------------------

io::Result<RepoLock> RepoLock::acquire(const std::string& repo_path, const std::string& command) {
  std::string path = repo_path + "/lock";
  std::string me = hostname();
  for (int attempt = 0; attempt < 2; ++attempt) {
    io::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
    if (fd.valid()) {
      std::ostringstream line;
      line << me << ' ' << ::getpid() << ' ' << now_ns() / 1000000000 << ' ' << command << '\n';
      std::string text = line.str();
      if (auto st = write_all(fd.get(), text.data(), text.size(), path); !st) {
        ::unlink(path.c_str());
        return st.error();
      }
      RepoLock lock;
      lock.path_ = path;
      return lock;
    }
    if (errno != EEXIST) return io::Error::from_errno(errno, "create " + path);
    auto text = read_whole(path);
    std::string host, what;
    long long pid = 0, since = 0;
    if (text) {
      std::istringstream in(*text);
      in >> host >> pid >> since >> what;
    }
    bool stale =
        text && host == me && pid > 0 && ::kill(static_cast<pid_t>(pid), 0) != 0 && errno == ESRCH;
    if (!stale) {
      return io::Error::plain(repo_path + ": locked by " +
                              (text ? (what.empty() ? "another run" : "barge " + what) + " on " +
                                          host + " (pid " + std::to_string(pid) + ")"
                                    : std::string("another run")) +
                              "; if that process is gone, remove " + path);
    }
    ::unlink(path.c_str());  // stale: its owner is gone; take it over
  }
  return io::Error::plain(repo_path + ": could not take the lock " + path);
}

RepoLock& RepoLock::operator=(RepoLock&& o) noexcept {
  if (this != &o) {
    release();
    path_ = std::move(o.path_);
    o.path_.clear();
  }
  return *this;
}

void RepoLock::release() {
  if (!path_.empty()) ::unlink(path_.c_str());
  path_.clear();
}

// PackWriter ------------------------------------------------------------------------------

PackWriter::PackWriter(const Repository& repo, uint64_t pack_target_bytes)
    : repo_(repo), target_bytes_(pack_target_bytes) {}

PackWriter::~PackWriter() = default;

io::Status PackWriter::open_new_pack() {
  Pack p;
  p.name = random_hex128();
  std::string dir = repo_.path() + "/packs/" + p.name.substr(0, 2);
  if (auto st = make_dir(dir); !st) return st;
  std::string path = repo_.pack_path(p.name);
  p.fd.reset(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!p.fd.valid()) return io::Error::from_errno(errno, "create " + path);
  std::string header = encode_pack_header(p.name);
  if (auto st = write_all(p.fd.get(), header.data(), header.size(), path); !st) return st;
  p.size = header.size();
  packs_.push_back(std::move(p));
  return io::Status::success();
}

io::Result<PackWriter::Stored> PackWriter::append(const BlobHeader& h,
                                                  std::span<const std::byte> stored) {
  std::byte header[kBlobHeaderBytes];
  encode_blob_header(h, std::span<std::byte, kBlobHeaderBytes>(header));
  int fd = -1;
  Stored where;
  {
    std::lock_guard lock(mu_);
    if (packs_.empty() || packs_.back().size >= target_bytes_) {
      // Start writing the full pack back now, so that finish() has little left to wait for.
      if (!packs_.empty()) ::sync_file_range(packs_.back().fd.get(), 0, 0, SYNC_FILE_RANGE_WRITE);
      if (auto st = open_new_pack(); !st) return st.error();
    }
    Pack& p = packs_.back();
    fd = p.fd.get();
    where.pack = p.name;
    where.pack_offset = p.size;
    p.size += kBlobHeaderBytes + stored.size();
    bytes_written_ += kBlobHeaderBytes + stored.size();
  }
  iovec iov[2] = {{header, kBlobHeaderBytes},
                  {const_cast<std::byte*>(stored.data()), stored.size()}};
  size_t want = kBlobHeaderBytes + stored.size();
  size_t done = 0;
  while (done < want) {
    // pwritev at the reserved offset; a short write continues where it stopped.
    iovec rest[2];
    int n = 0;
    size_t skip = done;
    for (const iovec& v : iov) {
      if (skip >= v.iov_len) {
        skip -= v.iov_len;
        continue;
      }
      rest[n++] = {static_cast<char*>(v.iov_base) + skip, v.iov_len - skip};
      skip = 0;
    }
    ssize_t w = ::pwritev(fd, rest, n, static_cast<off_t>(where.pack_offset + done));
    if (w < 0) {
      if (errno == EINTR) continue;
      return io::Error::from_errno(errno, "write " + repo_.pack_path(where.pack));
    }
    done += static_cast<size_t>(w);
  }
  return where;
}

io::Status PackWriter::finish() {
  std::lock_guard lock(mu_);
  std::vector<std::string> dirs;
  for (Pack& p : packs_) {
    if (!p.fd.valid()) continue;
    if (::fdatasync(p.fd.get()) != 0)
      return io::Error::from_errno(errno, "sync " + repo_.pack_path(p.name));
    if (auto st = p.fd.close(); !st)
      return io::Error::plain(repo_.pack_path(p.name) + ": " + st.error().message);
    dirs.push_back(repo_.path() + "/packs/" + p.name.substr(0, 2));
  }
  std::sort(dirs.begin(), dirs.end());
  dirs.erase(std::unique(dirs.begin(), dirs.end()), dirs.end());
  for (const std::string& d : dirs)
    if (auto st = fsync_dir(d); !st) return st;
  if (!dirs.empty()) return fsync_dir(repo_.path() + "/packs");
  return io::Status::success();
}

uint64_t PackWriter::bytes_written() const {
  std::lock_guard lock(mu_);
  return bytes_written_;
}

io::Status read_blob(int pack_fd, const BlobRef& ref, std::span<std::byte> out,
                     std::vector<std::byte>& scratch) {
  size_t want = kBlobHeaderBytes + ref.stored_bytes;
  scratch.resize(want);
  size_t done = 0;
  while (done < want) {
    ssize_t n = ::pread(pack_fd, scratch.data() + done, want - done,
                        static_cast<off_t>(ref.pack_offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io::Error::from_errno(errno, "read");
    }
    if (n == 0) return io::Error::plain("pack truncated");
    done += static_cast<size_t>(n);
  }
  auto h = decode_blob_header(std::span<const std::byte>(scratch.data(), kBlobHeaderBytes));
  if (!h) return h.error();
  if (h->raw_bytes != ref.raw_bytes || h->stored_bytes != ref.stored_bytes ||
      h->codec != ref.codec || !(h->hash == ref.hash))
    return io::Error::plain("blob header does not match the manifest");
  if (out.size() < ref.raw_bytes) return io::Error::plain("blob larger than its buffer");
  std::span<const std::byte> stored(scratch.data() + kBlobHeaderBytes, ref.stored_bytes);
  if (ref.codec == Codec::kRaw) {
    std::memcpy(out.data(), stored.data(), ref.raw_bytes);
    if (!(hash_bytes(out.first(ref.raw_bytes)) == ref.hash))
      return io::Error::plain("checksum mismatch");
    return io::Status::success();
  }
  auto n = DecompressStage{}(stored, out, ref.raw_bytes, ref.hash);
  if (!n) return n.error();
  return io::Status::success();
}

}  // namespace barge::pipeline::repo
