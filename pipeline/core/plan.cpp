#include "pipeline/core/plan.hpp"

#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fnmatch.h>
#include <oneapi/tbb/task_arena.h>
#include <oneapi/tbb/task_group.h>

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>

#include "io/dir_reader.hpp"
#include "io/path_ops.hpp"

namespace barge::pipeline {

std::string Plan::join(const std::string& a, const std::string& b) { return io::join_path(a, b); }

std::string Plan::dst_parent(const Entry& e) const {
  if (e.rel.empty()) {
    std::string p(io::parent_of(roots[e.root].dst));
    return p.empty() ? "." : p;
  }
  return join(roots[e.root].dst, std::string(io::parent_of(e.rel)));
}

std::string Plan::src_parent(const Entry& e) const {
  if (e.rel.empty()) {
    std::string p(io::parent_of(roots[e.root].src));
    return p.empty() ? "." : p;
  }
  return join(roots[e.root].src, std::string(io::parent_of(e.rel)));
}

std::string Plan::name(const Entry& e) const {
  if (e.rel.empty()) return std::string(io::base_name(roots[e.root].dst));
  return std::string(io::base_name(e.rel));
}

namespace {

std::string strip_trailing_slashes(std::string p) {
  while (p.size() > 1 && p.back() == '/') p.pop_back();
  return p;
}

}  // namespace

std::string canonical_or_parent(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf)) return buf;
  std::string parent(io::parent_of(path));
  std::string base(io::base_name(path));
  if (parent.empty()) parent = ".";
  if (parent == path) return path;
  return io::join_path(canonical_or_parent(parent), base);
}

bool is_inside(const std::string& inner, const std::string& outer) {
  if (outer == "/") return true;
  return inner == outer ||
         (inner.size() > outer.size() && inner.compare(0, outer.size(), outer) == 0 &&
          inner[outer.size()] == '/');
}

