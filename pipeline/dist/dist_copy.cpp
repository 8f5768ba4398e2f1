#include "pipeline/dist/dist_copy.hpp"

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
constexpr int kTagChunkRequest = 201;
constexpr int kTagChunkWork = 202;

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

namespace {}  // namespace

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
  if (comm.rank() == 0) {
    for (uint32_t i = 0; i < roots.size(); ++i) {
      auto meta = io::stat_entry(AT_FDCWD, roots[i].src.c_str());
      if (!meta) {
        errors.add(meta.error().message);
        continue;
      }
      Entry e;
      e.root = i;
      e.meta = *meta;
      if (e.meta.type == io::FileType::kSymlink) {
        if (auto t = io::read_link(AT_FDCWD, roots[i].src.c_str()))
          e.link_target = std::move(t.value());
      }
      auto flag = visit_root(plan, e);
      if (!flag) continue;
      if (e.meta.type == io::FileType::kDirectory) initial.push_back(DirRef{i, ""});
      if (e.meta.type == io::FileType::kRegular) plan.total_file_bytes += e.meta.size_bytes;
      plan.entries.push_back(std::move(e));
      flags.push_back(*flag);
    }
  }
  std::mutex mu;
  tbb::task_arena arena(static_cast<int>(threads));
  // Each listed directory's kept entries, joined once the walk is over: the plan's vector
  // is sized once instead of doubling (a grown vector briefly holds two copies).
  std::vector<WalkOutput> parts;
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
  size_t total = plan.entries.size();
  for (const WalkOutput& p : parts) total += p.entries.size();
  plan.entries.reserve(total);
  flags.reserve(total);
  for (WalkOutput& p : parts) {
    for (size_t n = 0; n < p.entries.size(); ++n) {
      plan.entries.push_back(std::move(p.entries[n]));
      flags.push_back(p.flags[n]);
    }
    p = WalkOutput{};  // freed as it is joined
  }
  parts = {};
  for (uint32_t i = 0; i < plan.entries.size(); ++i) {
    if (plan.entries[i].meta.type == io::FileType::kRegular) plan.files.push_back(i);
  }
  return plan;
}

