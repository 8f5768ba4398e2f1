// The cutover's verification: entries and metadata from two walks, contents from the
// checksums the passes recorded (or SRC read again).
#include <fcntl.h>
#include <tbb/global_control.h>
#include <tbb/parallel_for.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <unordered_map>

#include "pipeline/core/manifest.hpp"
#include "pipeline/core/plan.hpp"
#include "pipeline/migrate/cutover.hpp"

namespace barge::pipeline::migrate {

namespace {

class Problems {
 public:
  explicit Problems(VerifyFigures& v) : v_(v) {}
  void add(std::string what) {
    std::lock_guard lock(mu_);
    ++v_.problem_count;
    if (v_.problems.size() < 20) v_.problems.push_back(printable_path(what, 300));
  }

 private:
  VerifyFigures& v_;
  std::mutex mu_;
};

bool same_time(const timespec& a, const timespec& b) {
  return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

// Name, type and metadata of every entry; the regular files to check by content.
std::vector<std::pair<const Entry*, const Entry*>> compare_entries(const Plan& src, const Plan& dst,
                                                                   VerifyFigures& v,
                                                                   Problems& problems) {
  std::unordered_map<std::string, const Entry*> in_dst;
  for (const Entry& e : dst.entries) in_dst[e.rel] = &e;
  const bool owner = io::can_chown();
  std::vector<std::pair<const Entry*, const Entry*>> files;
  for (const Entry& e : src.entries) {
    ++v.entries;
    const std::string name = e.rel.empty() ? "." : e.rel;
    auto it = in_dst.find(e.rel);
    if (it == in_dst.end()) {
      problems.add("missing in DST: " + name);
      continue;
    }
    const Entry& d = *it->second;
    in_dst.erase(it);
    const io::FileMeta &a = e.meta, &b = d.meta;
    if (a.type != b.type) {
      problems.add("another type in DST: " + name);
      continue;
    }
    if ((a.type != io::FileType::kSymlink && a.mode != b.mode) ||
        (owner && (a.uid != b.uid || a.gid != b.gid)))
      problems.add("mode or owner differ: " + name);
    if (a.type != io::FileType::kDirectory && !same_time(a.mtime, b.mtime))
      problems.add("mtime differs: " + name);
    if (a.type == io::FileType::kSymlink && e.link_target != d.link_target)
      problems.add("symlink target differs: " + name);
    if (a.type == io::FileType::kRegular) {
      if (a.size_bytes != b.size_bytes)
        problems.add("size differs: " + name);
      else
        files.push_back({&e, &d});
    }
  }
  for (const auto& [rel, e] : in_dst) problems.add("extra in DST: " + rel);
  return files;
}

}  // namespace

VerifyFigures verify_tree(const State& s, bool full, unsigned threads) {
  VerifyFigures v;
  const auto t0 = std::chrono::steady_clock::now();
  Problems problems(v);
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, std::max(1u, threads));
  Plan src = walk_roots({Root{s.src, s.dst, ""}}, threads);
  Plan dst = walk_roots({Root{s.dst, s.src, ""}}, threads);
  for (const auto& e : src.walk_errors) problems.add("SRC: " + e.message);
  for (const auto& e : dst.walk_errors) problems.add("DST: " + e.message);
  auto files = compare_entries(src, dst, v, problems);
  std::unordered_map<std::string, Hash128> recorded;
  if (!full) {
    auto m = read_manifest(s.dir + "/manifest");
    if (m)
      for (auto& e : m.value()) recorded[e.path] = e.hash;
    else
      problems.add("the passes' checksums: " + m.error().message);
  }
  std::atomic<uint64_t> bytes{0}, from_manifest{0}, rehashed{0};
  tbb::parallel_for(size_t{0}, files.size(), [&](size_t i) {
    const Entry& e = *files[i].first;
    Hash128 want{};
    auto it = recorded.find(e.rel);
    if (it != recorded.end()) {
      want = it->second;
      ++from_manifest;
    } else {
      auto h = hash_file(AT_FDCWD, src.src_path(e));
      if (!h) return problems.add("SRC: " + h.error().message);
      want = h.value();
      ++rehashed;
    }
    auto got = hash_file(AT_FDCWD, dst.src_path(*files[i].second));
    if (!got) return problems.add("DST: " + got.error().message);
    if (!(got.value() == want)) problems.add("content differs: " + e.rel);
    bytes += e.meta.size_bytes;
  });
  v.files = files.size();
  v.bytes = bytes;
  v.from_manifest = from_manifest;
  v.rehashed_source = rehashed;
  v.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return v;
}

}  // namespace barge::pipeline::migrate
