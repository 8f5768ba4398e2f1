#include "pipeline/dist/dist_internal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/parallel_for_each.h>
#include <oneapi/tbb/task_arena.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>

#include "io/dir_reader.hpp"
#include "io/log.hpp"
#include "io/path_ops.hpp"
#include "io/xattr.hpp"
#include "pipeline/core/wire.hpp"
#include "pipeline/dist/dist_internal.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/engine/placement.hpp"

namespace barge::pipeline {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kTagWalkRequest = 101;  // worker → coordinator: directories found, and "I am idle"
constexpr int kTagWalkWork = 102;     // coordinator → worker: directories to list ("" = done)

std::string encode_dirs(const std::vector<DirRef>& dirs) {
  WireWriter w;
  w.u32(static_cast<uint32_t>(dirs.size()));
  for (const DirRef& d : dirs) {
    w.u32(d.root);
    w.str(d.rel);
  }
  return w.take();
}

std::vector<DirRef> decode_dirs(const std::string& bytes) {
  WireReader r(bytes);
  std::vector<DirRef> out(r.u32());
  for (DirRef& d : out) {
    d.root = r.u32();
    d.rel = r.str();
  }
  return out;
}

// Rank 0's walk coordinator: a queue of directories to list. A worker's request returns the
// directories it found and marks it idle; idle workers get batches while the queue has
// some. The walk is over when the queue is empty and every worker is idle.
// A request starts with a byte: 1 when its rank is stopping, which ends the walk for all
// (the queue is dropped; every rank finishes the directories it has and is told "done").
void walk_coordinator(transport::Comm& comm, std::vector<DirRef> initial,
                      std::atomic<bool>& aborted_flag, bool& garbled) {
  std::deque<DirRef> queue(std::make_move_iterator(initial.begin()),
                           std::make_move_iterator(initial.end()));
  std::vector<int> idle;
  const size_t ranks = static_cast<size_t>(comm.size());
  bool aborted = false;
  for (;;) {
    int source = 0;
    std::string msg = comm.recv(kTagWalkRequest, &source);
    if (!msg.empty() && msg[0] != 0) {
      aborted = true;
      aborted_flag = true;  // rank 0's own workers stop at their next directory
    }
    if (!aborted && msg.size() > 1) {
      try {
        for (DirRef& d : decode_dirs(msg.substr(1))) queue.push_back(std::move(d));
      } catch (const WireError&) {
        // A garbled request: the walk stops, and rank 0 names it (exit 1, not a quiet gap).
        aborted = true;
        aborted_flag = true;
        garbled = true;
      }
    }
    if (aborted) queue.clear();
    idle.push_back(source);
    while (!idle.empty() && !queue.empty()) {
      size_t take = std::clamp<size_t>(queue.size() / ranks, 1, 32);
      std::vector<DirRef> batch;
      for (size_t i = 0; i < take; ++i) {
        batch.push_back(std::move(queue.front()));
        queue.pop_front();
      }
      comm.send(idle.back(), kTagWalkWork, encode_dirs(batch));
      idle.pop_back();
    }
    if (queue.empty() && idle.size() == ranks) {
      for (int r : idle) comm.send(r, kTagWalkWork, "");
      return;
    }
  }
}

}  // namespace

bool make_dst_dir(int dst_dir_fd, const Plan& plan, const Entry& e, ErrorList& errors) {
  std::string name = plan.name(e);
  if (::mkdirat(dst_dir_fd, name.c_str(), 0700) == 0) return true;
  int err = errno;
  if (err == EEXIST) {
    struct stat st;
    if (::fstatat(dst_dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode))
      return true;
    errors.add("cannot overwrite non-directory " + plan.dst_path(e) + " with a directory");
    return false;
  }
  errors.add(io::Error::from_errno(err, "create directory " + plan.dst_path(e)).message);
  return false;
}

namespace {

// Rank 0: the roots' own entries (a root the visitor drops is left out); returns the
// directories to list first.
std::vector<DirRef> visit_roots(Plan& plan, ErrorList& errors, const RootVisitor& visit_root,
                                std::vector<uint8_t>& flags) {
  std::vector<DirRef> initial;
  for (uint32_t i = 0; i < plan.roots.size(); ++i) {
    const std::string& src = plan.roots[i].src;
    auto meta = io::stat_entry(AT_FDCWD, src.c_str());
    if (!meta) {
      errors.add(meta.error().message);
      continue;
    }
    Entry e;
    e.root = i;
    e.meta = *meta;
    if (e.meta.type == io::FileType::kSymlink) {
      if (auto t = io::read_link(AT_FDCWD, src.c_str())) e.link_target = std::move(t.value());
    }
    auto flag = visit_root(plan, e);
    if (!flag) continue;
    if (e.meta.type == io::FileType::kDirectory) initial.push_back(DirRef{i, ""});
    if (e.meta.type == io::FileType::kRegular) plan.total_file_bytes += e.meta.size_bytes;
    plan.entries.push_back(std::move(e));
    flags.push_back(*flag);
  }
  return initial;
}

// Each listed directory's kept entries joined into the plan, which is sized once instead of
// doubling (a grown vector briefly holds two copies); each part is freed as it is joined.
void join_parts(Plan& plan, std::vector<WalkOutput>& parts, std::vector<uint8_t>& flags) {
  size_t total = plan.entries.size();
  for (const WalkOutput& p : parts) total += p.entries.size();
  plan.entries.reserve(total);
  flags.reserve(total);
  for (WalkOutput& p : parts) {
    for (size_t n = 0; n < p.entries.size(); ++n) {
      plan.entries.push_back(std::move(p.entries[n]));
      flags.push_back(p.flags[n]);
    }
    p = WalkOutput{};
  }
  parts = {};
  for (uint32_t i = 0; i < plan.entries.size(); ++i) {
    if (plan.entries[i].meta.type == io::FileType::kRegular) plan.files.push_back(i);
  }
}

}  // namespace