namespace {

struct ChunkBatch {
  uint32_t global = 0;
  uint32_t first = 0;
  uint32_t count = 0;
};

// Rank 0's chunk coordinator: hands out batches of neighbouring chunks of the large files
// in order until none are left; exits after telling every rank so.
void chunk_coordinator(transport::Comm& comm, const std::vector<uint32_t>& chunk_counts,
                       const std::function<bool(uint32_t, uint32_t)>& done) {
  size_t file = 0;
  uint32_t next = 0;
  int told_done = 0;
  while (told_done < comm.size()) {
    int source = 0;
    (void)comm.recv(kTagChunkRequest, &source);
    for (;;) {
      while (file < chunk_counts.size() && next >= chunk_counts[file]) {
        ++file;
        next = 0;
      }
      // Resume: chunks an earlier run wrote are not handed out again (the last always is).
      if (file < chunk_counts.size() && next + 1 < chunk_counts[file] &&
          done(static_cast<uint32_t>(file), next)) {
        ++next;
        continue;
      }
      break;
    }
    if (file == chunk_counts.size()) {
      comm.send(source, kTagChunkWork, "");
      ++told_done;
      continue;
    }
    WireWriter w;
    uint32_t count = 1;
    while (count < kChunksPerBatch && next + count < chunk_counts[file] &&
           !(next + count + 1 < chunk_counts[file] &&
             done(static_cast<uint32_t>(file), next + count))) {
      ++count;
    }
    w.u32(static_cast<uint32_t>(file));
    w.u32(next);
    w.u32(count);
    next += count;
    comm.send(source, kTagChunkWork, w.take());
  }
}

std::string hostname() {
  char host[256] = {};
  ::gethostname(host, sizeof host - 1);
  return host;
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

}  // namespace

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

RunResult run_phases(transport::Comm& comm, const CopyOptions& opts, Plan plan,
                     std::vector<uint8_t> flags, Clock::time_point t0, double walk_seconds,
                     ErrorList& walk_errors, unsigned threads, bool dirs_if_changed,
                     const WalkTransfer* walked) {
  RunResult result;
  result.started = true;
  comm.barrier();

  // plan: exchange the files that are cut into several chunks
  const uint64_t buffer_bytes = (opts.chunk_bytes + 4095) / 4096 * 4096;
  std::vector<uint8_t> include(plan.entries.size(), 0);
  WireWriter mine;
  uint32_t my_large = 0;
  for (uint32_t f : plan.files) include[f] = (flags[f] & kActTransfer) ? 1 : 0;
  std::string journal_dir = Journal::dir_for(opts.destination);
  JournalState journal_state;
  std::vector<uint32_t> in_place_files;
  if (opts.resume) {
    journal_state = Journal::load(journal_dir);
    DirFdCache dirs;
    for (uint32_t f : plan.files) {
      if (include[f] && in_place(plan, plan.entries[f], dirs)) {
        include[f] = 0;
        in_place_files.push_back(f);
      }
    }
    result.skipped_files = in_place_files.size();
  }
  // Hard links: every rank learns every multi-link file; the member with the smallest
  // (root, path) leads its group and is copied, the others are linked to it afterwards.
  std::vector<uint32_t> followers;
  std::unordered_map<uint32_t, std::string> leader_of;  // follower → leader's destination path
  std::unordered_map<uint32_t, std::string> leader_manifest_of;  // ... and its manifest path
  {
    WireWriter hw;
    for (uint32_t f : plan.files) {
      const Entry& e = plan.entries[f];
      if (e.meta.nlink < 2) continue;
      hw.u64(e.meta.device);
      hw.u64(e.meta.inode);
      hw.u32(e.root);
      hw.str(e.rel);
    }
    std::map<std::pair<uint64_t, uint64_t>, std::pair<uint32_t, std::string>> leaders;
    for (const std::string& blob : comm.allgather(hw.take())) {
      WireReader r(blob);
      while (!r.done()) {
        uint64_t dev = r.u64(), ino = r.u64();
        uint32_t root = r.u32();
        std::string rel = r.str();
        auto key = std::make_pair(dev, ino);
        auto it = leaders.find(key);
        if (it == leaders.end() || leads_link_group(root, rel, it->second.first, it->second.second))
          leaders[key] = {root, rel};
      }
    }
    for (uint32_t f : plan.files) {
      const Entry& e = plan.entries[f];
      if (e.meta.nlink < 2) continue;
      const auto& lead = leaders[std::make_pair(e.meta.device, e.meta.inode)];
      if (lead.first == e.root && lead.second == e.rel) continue;
      followers.push_back(f);
      include[f] = 0;
      leader_of[f] = io::join_path(plan.roots[lead.first].dst, lead.second);
      leader_manifest_of[f] = io::join_path(plan.roots[lead.first].manifest_prefix, lead.second);
    }
  }
  for (uint32_t f : plan.files) {
    if (!include[f]) continue;
    if (chunk_count_for(plan.entries[f].meta.size_bytes, opts.chunk_bytes, buffer_bytes) > 1) {
      include[f] = 0;
      write_entry(mine, plan.entries[f]);
      ++my_large;
    }
  }
  std::vector<std::string> blobs = comm.allgather(mine.take());
  const uint32_t local_count = static_cast<uint32_t>(plan.entries.size());
  std::vector<uint32_t> owner;  // per global large file
  std::vector<uint32_t> chunk_counts;
  for (size_t r = 0; r < blobs.size(); ++r) {
    WireReader rd(blobs[r]);
    while (!rd.done()) {
      Entry e = read_entry(rd);
      chunk_counts.push_back(chunk_count_for(e.meta.size_bytes, opts.chunk_bytes, buffer_bytes));
      owner.push_back(static_cast<uint32_t>(r));
      plan.entries.push_back(std::move(e));
      include.push_back(0);  // handed out by the chunk coordinator, not cut locally
    }
  }
  const uint32_t global_count = static_cast<uint32_t>(owner.size());

  // As alone: no more buffers than this rank's small-file units plus every large chunk (a
  // sync that changes little registers, pins and touches little memory).
  size_t large_units = 0;
  for (uint32_t c : chunk_counts) large_units += c;
  io::BufferPool pool(opts.chunk_bytes,
                      pool_buffer_count(plan, {.memory_bytes = opts.memory_bytes,
                                               .chunk_bytes = opts.chunk_bytes,
                                               .buffer_bytes = opts.chunk_bytes,
                                               .files_per_unit = opts.max_files_per_unit,
                                               .include = &include,
                                               .extra_units = large_units,
                                               .min_buffers = 2}));
  BackendSet backends(io::BackendOptions{opts.backend, opts.queue_depth, &pool});
  LiveStats stats;
  CopyContext ctx(plan, opts, stats, backends.source());
  ctx.apply_owner = io::can_chown();
  ctx.shared_large = true;
  // Temporary names: shared large files by global id and a run-wide suffix (rank 0's);
  // everything else by (rank, index), so ranks never pick the same name.
  ctx.set_temp_suffix(comm.broadcast(ctx.temp_suffix(), 0));
  ctx.temp_ids.resize(plan.entries.size());
  for (uint32_t i = 0; i < local_count; ++i) {
    ctx.temp_ids[i] = (uint64_t{1} << 48) | (static_cast<uint64_t>(comm.rank()) << 32) | i;
  }
  for (uint32_t g = 0; g < global_count; ++g) ctx.temp_ids[local_count + g] = g;
  ManifestWriter manifest;
  if (!opts.manifest_path.empty()) ctx.manifest = &manifest;
  // A follower in place is listed once, through its leader's checksum (link_followers).
  std::erase_if(in_place_files, [&](uint32_t f) { return leader_of.count(f) > 0; });
  hash_in_place_for_manifest(ctx, in_place_files);
  for (auto& e : walk_errors.take()) ctx.errors.add(std::move(e));
  if (walked && walked->stats) {
    const LiveStats& w = *walked->stats;
    stats.files_done += w.files_done.load();
    stats.files_total += w.files_done.load();
    stats.bytes_committed += w.bytes_committed.load();
    stats.bytes_done += w.bytes_done.load();
    stats.bytes_total += w.bytes_done.load();
    stats.bytes_verified += w.bytes_verified.load();
    for (int s = 0; s < kStageCount; ++s) stats.stage_busy_ns[s] += w.stage_busy_ns[s].load();
  }
  if (walked && !walked->fatal.empty()) ctx.set_fatal(walked->fatal);
  if (walked) {
    stats.files_total += walked->stopped_entries.size();
    for (const std::string& e : walked->stopped_entries) ctx.stopped_errors.add(e);
  }
  // Resume: files in place were skipped before the exchange (include); large files whose
  // part survives continue from the chunks the journal lists, identically on every rank.
  std::vector<const std::unordered_set<uint32_t>*> done_chunks(plan.entries.size(), nullptr);
  if (opts.resume) {
    DirFdCache dirs;
    for (uint32_t g = 0; g < global_count; ++g) {
      uint32_t f = local_count + g;
      const Entry& e = plan.entries[f];
      auto it = journal_state.find(ctx.temp_name(f));
      if (it == journal_state.end()) continue;
      int dirfd = dirs.get(plan.dst_parent(e), e.rel.empty());
      struct stat st;
      if (dirfd >= 0 && ::fstatat(dirfd, ctx.temp_name(f).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) == e.meta.size_bytes) {
        ctx.resume_parts.insert(f);
        done_chunks[f] = &it->second;
      }
    }
  }
  auto global_done = [&](uint32_t g, uint32_t chunk) {
    const auto* d = done_chunks[local_count + g];
    return d && d->count(chunk) > 0;
  };
  std::unique_ptr<Journal> journal;
  if (global_count > 0) {
    if (comm.rank() != 0) comm.barrier();  // rank 0 made the directory (save_roots) already
    auto j = Journal::open(journal_dir, comm.rank());
    if (comm.rank() == 0) comm.barrier();
    if (j) {
      journal = std::move(j.value());
      ctx.journal = journal.get();
    } else {
      io::log_warn(j.error().message + " (a stopped run will not be resumable)");
    }
  }
  for (uint32_t f : plan.files) {
    if (include[f]) {
      stats.bytes_total += plan.entries[f].meta.size_bytes;
      stats.files_total += 1;
    }
  }
  // Shared large files count once, on their owner, less the chunks a resumed run has.
  for (uint32_t g = 0; g < global_count; ++g) {
    if (owner[g] != static_cast<uint32_t>(comm.rank())) continue;
    uint64_t size = plan.entries[local_count + g].meta.size_bytes;
    uint64_t left = size;
    if (const auto* d = done_chunks[local_count + g]) {
      for (uint32_t c : *d) {
        uint64_t off = static_cast<uint64_t>(c) * opts.chunk_bytes;
        if (off < size) left -= std::min<uint64_t>(opts.chunk_bytes, size - off);
      }
    }
    stats.bytes_total += left;
    stats.files_total += 1;
  }

  std::atomic<bool> stopped_by_peer{false};  // this rank stopped because another did
  std::optional<io::ScopedUmask> umask0(std::in_place, 0);
  // create: symlinks and special files by their finder; large-file temporaries by owners
  {
    DirFdCache dirs;
    for (uint32_t i = 0; i < local_count; ++i) {
      const Entry& e = plan.entries[i];
      if (e.meta.type == io::FileType::kDirectory) ++result.dirs;
      if (!(flags[i] & kActCreate)) continue;
      int fd = dirs.get(plan.dst_parent(e), e.rel.empty());
      if (fd < 0) {
        ctx.errors.add(
            io::Error::from_errno(errno, "open directory " + plan.dst_parent(e)).message);
        continue;
      }
      if (e.meta.type == io::FileType::kSocket || e.meta.type == io::FileType::kUnknown) {
        ctx.errors.add(plan.src_path(e) + ": " + io::file_type_name(e.meta.type) + " not copied");
        continue;
      }
      create_special(ctx, fd, i, result);
    }
    uint32_t first_own = 0;
    for (uint32_t g = 0; g < global_count && owner[g] < static_cast<uint32_t>(comm.rank()); ++g)
      ++first_own;
    for (uint32_t g = first_own; g < first_own + my_large; ++g) {
      uint32_t f = local_count + g;
      const Entry& e = plan.entries[f];
      int dirfd = dirs.get(plan.dst_parent(e), e.rel.empty());
      bool reused = ctx.resume_parts.count(f) > 0;
      int fd = dirfd < 0 ? -1
                         : ::openat(dirfd, ctx.temp_name(f).c_str(),
                                    O_WRONLY | O_CREAT | O_CLOEXEC | (reused ? 0 : O_TRUNC),
                                    e.meta.mode & 0777);
      if (fd < 0) {
        int err = errno;
        ctx.fail_file(f, io::Error::from_errno(err, "create " + plan.dst_path(e)).message);
        if (err == ENOSPC || err == EDQUOT)
          ctx.set_fatal(io::Error::from_errno(err, "create " + plan.dst_path(e)).message);
        continue;
      }
      int rc = reused ? 0
               : io::is_sparse(e.meta)
                   ? (::ftruncate(fd, static_cast<off_t>(e.meta.size_bytes)) == 0 ? 0 : errno)
                   : ::posix_fallocate(fd, 0, static_cast<off_t>(e.meta.size_bytes));
      if (rc == ENOSPC || rc == EDQUOT)
        ctx.set_fatal(io::Error::from_errno(rc, "write " + plan.dst_path(e)).message);
      ::close(fd);
    }
  }
  bool ok = comm.agree(ctx.fatal().empty());
  if (!ok && ctx.fatal().empty()) {
    stopped_by_peer = true;  // the report names the other rank's cause
    ctx.set_fatal("another rank stopped the run");
  }

  // transfer
  double busy = 0;
  if (ok) {
    std::thread coordinator;
    if (comm.rank() == 0)
      coordinator = std::thread([&] { chunk_coordinator(comm, chunk_counts, global_done); });
    UnitCutter cutter(plan, opts.chunk_bytes, pool.buffer_bytes(), opts.max_files_per_unit,
                      &include);
    ChunkBatch batch;
    bool local_done = false, remote_done = false;
    auto next_unit = [&](std::vector<Extent>& out) -> bool {
      if (!local_done) {
        if (cutter.next(out)) return true;
        local_done = true;
      }
      while (!remote_done) {
        if (batch.count > 0) {
          uint32_t f = local_count + batch.global;
          uint64_t size = plan.entries[f].meta.size_bytes;
          uint64_t off = static_cast<uint64_t>(batch.first) * opts.chunk_bytes;
          out.assign(1, Extent{f, batch.first, chunk_counts[batch.global], off,
                               std::min<uint64_t>(opts.chunk_bytes, size - off), 0});
          ++batch.first;
          --batch.count;
          return true;
        }
        comm.send(0, kTagChunkRequest, "");
        std::string reply = comm.recv(kTagChunkWork, nullptr);
        if (reply.empty()) {
          remote_done = true;
          break;
        }
        WireReader r(reply);
        batch.global = r.u32();
        batch.first = r.u32();
        batch.count = r.u32();
        if (batch.global >= global_count) throw WireError("chunk batch for an unknown file");
      }
      return false;
    };
    auto tb = Clock::now();
    std::unique_ptr<transport::AsyncSum> across = comm.make_async_sum();
    try {
      // Every rank takes part in the progress sums; rank 0 prints them.
      using RunState = Progress::RunState;
      Progress::Across share{
          across.get(), comm.size(),
          [&ctx] {
            if (!ctx.stop.load()) return RunState::kRunning;
            return ctx.resumable.load() ? RunState::kSignalled : RunState::kFailed;
          },
          [&ctx, &stopped_by_peer](RunState peer) {
            stopped_by_peer = true;
            if (peer == RunState::kSignalled) {
              ctx.resumable = true;
              ctx.set_fatal("stopped by a signal to another rank; rerun with --resume to finish");
            } else {
              ctx.set_fatal(
                  "stopped because another rank failed (its error is above); rerun "
                  "with --resume once fixed");
            }
          }};
      Progress progress(stats, comm.rank() == 0 ? opts.progress : ProgressMode::kNone, "copy",
                        opts.progress_interval_s, std::move(share));
      JournalFlusher flusher(ctx.journal, ctx);
      transfer(ctx, pool, threads, next_unit);
    } catch (const std::exception& ex) {
      ctx.set_fatal(std::string("transfer: ") + ex.what());
    }
    // A rank that stopped early still answers the coordinator's protocol to the end.
    try {
      while (!remote_done) {
        comm.send(0, kTagChunkRequest, "");
        std::string reply = comm.recv(kTagChunkWork, nullptr);
        if (reply.empty()) {
          remote_done = true;
        } else {
          // Chunks this rank will never write: their files must not be put in place.
          WireReader r(reply);
          uint32_t g = r.u32();
          if (g < global_count)
            ctx.fail_file(local_count + g, plan.dst_path(plan.entries[local_count + g]) +
                                               ": not copied (run stopped)");
        }
      }
    } catch (const std::exception& ex) {
      ctx.set_fatal(std::string("transfer: ") + ex.what());
    }
    busy = since(tb);
    if (coordinator.joinable()) coordinator.join();
  }

  // finalize: which large files failed anywhere, then owners put the rest in place
  WireWriter failed_mine;
  for (uint32_t g = 0; g < global_count; ++g) {
    if (ctx.file_failed(local_count + g)) failed_mine.u32(g);
  }
  std::vector<uint8_t> failed_anywhere(global_count, 0);
  for (const std::string& blob : comm.allgather(failed_mine.take())) {
    WireReader r(blob);
    while (!r.done()) {
      uint32_t g = r.u32();
      if (g < global_count) failed_anywhere[g] = 1;
    }
  }
  bool all_ok = comm.agree(ctx.fatal().empty());
  {
    DirFdCache dirs;
    for (uint32_t g = 0; g < global_count; ++g) {
      if (owner[g] != static_cast<uint32_t>(comm.rank())) continue;
      uint32_t f = local_count + g;
      const Entry& e = plan.entries[f];
      int dirfd = dirs.get(plan.dst_parent(e), e.rel.empty());
      if (dirfd < 0) continue;
      std::string tmp = ctx.temp_name(f);
      if (!all_ok || failed_anywhere[g]) {
        // A stopped run keeps its parts for --resume; a file that failed loses its part.
        if (all_ok) ::unlinkat(dirfd, tmp.c_str(), 0);
        if (all_ok && !ctx.file_failed(f))
          ctx.fail_file(f, plan.dst_path(e) + ": a chunk failed on another rank");
        continue;
      }
      io::UniqueFd fd(::openat(dirfd, tmp.c_str(), O_RDWR | O_CLOEXEC));
      io::Status st = fd.valid() ? io::Status::success()
                                 : io::Error::from_errno(errno, "open " + plan.dst_path(e));
      if (st && ctx.manifest) {
        // Chunks were hashed on several ranks; the owner hashes the whole written file.
        auto digest = detail::hash_fd(fd.get(), plan.dst_path(e));
        if (digest) {
          manifest.add(plan.manifest_path(e), digest->hash);
        } else {
          st = digest.error();
        }
      }
      if (st) st = io::apply_meta_fd(fd.get(), e.meta, ctx.needs_chown(e), plan.dst_path(e));
      if (st && opts.xattrs) st = io::copy_xattrs(plan.src_path(e), fd.get(), plan.dst_path(e));
      if (st) st = fd.close();
      if (st && ::renameat(dirfd, tmp.c_str(), dirfd, plan.name(e).c_str()) != 0) {
        st = io::Error::from_errno(errno, "rename into place " + plan.dst_path(e));
      }
      if (!st) {
        ::unlinkat(dirfd, tmp.c_str(), 0);
        ctx.fail_file(f, st.error().message);
        continue;
      }
      stats.files_done.fetch_add(1);
      stats.bytes_committed.fetch_add(e.meta.size_bytes);
    }
  }
  // hard-link followers, once every leader is in place (owners renamed theirs above)
  comm.barrier();
  stats.files_done += link_followers(
      ctx, followers, [&](uint32_t f) { return leader_of[f]; },
      [&](uint32_t f) { return leader_manifest_of[f]; },
      [&](uint32_t f) {
        // The leader may live on another rank: it is in place when the file there is the
        // one this follower shares its inode with in the source.
        struct stat st;
        const io::FileMeta& m = plan.entries[f].meta;
        return all_ok && ::stat(leader_of[f].c_str(), &st) == 0 &&
               static_cast<uint64_t>(st.st_size) == m.size_bytes &&
               st.st_mtim.tv_sec == m.mtime.tv_sec && st.st_mtim.tv_nsec == m.mtime.tv_nsec;
      },
      dirs_if_changed);
  comm.barrier();
  // metadata-only changes (sync: same content, other mode, owner or times)
  {
    DirFdCache dirs;
    for (uint32_t i = 0; i < local_count; ++i) {
      const Entry& e = plan.entries[i];
      if (e.meta.type == io::FileType::kDirectory || (flags[i] & (kActTransfer | kActCreate)) ||
          !(flags[i] & kActMeta)) {
        continue;
      }
      int dirfd = dirs.get(plan.dst_parent(e), e.rel.empty());
      io::Status st =
          dirfd < 0 ? io::Error::from_errno(errno, "open directory " + plan.dst_parent(e))
                    : io::apply_meta_path(dirfd, plan.name(e).c_str(), e.meta, ctx.apply_owner);
      if (st && opts.xattrs) st = io::copy_xattrs(plan.src_path(e), -1, plan.dst_path(e));
      if (!st) ctx.errors.add(st.error().message);
    }
  }
  comm.barrier();
  // directory metadata, after every rank's entries are in place
  for (uint32_t i = 0; i < local_count; ++i) {
    const Entry& e = plan.entries[i];
    if (e.meta.type != io::FileType::kDirectory || !(flags[i] & kActMeta)) continue;
    auto fd = io::open_dir_path(plan.dst_path(e), io::DirOpen::kList, e.rel.empty());
    if (fd && opts.xattrs) {
      if (auto xs = io::copy_xattrs(plan.src_path(e), fd->get(), plan.dst_path(e)); !xs)
        ctx.errors.add(xs.error().message);
    }
    if (fd && dirs_if_changed) {
      struct stat st;
      if (::fstat(fd->get(), &st) == 0 && (st.st_mode & 07777) == e.meta.mode &&
          (!ctx.apply_owner || (st.st_uid == e.meta.uid && st.st_gid == e.meta.gid)) &&
          st.st_mtim.tv_sec == e.meta.mtime.tv_sec && st.st_mtim.tv_nsec == e.meta.mtime.tv_nsec) {
        continue;  // unchanged: a no-op sync writes nothing
      }
    }
    io::Status st =
        fd ? io::apply_meta_fd(fd->get(), e.meta, ctx.apply_owner, plan.dst_path(e)) : fd.error();
    if (!st) ctx.errors.add(st.error().message);
  }
  umask0.reset();

  // report
  RankStats me;
  me.rank = comm.rank();
  me.host = hostname();
  me.bytes = stats.bytes_done.load();
  me.files = stats.files_done.load();
  me.busy_seconds = busy;
  me.walk_seconds = walk_seconds;
  WireWriter w;
  w.str(me.host);
  w.u64(me.bytes);
  w.u64(me.files);
  w.u64(static_cast<uint64_t>(me.busy_seconds * 1e9));
  w.u64(static_cast<uint64_t>(me.walk_seconds * 1e9));
  w.u64(peak_rss_bytes());
  w.u64(stats.bytes_committed.load());
  w.u64(stats.bytes_verified.load());
  w.u64(result.dirs);
  w.u64(result.symlinks);
  w.u64(result.others);
  for (int s = 0; s < kStageCount; ++s) w.u64(stats.stage_busy_ns[s].load());
  double min_busy = 1e300, max_busy = 0;
  RunResult total;
  for (const std::string& blob : comm.allgather(w.take())) {
    WireReader r(blob);
    RankStats k;
    k.rank = static_cast<int>(total.ranks.size());
    k.host = r.str();
    k.bytes = r.u64();
    k.files = r.u64();
    k.busy_seconds = static_cast<double>(r.u64()) / 1e9;
    k.walk_seconds = static_cast<double>(r.u64()) / 1e9;
    k.peak_rss_bytes = r.u64();
    total.bytes += r.u64();
    total.bytes_verified += r.u64();
    total.dirs += r.u64();
    total.symlinks += r.u64();
    total.others += r.u64();
    for (int s = 0; s < kStageCount; ++s) total.stage_busy_ns[s] += r.u64();
    total.files += k.files;
    total.bytes_transferred += k.bytes;
    min_busy = std::min(min_busy, k.busy_seconds);
    max_busy = std::max(max_busy, k.busy_seconds);
    total.ranks.push_back(std::move(k));
  }
  total.balance = max_busy > 0 ? min_busy / max_busy : 1.0;
  total.started = true;
  total.walk_seconds = walk_seconds;
  total.errors = gather_strings(comm, ctx.errors.take());
  total.stopped_entries = gather_strings(comm, ctx.stopped_errors.take());
  uint64_t not_copied = ctx.fatal().empty() ? 0 : stats.files_total - stats.files_done;
  comm.allreduce_sum(std::span<uint64_t>(&not_copied, 1));
  // The report names the cause: a rank's own failure before "stopped because of another".
  auto fatal_if = [&](bool want) {
    return want && !ctx.fatal().empty() ? std::vector<std::string>{ctx.fatal()}
                                        : std::vector<std::string>{};
  };
  std::vector<std::string> fatals = gather_strings(comm, fatal_if(!stopped_by_peer));
  if (fatals.empty()) fatals = gather_strings(comm, fatal_if(stopped_by_peer));
  if (!fatals.empty()) total.fatal = fatals.front();
  if (!total.fatal.empty()) total.files_not_copied = not_copied;

  // The manifest lists every rank's files, written once by rank 0.
  if (ctx.manifest) {
    WireWriter mw;
    std::vector<ManifestEntry> mine = manifest.entries();
    mw.u64(mine.size());
    for (const ManifestEntry& m : mine) {
      mw.str(m.path);
      mw.u64(m.hash.high);
      mw.u64(m.hash.low);
    }
    // Hard-link followers: a leader's checksum may be on another rank, so they resolve here.
    for (const auto& [path, leader] : manifest.links()) {
      mw.str(path);
      mw.str(leader);
    }
    std::vector<std::string> parts = comm.allgather(mw.take());
    if (comm.rank() == 0 && total.fatal.empty()) {
      ManifestWriter all;
      for (const std::string& part : parts) {
        WireReader r(part);
        for (uint64_t n = r.u64(); n > 0; --n) {
          std::string path = r.str();
          Hash128 h;
          h.high = r.u64();
          h.low = r.u64();
          all.add(std::move(path), h);
        }
        while (!r.done()) {
          std::string path = r.str();
          all.add_link(std::move(path), r.str());
        }
      }
      if (auto st = all.write_to(opts.manifest_path); !st) total.fatal = st.error().message;
    }
  }
  total.io_backend = backends.name();
  total.buffers_registered = backends.registered();
  total.seconds = since(t0);
  uint64_t rss = peak_rss_bytes();
  comm.allreduce_max(std::span<uint64_t>(&rss, 1));
  total.peak_rss_bytes = rss;
  uint64_t code = static_cast<uint64_t>(
      exit_code_for(ctx.resumable.load(), !total.fatal.empty(), !total.errors.empty()));
  comm.allreduce_max(std::span<uint64_t>(&code, 1));
  total.exit_code = static_cast<int>(code);
  total.resumable = code == kExitResumable;
  uint64_t skipped = result.skipped_files;
  comm.allreduce_sum(std::span<uint64_t>(&skipped, 1));
  total.skipped_files = skipped;
  comm.barrier();  // every rank's journal is closed... after the report
  if (code == kExitOk && comm.rank() == 0) Journal::remove(journal_dir);
  return total;
}

}  // namespace barge::pipeline