namespace {

// The destination as the copy starts: "DST/" must be a directory; several sources need one.
struct Destination {
  std::string given;  // as the user wrote it
  std::string path;   // without trailing slashes
  bool must_be_dir = false;
  bool exists = false;
  bool is_dir = false;
};

io::Result<Destination> check_destination(const std::string& destination, size_t sources) {
  Destination d;
  d.given = destination;
  d.path = strip_trailing_slashes(destination);
  d.must_be_dir = d.path.size() < destination.size();  // "DST/" names a directory
  struct stat dst_st;
  d.exists = ::stat(d.path.c_str(), &dst_st) == 0;
  if (!d.exists && errno != ENOENT) return io::Error::from_errno(errno, "destination " + d.path);
  d.is_dir = d.exists && S_ISDIR(dst_st.st_mode);
  if (d.must_be_dir && d.exists && !d.is_dir) {
    return io::Error::plain("destination " + destination + ": Not a directory");
  }
  if (sources > 1 && !d.is_dir) {
    return io::Error::plain("destination " + d.path +
                            (d.exists ? " is not a directory" : " does not exist") +
                            " (several sources need an existing directory)");
  }
  if (!d.exists) {
    std::string parent(io::parent_of(d.path));
    struct stat pst;
    if (::stat(parent.empty() ? "." : parent.c_str(), &pst) != 0 || !S_ISDIR(pst.st_mode)) {
      return io::Error::plain("destination " + d.path + ": parent directory does not exist");
    }
  }
  return d;
}

// Where a source named `src` (base name `base`, "." for "SRC/.") lands by cp's rules, and
// whether what is there already can take it.
io::Result<Root> place_root(const std::string& src, std::string_view base_name, bool src_is_dir,
                            const Destination& dst) {
  if (dst.must_be_dir && !dst.exists && !src_is_dir) {
    return io::Error::plain("destination " + dst.given +
                            ": Not a directory (cannot copy non-directory " + src + " to it)");
  }
  Root r;
  r.src = src;
  std::string base(base_name);
  if (base == "/")
    return io::Error::plain("source " + src + ": copy the root directory's entries instead (/.)");
  if (base == "." || base == "..") {
    // As with cp: "SRC/." names the directory itself, so its contents merge into an
    // existing DST (and a missing DST becomes the copy).
    r.dst = dst.path;
    r.manifest_prefix = "";
  } else if (dst.is_dir) {
    r.dst = io::join_path(dst.path, base);
    r.manifest_prefix = base;
  } else {
    r.dst = dst.path;
    r.manifest_prefix = src_is_dir ? "" : std::string(io::base_name(dst.path));
  }
  struct stat target_st;
  if (::lstat(r.dst.c_str(), &target_st) == 0) {
    if (src_is_dir && !S_ISDIR(target_st.st_mode)) {
      return io::Error::plain("cannot overwrite non-directory " + r.dst + " with directory " + src);
    }
    if (!src_is_dir && S_ISDIR(target_st.st_mode)) {
      return io::Error::plain("cannot overwrite directory " + r.dst + " with non-directory " + src);
    }
  }
  return r;
}

// The source `raw` checked (it exists, can be opened) and placed by cp's rules.
io::Result<Root> resolve_root(const std::string& raw, const Destination& dst) {
  if (raw.empty()) return io::Error::plain("source: empty path");
  std::string src = strip_trailing_slashes(raw);
  struct stat st;
  if (::lstat(src.c_str(), &st) != 0) return io::Error::from_errno(errno, "source " + src);
  if (S_ISLNK(st.st_mode) && src.size() < raw.size()) {
    // "LINK/" names the directory the link points to, as with cp and rsync: keep the
    // slash so every open of the root follows it.
    if (::stat(raw.c_str(), &st) != 0) return io::Error::from_errno(errno, "source " + raw);
    src += '/';
  }
  bool src_is_dir = S_ISDIR(st.st_mode);
  if (src_is_dir || S_ISREG(st.st_mode)) {
    int fd =
        ::open(src.c_str(), (src_is_dir ? O_DIRECTORY : 0) | O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return io::Error::from_errno(errno, "source " + src);
    ::close(fd);
  }
  auto placed = place_root(src, io::base_name(src), src_is_dir, dst);
  if (!placed) return placed.error();
  Root r = std::move(*placed);
  const std::string csrc = canonical_or_parent(src);
  const std::string cdst = canonical_or_parent(r.dst);
  if (src_is_dir && is_inside(cdst, csrc)) {
    return io::Error::plain("cannot copy directory " + src + " into itself (" + r.dst + ")");
  }
  if (!src_is_dir && csrc == cdst) {
    return io::Error::plain(src + " and " + r.dst + " are the same file");
  }
  return r;
}

}  // namespace

io::Result<std::vector<Root>> resolve_roots(const std::vector<std::string>& sources,
                                            const std::string& destination) {
  if (sources.empty()) return io::Error::plain("copy: no source given");
  if (destination.empty()) return io::Error::plain("copy: empty destination");
  auto dst = check_destination(destination, sources.size());
  if (!dst) return dst.error();
  std::vector<Root> roots;
  for (const std::string& raw : sources) {
    auto r = resolve_root(raw, *dst);
    if (!r) return r.error();
    roots.push_back(std::move(*r));
  }
  return roots;
}

io::Result<std::vector<Root>> resolve_remote_roots(const std::vector<RemoteSource>& sources,
                                                   const std::string& destination) {
  if (sources.empty()) return io::Error::plain("no source given");
  auto dst = check_destination(destination, sources.size());
  if (!dst) return dst.error();
  std::vector<Root> roots;
  for (const RemoteSource& s : sources) {
    if (s.name.empty() || s.name == ".." || s.name.find('/') != std::string::npos ||
        s.name.find('\0') != std::string::npos)
      return io::Error::plain("source name \"" + s.name + "\" is not one path component");
    auto r = place_root(s.name, s.name, s.is_dir, *dst);
    if (!r) return r.error();
    roots.push_back(std::move(*r));
  }
  return roots;
}

namespace {

// Directory listings gathered by the parallel walk, flattened into pre-order afterwards.
struct WalkDir {
  std::vector<io::DirChild> children;
  std::vector<std::unique_ptr<WalkDir>> subdirs;  // one per directory child, same order
};

class Walker {
 public:
  Walker(Plan& plan, tbb::task_group& tg, const PathFilter& filter)
      : plan_(plan), tg_(tg), filter_(filter) {}

