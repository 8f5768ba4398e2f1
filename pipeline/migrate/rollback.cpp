// migrate rollback: passes undone from the last back, each from its keep (keep.hpp).
#include <fcntl.h>
#include <sys/stat.h>
#include <tbb/global_control.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <unordered_map>

#include "io/path_ops.hpp"
#include "pipeline/core/plan.hpp"
#include "pipeline/migrate/keep.hpp"

namespace barge::pipeline::migrate {

namespace fs = std::filesystem;

namespace {

std::string at(const State& s, const std::string& rel) {
  return rel.empty() ? s.dst : io::join_path(s.dst, rel);
}

// Puts name `path` on the kept inode `from` (replacing what is there).
io::Status relink(const std::string& from, const std::string& path) {
  const std::string tmp = path + ".barge-rollback";
  ::unlink(tmp.c_str());
  if (::link(from.c_str(), tmp.c_str()) != 0)
    return io::Error::from_errno(errno, "rollback: link " + from + " to " + path);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    return io::Error::from_errno(err, "rollback: rename into " + path);
  }
  return io::Status::success();
}

// One entry of the index back in DST: nothing when it is there as it was.
io::Status restore(const State& s, const std::string& k, const KeptEntry& e, RollbackResult& r) {
  const std::string path = at(s, e.rel);
  struct stat st;
  const bool exists = ::lstat(path.c_str(), &st) == 0;
  switch (e.meta.type) {
    case io::FileType::kDirectory:
      if (exists) return io::Status::success();
      ++r.restored;
      if (::mkdir(path.c_str(), 0700) != 0) return io::Error::from_errno(errno, "mkdir " + path);
      return io::Status::success();
    case io::FileType::kRegular:
      if (exists && st.st_ino == e.meta.inode) return io::Status::success();
      ++r.restored;
      return relink(k + "/files/" + std::to_string(e.meta.inode), path);
    case io::FileType::kSymlink: {
      if (exists && S_ISLNK(st.st_mode)) {
        auto t = io::read_link(AT_FDCWD, path.c_str());
        if (t && t.value() == e.link_target) return io::Status::success();
      }
      ++r.restored;
      if (exists) ::unlink(path.c_str());
      if (::symlink(e.link_target.c_str(), path.c_str()) != 0)
        return io::Error::from_errno(errno, "symlink " + path);
      return io::Status::success();
    }
    default: {
      const mode_t type = e.meta.type == io::FileType::kFifo          ? S_IFIFO
                          : e.meta.type == io::FileType::kCharDevice  ? S_IFCHR
                          : e.meta.type == io::FileType::kBlockDevice ? S_IFBLK
                                                                      : S_IFSOCK;
      if (exists && (st.st_mode & S_IFMT) == type && st.st_rdev == e.meta.rdev)
        return io::Status::success();
      ++r.restored;
      if (exists) ::unlink(path.c_str());
      if (::mknod(path.c_str(), type | 0600, static_cast<dev_t>(e.meta.rdev)) != 0)
        return io::Error::from_errno(errno, "mknod " + path);
      return io::Status::success();
    }
  }
}

// DST back to keep/pass-N's index.
io::Status undo_pass(const State& s, unsigned pass, unsigned threads, RollbackResult& r) {
  const std::string k = keep_dir(s, pass);
  auto bytes = read_file(k + "/index");
  if (!bytes) return bytes.error();
  auto idx = decode_index(bytes.value());
  if (!idx) return io::Error::plain(k + "/index: " + idx.error().message);
  std::unordered_map<std::string, const KeptEntry*> by_rel;
  for (const KeptEntry& e : idx.value()) by_rel[e.rel] = &e;
  // What the pass (or a later one) added, or made of another type: removed, subtrees whole.
  Plan now = walk_roots({Root{s.dst, "", ""}}, threads);
  for (const Entry& e : now.entries) {
    auto it = by_rel.find(e.rel);
    if (it != by_rel.end() && it->second->meta.type == e.meta.type) continue;
    std::error_code ec;
    if (!fs::exists(fs::symlink_status(at(s, e.rel), ec))) continue;  // went with its parent
    ++r.removed;
    fs::remove_all(at(s, e.rel), ec);
    if (ec) return io::Error::plain("rollback: remove " + at(s, e.rel) + ": " + ec.message());
  }
  for (const KeptEntry& e : idx.value())  // pre-order: a directory before its contents
    if (auto st = restore(s, k, e, r); !st) return st;
  const bool owner = io::can_chown();
  for (auto it = idx.value().rbegin(); it != idx.value().rend(); ++it)  // directories last
    if (auto st = io::apply_meta_path(AT_FDCWD, at(s, it->rel).c_str(), it->meta, owner); !st)
      return st;
  // The manifest as it was before the pass.
  const std::string kept_manifest = k + "/manifest";
  if (::access(kept_manifest.c_str(), F_OK) == 0) {
    auto m = read_file(kept_manifest);
    if (!m) return m.error();
    if (auto st = write_file_atomic(s.dir + "/manifest", m.value()); !st) return st;
  } else {
    ::unlink((s.dir + "/manifest").c_str());
  }
  return io::Status::success();
}

}  // namespace

io::Result<RollbackResult> rollback(State& s, std::optional<unsigned> to_pass, unsigned threads) {
  RollbackResult r;
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, std::max(1u, threads));
  std::vector<unsigned> live;  // passes whose effect is in DST now (not rolled back)
  for (const auto& p : s.passes)
    if (std::find(s.rolled_back.begin(), s.rolled_back.end(), p.pass) == s.rolled_back.end())
      live.push_back(p.pass);
  if (s.pass_running)
    return io::Error::plain("migrate rollback: pass " + std::to_string(s.pass_running) +
                            " did not finish: run the same phase again first");
  if (live.empty()) return io::Error::plain("migrate rollback: no pass to roll back");
  const unsigned target = to_pass ? *to_pass : live.back() - 1;
  if (target < 1 || target >= live.back() ||
      std::find(live.begin(), live.end(), target) == live.end())
    return io::Error::plain("migrate rollback: --to-pass " + std::to_string(target) +
                            ": not a finished pass before the last (" +
                            std::to_string(live.back()) + ")");
  for (auto it = live.rbegin(); it != live.rend() && *it > target; ++it)
    if (!kept(s, *it))
      return io::Error::plain("migrate rollback: pass " + std::to_string(*it) +
                              " kept nothing (--no-keep): DST cannot go back past it");
  r.to_pass = target;
  for (auto it = live.rbegin(); it != live.rend() && *it > target; ++it) {
    if (auto st = undo_pass(s, *it, threads, r); !st) return st.error();
    r.undone.push_back(*it);
  }
  s.rolled_back.insert(s.rolled_back.end(), r.undone.begin(), r.undone.end());
  s.phase = kPhaseReady;
  if (auto st = save_state(s); !st) return st.error();
  return r;
}

}  // namespace barge::pipeline::migrate
