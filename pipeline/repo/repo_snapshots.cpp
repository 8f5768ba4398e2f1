// A repository's snapshots (list, load, resolve, save, remove) and its packs as files (list,
// the ones snapshots reference, removing the rest).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "pipeline/repo/repo_files.hpp"
#include "pipeline/repo/repository.hpp"

namespace barge::pipeline::repo {

using detail::fsync_dir;
using detail::starts_with;

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

}  // namespace barge::pipeline::repo
