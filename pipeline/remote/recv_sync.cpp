#include "pipeline/remote/recv_sync.hpp"

#include <sys/stat.h>

#include <oneapi/tbb/parallel_for.h>
#include <algorithm>
#include <atomic>
#include <mutex>

#include "io/dir_reader.hpp"
#include "io/path_ops.hpp"
#include "pipeline/copy/sync_compare.hpp"
#include "pipeline/engine/placement.hpp"

namespace barge::pipeline::remote {

io::Result<std::vector<Root>> resolve_sync_root(const std::vector<RemoteSource>& sources,
                                                const std::string& destination) {
  if (sources.size() != 1 || !sources[0].is_dir)
    return io::Error::plain("sync: the sender must send exactly one directory");
  std::string dst = destination;
  while (dst.size() > 1 && dst.back() == '/') dst.pop_back();
  if (auto ok = check_sync_destination(dst); !ok) return ok.error();
  Root r;
  r.src = sources[0].name;
  r.dst = dst;
  return std::vector<Root>{r};
}

namespace {

struct DirWork {
  uint32_t index = 0;
  bool fresh = false;  // DST has nothing there: every child is new
};

std::string_view name_of(const Entry& e) {
  size_t slash = e.rel.rfind('/');
  return slash == std::string::npos ? std::string_view(e.rel)
                                    : std::string_view(e.rel).substr(slash + 1);
}

class DstComparer {
 public:
  DstComparer(const Plan& plan, const SyncRequest& req, const std::vector<Hash128>& sums,
              bool owner, ErrorList& errors)
      : plan_(plan),
        req_(req),
        sums_(sums),
        owner_(owner),
        errors_(errors),
        filter_(req.excludes, req.includes),
        children_(plan.entries.size()) {
    out_.actions.assign(plan.entries.size(), 0);
  }

  SyncVerdicts run() {
    std::vector<DirWork> level;
    for (uint32_t i = 0; i < plan_.entries.size(); ++i) {
      const Entry& e = plan_.entries[i];
      if (e.parent != kNoParent) {
        children_[e.parent].push_back(i);
        continue;
      }
      out_.actions[i] = kActMeta;  // a root: a directory, see resolve_sync_root
      struct stat st;
      level.push_back({i, ::stat(plan_.dst_path(e).c_str(), &st) != 0});
    }
    while (!level.empty()) {
      std::vector<DirWork> next;
      std::mutex mu;
      tbb::parallel_for(size_t{0}, level.size(), [&](size_t k) {
        std::vector<DirWork> found;
        visit(level[k], found);
        std::lock_guard lock(mu);
        next.insert(next.end(), found.begin(), found.end());
      });
      level = std::move(next);
    }
    out_.deleted = deleted_.load();
    out_.unchanged = unchanged_.load();
    return std::move(out_);
  }

 private:
  void visit(const DirWork& d, std::vector<DirWork>& subdirs) {
    const Entry& dir = plan_.entries[d.index];
    const std::string dst_dir = plan_.dst_path(dir);
    std::vector<uint32_t> kids = children_[d.index];
    std::sort(kids.begin(), kids.end(), [&](uint32_t a, uint32_t b) {
      return name_of(plan_.entries[a]) < name_of(plan_.entries[b]);
    });
    std::vector<io::DirChild> dst;
    if (!d.fresh) {
      auto listing = io::read_directory(dst_dir);
      if (listing) {
        dst = std::move(listing->children);
      } else if (listing.error().errnum != ENOENT) {
        errors_.add(listing.error().message);
        return;  // left alone: its entries are neither sent nor changed
      }
    }
    Remover remover{dst_dir, dir.rel.empty(), {}};
    size_t j = 0;
    for (uint32_t k : kids) {
      const Entry& e = plan_.entries[k];
      const std::string_view name = name_of(e);
      for (; j < dst.size() && dst[j].name < name; ++j) extra(dir, dst[j], remover);
      const io::DirChild* twin = j < dst.size() && dst[j].name == name ? &dst[j++] : nullptr;
      if (twin && twin->meta.type != e.meta.type) {
        if (!remove(remover, twin->name)) continue;
        twin = nullptr;
      }
      judge(k, e, twin, subdirs);
    }
    for (; j < dst.size(); ++j) extra(dir, dst[j], remover);
  }

  // The verdict on entry k against what DST holds under its name (null: nothing).
  void judge(uint32_t k, const Entry& e, const io::DirChild* twin, std::vector<DirWork>& subdirs) {
    uint8_t& act = out_.actions[k];
    const bool is_dir = e.meta.type == io::FileType::kDirectory;
    if (is_dir) {
      act = kActMeta;
      subdirs.push_back({k, twin == nullptr});
      return;
    }
    const bool regular = e.meta.type == io::FileType::kRegular;
    const Hash128* sum = req_.checksum && regular && k < sums_.size() ? &sums_[k] : nullptr;
    if (!twin || content_differs(e, *twin, sum, plan_.dst_path(e))) {
      act = regular ? kActTransfer : kActCreate;
      return;
    }
    if (attr_diff(e.meta, twin->meta, owner_, false).find_first_not_of('.') != std::string::npos)
      act = kActMeta;
    if (act != kActMeta && plan_.xattrs_in_entries && xattrs_differ(e)) act = kActMeta;
    if (regular) unchanged_.fetch_add(1);
  }

  // send --xattrs: DST's entry has other extended attributes than the plan's.
  bool xattrs_differ(const Entry& e) const {
    auto have = io::read_xattrs(plan_.dst_path(e));
    static const io::Xattrs none;
    return !have || *have != (e.xattrs ? *e.xattrs : none);
  }

  // Removal inside one DST directory, opened on first use.
  struct Remover {
    std::string dir;
    bool root = false;
    io::UniqueFd fd;
  };
  bool remove(Remover& r, const std::string& name) {
    const std::string path = io::join_path(r.dir, name);
    if (!r.fd.valid()) {
      auto fd = io::open_dir_path(r.dir, io::DirOpen::kParent, r.root);
      if (!fd) {
        errors_.add(fd.error().message);
        return false;
      }
      r.fd = std::move(*fd);
    }
    if (auto st = remove_tree(r.fd.get(), name, path); !st) {
      errors_.add(st.error().message);
      return false;
    }
    deleted_.fetch_add(1);
    return true;
  }

  // A DST child SRC lacks: removed with --delete unless the sender's filter covers it.
  void extra(const Entry& dir, const io::DirChild& c, Remover& r) {
    if (!req_.delete_extra) return;
    if (filter_.excluded(io::join_path(dir.rel, c.name), c.meta.type == io::FileType::kDirectory))
      return;
    remove(r, c.name);
  }

  const Plan& plan_;
  const SyncRequest& req_;
  const std::vector<Hash128>& sums_;
  bool owner_;
  ErrorList& errors_;
  PathFilter filter_;
  std::vector<std::vector<uint32_t>> children_;
  SyncVerdicts out_;
  std::atomic<uint64_t> deleted_{0}, unchanged_{0};
};

}  // namespace

SyncVerdicts compare_with_dst(const Plan& plan, const SyncRequest& req,
                              const std::vector<Hash128>& sums, bool owner, ErrorList& errors) {
  return DstComparer(plan, req, sums, owner, errors).run();
}

}  // namespace barge::pipeline::remote