// The walk phase on every rank. Returns this rank's entries (the roots on rank 0, and every
// child the visitor keeps from the directories this rank listed) with their action flags.
Plan distributed_walk(transport::Comm& comm, const std::vector<Root>& roots, unsigned threads,
                      ErrorList& errors, const WalkVisitor& visit, const RootVisitor& visit_root,
                      std::vector<uint8_t>& flags, const std::function<bool()>& stopping) {
  std::atomic<bool> aborted{false};
  bool garbled = false;  // set by rank 0's coordinator; read after it is joined
  auto stop_now = [&] { return aborted.load() || (stopping && stopping()); };
  Plan plan;
  plan.roots = roots;
  std::vector<DirRef> initial;
  if (comm.rank() == 0) initial = visit_roots(plan, errors, visit_root, flags);
  std::mutex mu;
  tbb::task_arena arena(static_cast<int>(threads));
  std::vector<WalkOutput> parts;  // each listed directory's kept entries (join_parts)
  // Lists one directory; its subdirectories go to `found`.
  auto list_one = [&](const DirRef& d, std::vector<DirRef>& found) {
    auto listing = io::read_directory(io::join_path(roots[d.root].src, d.rel));
    if (!listing) {
      errors.add(listing.error().message);
      return;
    }
    for (auto& err : listing->errors) errors.add(err.message);
    WalkOutput out;
    visit(plan, d, *listing, out);
    found = std::move(out.subdirs);
    if (out.entries.empty()) return;
    uint64_t bytes = 0;
    for (const Entry& e : out.entries) {
      if (e.meta.type == io::FileType::kRegular) bytes += e.meta.size_bytes;
    }
    std::lock_guard lock(mu);
    plan.total_file_bytes += bytes;
    parts.push_back(std::move(out));
  };
  std::thread coordinator;
  if (comm.size() == 1) {
    // Alone: directories found are fed straight back to the workers (work stealing), with
    // no round through a coordinator and no barrier at the end of a batch.
    arena.execute([&] {
      tbb::parallel_for_each(initial.begin(), initial.end(),
                             [&](const DirRef& d, tbb::feeder<DirRef>& feeder) {
                               if (stop_now()) return;
                               std::vector<DirRef> found;
                               list_one(d, found);
                               for (DirRef& s : found) feeder.add(std::move(s));
                             });
    });
  } else {
    if (comm.rank() == 0)
      coordinator =
          std::thread([&] { walk_coordinator(comm, std::move(initial), aborted, garbled); });
    std::vector<DirRef> found;
    for (;;) {
      comm.send(0, kTagWalkRequest, std::string(1, stop_now() ? '\1' : '\0') + encode_dirs(found));
      found.clear();
      std::string work = comm.recv(kTagWalkWork, nullptr);
      if (work.empty()) break;
      std::vector<DirRef> batch = decode_dirs(work);
      arena.execute([&] {
        tbb::parallel_for(size_t{0}, batch.size(), [&](size_t k) {
          if (stop_now()) return;
          std::vector<DirRef> sub;
          list_one(batch[k], sub);
          std::lock_guard lock(mu);
          for (DirRef& s : sub) found.push_back(std::move(s));
        });
      });
    }
  }
  if (coordinator.joinable()) coordinator.join();
  if (garbled) errors.add("walk: a rank sent a garbled request; the walk stopped early");
  join_parts(plan, parts, flags);
  return plan;
}

// Rank 0 learns the other ranks' error lists; returns them all (rank 0 first).
std::vector<std::string> gather_strings(transport::Comm& comm,
                                        const std::vector<std::string>& mine) {
  WireWriter w;
  w.u32(static_cast<uint32_t>(mine.size()));
  for (const auto& s : mine) w.str(s);
  std::vector<std::string> out;
  for (const std::string& blob : comm.allgather(w.take())) {
    WireReader r(blob);
    for (uint32_t n = r.u32(); n > 0; --n) out.push_back(r.str());
  }
  return out;
}

io::Result<std::vector<Root>> resolve_agreed(const CopyOptions& opts, transport::Comm& comm,
                                             bool sync_placement) {
  // Every rank checks the same arguments; all see the same verdict.
  io::Status valid = validate(opts);
  io::Result<std::vector<Root>> roots = io::Error::plain("");
  if (!valid) {
    roots = valid.error();
  } else if (sync_placement) {
    roots = resolve_sync_root(opts.sources, opts.destination);
  } else {
    auto placed = resolve_placement(opts.sources, opts.destination);
    if (placed) {
      roots = placed->roots;
      if (comm.rank() == 0) {
        // One rank writes the record, before anything is created; all agree on the outcome.
        if (placed->honoured) io::log_info(placed->note);
        if (auto st = apply_placement_record(placed.value(), opts.destination); !st)
          roots = st.error();
      }
    } else {
      roots = placed.error();
    }
  }
  if (!comm.agree(roots.ok())) {
    if (roots.ok()) return io::Error::plain("another rank refused the arguments");
  }
  return roots;
}

}  // namespace barge::pipeline
