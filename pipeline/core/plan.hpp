// The copy plan: what the walk found under each source root, where each entry lands, and
// how regular files are cut into work units (whole small files batched together, large
// files split into chunks).
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "io/metadata.hpp"
#include "io/result.hpp"
#include "io/xattr.hpp"

namespace barge::pipeline {

inline constexpr uint32_t kNoParent = UINT32_MAX;

// One source argument and the destination path it becomes (cp's placement rules).
struct Root {
  std::string src;              // as given, trailing slashes removed
  std::string dst;              // the path this source becomes
  std::string manifest_prefix;  // path of dst relative to the destination argument ("" = itself)
};

struct Entry {
  std::string rel;  // path below its root, "" for the root itself
  uint32_t root = 0;
  uint32_t parent = kNoParent;  // index of the parent directory entry, kNoParent for a root
  io::FileMeta meta;
  std::string link_target;  // symlinks only
  // Extended attributes that came with the plan (recv with send --xattrs); null: none, or
  // read from the source (see apply_xattrs).
  std::shared_ptr<const io::Xattrs> xattrs;
};

// What a run does with an entry (sync, and the transfer phases that carry out its verdicts).
inline constexpr uint8_t kActTransfer = 1;  // regular file: copy its bytes
inline constexpr uint8_t kActCreate = 2;    // symlink, fifo, device: create or replace
inline constexpr uint8_t kActMeta = 4;      // apply metadata (directories: at the end)

struct Plan {
  std::vector<Root> roots;
  std::vector<Entry> entries;          // pre-order: a directory comes before its contents
  std::vector<uint32_t> files;         // indices of regular files, in walk order
  std::vector<io::Error> walk_errors;  // unreadable directories and entries
  uint64_t total_file_bytes = 0;
  // The entries' extended attributes came with them (recv): the source is elsewhere.
  bool xattrs_in_entries = false;

  std::string src_path(const Entry& e) const { return join(roots[e.root].src, e.rel); }
  std::string dst_path(const Entry& e) const { return join(roots[e.root].dst, e.rel); }
  // Directory holding the destination entry, and the entry's name in it.
  std::string dst_parent(const Entry& e) const;
  std::string src_parent(const Entry& e) const;
  std::string name(const Entry& e) const;
  std::string manifest_path(const Entry& e) const {
    return join(roots[e.root].manifest_prefix, e.rel);
  }

 private:
  static std::string join(const std::string& a, const std::string& b);
};

// --xattrs: makes the destination entry's attributes (fd, or dst_path when fd < 0) the
// source's: read from the source path, or the ones that came with the plan.
io::Status apply_xattrs(const Plan& plan, const Entry& e, int fd, const std::string& dst_path);

// Resolves placement for `sources` → `destination` with cp's rules and checks them:
// missing/unreadable sources, destination inside a source, a directory onto an existing
// non-directory, several sources onto a non-directory. Errors mean: usage error, nothing written.
io::Result<std::vector<Root>> resolve_roots(const std::vector<std::string>& sources,
                                            const std::string& destination);

// A source as a receiver on another host knows it (recv): its base name ("." for "SRC/.",
// whose contents merge into DST) and whether it is a directory.
struct RemoteSource {
  std::string name;
  bool is_dir = false;
};
// cp's placement rules for remote sources against `destination` as it is now; a name that
// is not one path component ("..", "a/b", "") is refused. Root::src is the source's name.
io::Result<std::vector<Root>> resolve_remote_roots(const std::vector<RemoteSource>& sources,
                                                   const std::string& destination);

// Canonical absolute path of an existing path, or of the nearest existing ancestor joined
// with the rest (a destination may not exist yet).
std::string canonical_or_parent(const std::string& path);
// `inner` is `outer` or below it (both canonical).
bool is_inside(const std::string& inner, const std::string& outer);

// --exclude / --include: an entry is left out when its path (relative to its root) matches
// an exclude pattern and no include pattern. Patterns are fnmatch globs, as in rsync: one
// without '/' matches the entry's name at any depth, one with '/' its whole relative path (a
// leading '/' anchors it at the root, which it is anyway); a trailing '/' matches
// directories only; '**' also matches across '/'. Left-out directories are not descended.
class PathFilter {
 public:
  PathFilter() = default;
  PathFilter(std::vector<std::string> excludes, std::vector<std::string> includes)
      : excludes_(std::move(excludes)), includes_(std::move(includes)) {}
  bool active() const { return !excludes_.empty(); }
  bool excluded(std::string_view rel, bool is_dir) const;

