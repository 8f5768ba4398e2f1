#include "pipeline/migrate/keep.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <set>
#include <unordered_map>

#include "io/path_ops.hpp"
#include "pipeline/core/manifest.hpp"
#include "pipeline/core/plan.hpp"
#include "pipeline/core/wire.hpp"

namespace barge::pipeline::migrate {

namespace fs = std::filesystem;

namespace {

constexpr std::string_view kIndexMagic = "barge-migrate-keep v1\n";

std::string files_dir(const std::string& k) { return k + "/files"; }
std::string farm_path(const std::string& k, uint64_t ino) {
  return files_dir(k) + "/" + std::to_string(ino);
}
std::string dst_path(const State& s, const std::string& rel) {
  return rel.empty() ? s.dst : io::join_path(s.dst, rel);
}

io::Status copy_file(const std::string& from, const std::string& to) {
  std::error_code ec;
  fs::copy_file(from, to, fs::copy_options::overwrite_existing, ec);
  if (ec) return io::Error::plain("copy " + from + " to " + to + ": " + ec.message());
  return io::Status::success();
}

io::Result<std::vector<KeptEntry>> read_index(const std::string& k) {
  auto bytes = read_file(k + "/index");
  if (!bytes) return bytes.error();
  auto idx = decode_index(bytes.value());
  if (!idx) return io::Error::plain(k + "/index: " + idx.error().message);
  return idx;
}

}  // namespace

std::string keep_dir(const State& s, unsigned pass) {
  return s.dir + "/keep/pass-" + std::to_string(pass);
}

bool kept(const State& s, unsigned pass) {
  return ::access((keep_dir(s, pass) + "/complete").c_str(), F_OK) == 0;
}

std::string encode_index(const std::vector<KeptEntry>& entries) {
  WireWriter w;
  w.u64(entries.size());
  for (const KeptEntry& e : entries) {
    w.str(e.rel);
    write_meta(w, e.meta);
    w.str(e.link_target);
  }
  return std::string(kIndexMagic) + w.take();
}

io::Result<std::vector<KeptEntry>> decode_index(std::string_view bytes) {
  if (bytes.substr(0, kIndexMagic.size()) != kIndexMagic)
    return io::Error::plain("not a barge keep index");
  bytes.remove_prefix(kIndexMagic.size());
  try {
    WireReader r(bytes);
    const uint64_t n = r.u64();
    if (n > bytes.size()) return io::Error::plain("entry count larger than the file");
    std::vector<KeptEntry> out(n);
    for (auto& e : out) {
      e.rel = r.str();
      e.meta = read_meta(r);
      e.link_target = r.str();
      if (!e.rel.empty())  // a path that climbs out of DST is never followed
        if (auto st = validate_manifest_path(e.rel); !st)
          return io::Error::plain("index: " + st.error().message);
    }
    if (!r.done()) return io::Error::plain("bytes after the last entry");
    return out;
  } catch (const std::exception& e) {
    return io::Error::plain(e.what());
  }
}

io::Status keep_before_pass(const State& s, unsigned pass, unsigned threads) {
  const std::string k = keep_dir(s, pass);
  if (kept(s, pass)) return io::Status::success();
  std::error_code ec;
  fs::remove_all(k, ec);  // a keep a kill left half made
  fs::create_directories(files_dir(k), ec);
  if (ec) return io::Error::plain("keep " + k + ": " + ec.message());
  struct stat a, b;
  if (::stat(k.c_str(), &a) != 0 || ::stat(s.dst.c_str(), &b) != 0)
    return io::Error::from_errno(errno, "keep: stat " + k);
  if (a.st_dev != b.st_dev)
    return io::Error::plain("rollback keeps what a pass replaces as hard links in " + s.dir +
                            "/keep, which must be on DST's file system (--state is on another): "
                            "put --state on DST's file system, or give --no-keep");
  Plan plan = walk_roots({Root{s.dst, "", ""}}, threads);
  if (!plan.walk_errors.empty()) return io::Error::plain("keep: " + plan.walk_errors[0].message);
  std::vector<KeptEntry> idx;
  idx.reserve(plan.entries.size());
  for (const Entry& e : plan.entries) {
    idx.push_back({e.rel, e.meta, e.link_target});
    if (e.meta.type != io::FileType::kRegular) continue;
    const std::string to = farm_path(k, e.meta.inode);
    if (::link(dst_path(s, e.rel).c_str(), to.c_str()) != 0 && errno != EEXIST)
      return io::Error::from_errno(errno, "keep: link " + dst_path(s, e.rel));
  }
  if (::access((s.dir + "/manifest").c_str(), F_OK) == 0)
    if (auto st = copy_file(s.dir + "/manifest", k + "/manifest"); !st) return st;
  if (auto st = write_file_atomic(k + "/index", encode_index(idx)); !st) return st;
  return write_file_atomic(k + "/complete", "");
}

io::Status prune_after_pass(const State& s, unsigned pass) {
  const std::string k = keep_dir(s, pass);
  auto idx = read_index(k);
  if (!idx) return idx.error();
  std::set<uint64_t> moved;  // inodes some name of which the pass replaced or deleted
  std::set<uint64_t> all;
  for (const KeptEntry& e : idx.value()) {
    if (e.meta.type != io::FileType::kRegular) continue;
    all.insert(e.meta.inode);
    struct stat st;
    if (::lstat(dst_path(s, e.rel).c_str(), &st) != 0 || st.st_ino != e.meta.inode)
      moved.insert(e.meta.inode);
  }
  for (uint64_t ino : all)
    if (!moved.count(ino) && ::unlink(farm_path(k, ino).c_str()) != 0 && errno != ENOENT)
      return io::Error::from_errno(errno, "keep: unlink " + farm_path(k, ino));
  return io::Status::success();
}

}  // namespace barge::pipeline::migrate