  void list(std::string path, std::string rel, WalkDir* node) {
    auto listing = io::read_directory(path);
    std::vector<io::Error> errors;
    if (!listing) {
      errors.push_back(listing.error());
    } else {
      errors = std::move(listing->errors);
      node->children = std::move(listing->children);
      if (filter_.active()) {
        std::erase_if(node->children, [&](const io::DirChild& c) {
          return filter_.excluded(io::join_path(rel, c.name),
                                  c.meta.type == io::FileType::kDirectory);
        });
      }
      for (const io::DirChild& c : node->children) {
        if (c.meta.type != io::FileType::kDirectory) continue;
        node->subdirs.push_back(std::make_unique<WalkDir>());
        WalkDir* sub = node->subdirs.back().get();
        std::string sub_path = io::join_path(path, c.name);
        std::string sub_rel = io::join_path(rel, c.name);
        tg_.run([this, sub_path = std::move(sub_path), sub_rel = std::move(sub_rel), sub] {
          list(sub_path, sub_rel, sub);
        });
      }
    }
    if (!errors.empty()) {
      std::lock_guard lock(mu_);
      for (auto& e : errors) plan_.walk_errors.push_back(std::move(e));
    }
  }

 private:
  Plan& plan_;
  tbb::task_group& tg_;
  const PathFilter& filter_;
  std::mutex mu_;
};

void flatten(Plan& plan, uint32_t root, uint32_t dir_index, const std::string& rel, WalkDir& node) {
  size_t sub = 0;
  for (io::DirChild& c : node.children) {
    Entry e;
    e.rel = io::join_path(rel, c.name);
    e.root = root;
    e.parent = dir_index;
    e.meta = c.meta;
    e.link_target = std::move(c.link_target);
    uint32_t index = static_cast<uint32_t>(plan.entries.size());
    bool is_dir = e.meta.type == io::FileType::kDirectory;
    if (e.meta.type == io::FileType::kRegular) {
      plan.files.push_back(index);
      plan.total_file_bytes += e.meta.size_bytes;
    }
    std::string child_rel = e.rel;
    plan.entries.push_back(std::move(e));
    if (is_dir) {
      flatten(plan, root, index, child_rel, *node.subdirs[sub]);
      node.subdirs[sub].reset();  // free listings as soon as they are flattened
      ++sub;
    }
  }
  node.children.clear();
  node.children.shrink_to_fit();
}

// Entries and regular files below `node`: the plan's vectors are sized once before
// flattening, so they never hold an old and a new copy at once while growing.
void count_tree(const WalkDir& node, size_t& entries, size_t& files) {
  entries += node.children.size();
  for (const io::DirChild& c : node.children) {
    if (c.meta.type == io::FileType::kRegular) ++files;
  }
  for (const auto& sub : node.subdirs) {
    if (sub) count_tree(*sub, entries, files);
  }
}

}  // namespace

bool PathFilter::excluded(std::string_view rel, bool is_dir) const {
  if (excludes_.empty()) return false;
  std::string path(rel);
  std::string name(io::base_name(rel));
  auto matches = [&](const std::string& pattern) {
    std::string pat = pattern;
    if (!pat.empty() && pat.back() == '/') {
      if (!is_dir) return false;  // "dir/" names directories only
      pat.pop_back();
    }
    if (!pat.empty() && pat.front() == '/') pat.erase(0, 1);
    if (pat.find('/') == std::string::npos && pat.find("**") == std::string::npos) {
      return ::fnmatch(pat.c_str(), name.c_str(), 0) == 0;
    }
    // "**" crosses directory levels; a lone "*" stays within one.
    if (pat.find("**") != std::string::npos) {
      if (pat.rfind("**/", 0) == 0 && ::fnmatch(pat.c_str() + 3, path.c_str(), 0) == 0) return true;
      return ::fnmatch(pat.c_str(), path.c_str(), 0) == 0;
    }
    return ::fnmatch(pat.c_str(), path.c_str(), FNM_PATHNAME) == 0;
  };
  bool out = std::any_of(excludes_.begin(), excludes_.end(), matches);
  return out && std::none_of(includes_.begin(), includes_.end(), matches);
}

Plan walk_roots(std::vector<Root> roots, unsigned threads, const PathFilter& filter) {
  Plan plan;
  plan.roots = std::move(roots);
  std::vector<std::unique_ptr<WalkDir>> trees(plan.roots.size());
  tbb::task_arena arena(threads ? static_cast<int>(threads) : tbb::task_arena::automatic);
  std::vector<io::FileMeta> root_meta(plan.roots.size());
  std::vector<std::string> root_links(plan.roots.size());
  std::vector<bool> root_ok(plan.roots.size(), false);
  std::vector<io::Error> root_errors;
  arena.execute([&] {
    tbb::task_group tg;
    Walker walker(plan, tg, filter);
    for (size_t i = 0; i < plan.roots.size(); ++i) {
      auto meta = io::stat_entry(AT_FDCWD, plan.roots[i].src.c_str());
      if (!meta) {
        root_errors.push_back(meta.error());
        continue;
      }
      root_ok[i] = true;
      root_meta[i] = *meta;
      if (meta->type == io::FileType::kDirectory) {
        trees[i] = std::make_unique<WalkDir>();
        tg.run([&walker, path = plan.roots[i].src, node = trees[i].get()] {
          walker.list(path, "", node);
        });
      } else if (meta->type == io::FileType::kSymlink) {
        auto target = io::read_link(AT_FDCWD, plan.roots[i].src.c_str());
        if (target) root_links[i] = std::move(target.value());
      }
    }
    tg.wait();
  });
  for (auto& e : root_errors) plan.walk_errors.push_back(std::move(e));
  size_t entry_count = plan.roots.size(), file_count = plan.roots.size();
  for (const auto& t : trees) {
    if (t) count_tree(*t, entry_count, file_count);
  }
  plan.entries.reserve(entry_count);
  plan.files.reserve(file_count);
  for (size_t i = 0; i < plan.roots.size(); ++i) {
    if (!root_ok[i]) continue;
    Entry e;
    e.root = static_cast<uint32_t>(i);
    e.meta = root_meta[i];
    e.link_target = std::move(root_links[i]);
    uint32_t index = static_cast<uint32_t>(plan.entries.size());
    if (e.meta.type == io::FileType::kRegular) {
      plan.files.push_back(index);
      plan.total_file_bytes += e.meta.size_bytes;
    }
    plan.entries.push_back(std::move(e));
    if (trees[i]) flatten(plan, static_cast<uint32_t>(i), index, "", *trees[i]);
    trees[i].reset();
  }
  return plan;
}

uint32_t chunk_count_for(uint64_t size_bytes, uint64_t chunk_bytes, uint64_t buffer_bytes) {
  if (size_bytes <= buffer_bytes) return 1;
  return static_cast<uint32_t>((size_bytes + chunk_bytes - 1) / chunk_bytes);
}

UnitCutter::UnitCutter(const Plan& plan, uint64_t chunk_bytes, uint64_t buffer_bytes,
                       uint32_t max_files, const std::vector<uint8_t>* include)
    : plan_(plan),
      chunk_bytes_(chunk_bytes),
      buffer_bytes_(buffer_bytes),
      max_files_(max_files ? max_files : 1),
      include_(include) {}

bool UnitCutter::next(std::vector<Extent>& out) {
  constexpr uint64_t kAlign = 4096;
  out.clear();
  uint64_t used = 0;
  while (file_pos_ < plan_.files.size()) {
    uint32_t file = plan_.files[file_pos_];
    if (include_ && !(*include_)[file]) {
      ++file_pos_;
      continue;
    }
    uint64_t size = plan_.entries[file].meta.size_bytes;
    uint32_t chunks = chunk_count_for(size, chunk_bytes_, buffer_bytes_);
    if (chunks > 1) {
      if (!out.empty()) return true;  // a chunk of a large file travels alone
      // Resume: chunks an earlier run wrote are skipped (never the last, which commits).
      while (skip_ && chunk_pos_ + 1 < chunks && skip_(file, chunk_pos_)) ++chunk_pos_;
      uint64_t off = static_cast<uint64_t>(chunk_pos_) * chunk_bytes_;
      out.push_back(Extent{file, chunk_pos_, chunks, off, std::min(chunk_bytes_, size - off), 0});
      if (++chunk_pos_ == chunks) {
        chunk_pos_ = 0;
        ++file_pos_;
      }
      return true;
    }
    uint64_t aligned = (size + kAlign - 1) / kAlign * kAlign;
    if (!out.empty() && (used + aligned > buffer_bytes_ || out.size() >= max_files_)) return true;
    out.push_back(Extent{file, 0, 1, 0, size, used});
    used += aligned;
    ++file_pos_;
  }
  return !out.empty();
}

io::Status apply_xattrs(const Plan& plan, const Entry& e, int fd, const std::string& dst_path) {
  if (!plan.xattrs_in_entries) return io::copy_xattrs(plan.src_path(e), fd, dst_path);
  static const io::Xattrs none;
  return io::write_xattrs(e.xattrs ? *e.xattrs : none, fd, dst_path);
}

size_t pool_buffer_count(const Plan& plan, const PoolSizing& sizing) {
  if (sizing.buffers_per_unit > 1) {
    PoolSizing one = sizing;
    one.memory_bytes /= sizing.buffers_per_unit;
    one.buffers_per_unit = 1;
    return sizing.buffers_per_unit * pool_buffer_count(plan, one);
  }
  const uint64_t max_buffers = sizing.memory_bytes / sizing.buffer_bytes;
  uint64_t units = sizing.extra_units;
  UnitCutter counter(plan, sizing.chunk_bytes, sizing.buffer_bytes, sizing.files_per_unit,
                     sizing.include);
  std::vector<Extent> scratch;
  while (units < max_buffers && counter.next(scratch)) ++units;
  return pool_buffers(sizing.memory_bytes, sizing.buffer_bytes, units, sizing.min_buffers);
}

std::vector<uint32_t> hard_link_leaders(const Plan& plan) {
  std::vector<uint32_t> leader(plan.entries.size(), kLeadsItself);
  std::map<std::pair<uint64_t, uint64_t>, uint32_t> group;  // (device, inode) -> leader
  for (uint32_t f : plan.files) {
    const Entry& e = plan.entries[f];
    if (e.meta.nlink < 2) continue;
    auto [it, fresh] = group.try_emplace({e.meta.device, e.meta.inode}, f);
    const Entry& lead = plan.entries[it->second];
    if (!fresh && leads_link_group(e.root, e.rel, lead.root, lead.rel)) it->second = f;
  }
  for (uint32_t f : plan.files) {
    const Entry& e = plan.entries[f];
    if (e.meta.nlink < 2) continue;
    uint32_t lead = group.at({e.meta.device, e.meta.inode});
    if (lead != f) leader[f] = lead;
  }
  return leader;
}

}  // namespace barge::pipeline