 private:
  std::vector<std::string> excludes_;
  std::vector<std::string> includes_;
};

// Walks every root in parallel (oneTBB tasks, one per directory). Never follows symlinks.
// Per-entry failures land in plan.walk_errors; the rest is walked.
Plan walk_roots(std::vector<Root> roots, unsigned threads, const PathFilter& filter = {});

// One extent: a whole small file or one chunk of a large one, placed in a unit's buffer.
struct Extent {
  uint32_t file = 0;          // entry index
  uint32_t chunk = 0;         // chunk number within the file
  uint32_t chunk_count = 1;   // chunks the file is cut into
  uint64_t offset_bytes = 0;  // in the file
  uint64_t length_bytes = 0;
  uint64_t buf_offset_bytes = 0;  // in the unit's buffer, 4 KiB aligned
};

// Cuts the plan's files into units that each fit one buffer of `buffer_bytes`: files of at
// most `buffer_bytes` are batched (up to max_files per unit), larger files are split into
// chunks of `chunk_bytes`; entries whose `include` flag is 0 are left out. Stateful and pull-based
// so units are produced as the graph asks.
class UnitCutter {
 public:
  UnitCutter(const Plan& plan, uint64_t chunk_bytes, uint64_t buffer_bytes, uint32_t max_files,
             const std::vector<uint8_t>* include = nullptr);
  // Fills `out` with the next unit's extents; false when there is nothing left.
  bool next(std::vector<Extent>& out);
  // Resume: chunks for which skip(file, chunk) is true are not cut (the last one always is).
  void set_skip(std::function<bool(uint32_t, uint32_t)> skip) { skip_ = std::move(skip); }

 private:
  const Plan& plan_;
  uint64_t chunk_bytes_;
  uint64_t buffer_bytes_;
  uint32_t max_files_;
  const std::vector<uint8_t>* include_;  // per entry: 0 = leave out
  std::function<bool(uint32_t, uint32_t)> skip_;
  size_t file_pos_ = 0;
  uint32_t chunk_pos_ = 0;
};

uint32_t chunk_count_for(uint64_t size_bytes, uint64_t chunk_bytes, uint64_t buffer_bytes);

// The one hard-link rule: among the paths that share an inode (device, inode), the one with
// the smallest (root, path) holds the data; the others are linked to it. Alone, in backups
// and across ranks (where each rank knows only part of a group) the same member leads.
inline bool leads_link_group(uint32_t root_a, std::string_view rel_a, uint32_t root_b,
                             std::string_view rel_b) {
  return root_a != root_b ? root_a < root_b : rel_a < rel_b;
}
inline constexpr uint32_t kLeadsItself = UINT32_MAX;
// Per entry of the plan: the index of its hard-link group's leader among the plan's files,
// or kLeadsItself (a leader, a single-link file, anything not a regular file).
std::vector<uint32_t> hard_link_leaders(const Plan& plan);

// The one pool-sizing rule: as many buffers of `buffer_bytes` as `memory_bytes` holds, but
// never more than `useful` (what the work can keep busy: its units, or a bound per thread),
// so a small run registers, pins and touches little memory; at least `min_buffers`.
inline size_t pool_buffers(uint64_t memory_bytes, uint64_t buffer_bytes, uint64_t useful,
                           size_t min_buffers) {
  const uint64_t fit = memory_bytes / std::max<uint64_t>(buffer_bytes, 1);
  return std::max(min_buffers, static_cast<size_t>(std::min(fit, useful)));
}

// The rule for a plan: useful = the units UnitCutter cuts from the included files, plus
// `extra_units` cut elsewhere.
struct PoolSizing {
  uint64_t memory_bytes = 0;
  uint64_t chunk_bytes = 0;
  uint64_t buffer_bytes = 0;
  uint32_t files_per_unit = 0;
  const std::vector<uint8_t>* include = nullptr;
  size_t extra_units = 0;
  size_t min_buffers = 1;  // units, when buffers_per_unit > 1
  // 2: each unit also holds a stored (compressed) form; memory_bytes covers both.
  size_t buffers_per_unit = 1;
};
size_t pool_buffer_count(const Plan& plan, const PoolSizing& sizing);

}  // namespace barge::pipeline
