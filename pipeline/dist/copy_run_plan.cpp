// The MPI copy's first phases: select, hard links, plan, pool, resume.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/log.hpp"
#include "io/path_ops.hpp"
#include "io/xattr.hpp"
#include "pipeline/core/rank_stats.hpp"
#include "pipeline/core/wire.hpp"
#include "pipeline/dist/chunks.hpp"
#include "pipeline/dist/copy_run.hpp"

#include <map>

namespace barge::pipeline {

// select: the regular files to transfer; with --resume, files already in place are left out.
void CopyRun::select() {
  result_.started = true;
  comm_.barrier();
  include_.assign(plan_.entries.size(), 0);
  for (uint32_t f : plan_.files) include_[f] = (flags_[f] & kActTransfer) ? 1 : 0;
  if (!opts_.resume) return;
  journal_state_ = Journal::load(journal_dir_);
  DirFdCache dirs;
  for (uint32_t f : plan_.files) {
    if (include_[f] && in_place(plan_, plan_.entries[f], dirs)) {
      include_[f] = 0;
      in_place_files_.push_back(f);
    }
  }
  result_.skipped_files = in_place_files_.size();
}

// hard links: every rank learns every multi-link file; the member with the smallest
// (root, path) leads its group and is copied, the others are linked to it afterwards.
void CopyRun::hard_links() {
  WireWriter hw;
  for (uint32_t f : plan_.files) {
    const Entry& e = plan_.entries[f];
    if (e.meta.nlink < 2) continue;
    hw.u64(e.meta.device);
    hw.u64(e.meta.inode);
    hw.u32(e.root);
    hw.str(e.rel);
  }
  std::map<std::pair<uint64_t, uint64_t>, std::pair<uint32_t, std::string>> leaders;
  for (const std::string& blob : comm_.allgather(hw.take())) {
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
  for (uint32_t f : plan_.files) {
    const Entry& e = plan_.entries[f];
    if (e.meta.nlink < 2) continue;
    const auto& lead = leaders[std::make_pair(e.meta.device, e.meta.inode)];
    if (lead.first == e.root && lead.second == e.rel) continue;
    followers_.push_back(f);
    include_[f] = 0;
    leader_of_[f] = io::join_path(plan_.roots[lead.first].dst, lead.second);
    leader_manifest_of_[f] = io::join_path(plan_.roots[lead.first].manifest_prefix, lead.second);
  }
}

// plan: the files cut into several chunks are exchanged (allgather); each gets a run-wide
// id and an owner (the rank that found it) and is handed out by the chunk coordinator.
void CopyRun::plan() {
  const uint64_t buffer_bytes = (opts_.chunk_bytes + 4095) / 4096 * 4096;
  WireWriter mine;
  std::vector<uint32_t> mine_from;
  for (uint32_t f : plan_.files) {
    if (!include_[f]) continue;
    if (chunk_count_for(plan_.entries[f].meta.size_bytes, opts_.chunk_bytes, buffer_bytes) > 1) {
      include_[f] = 0;
      write_entry(mine, plan_.entries[f]);
      mine_from.push_back(f);
      ++my_large_;
    }
  }
  std::vector<std::string> blobs = comm_.allgather(mine.take());
  for (size_t r = 0; r < blobs.size(); ++r) {
    WireReader rd(blobs[r]);
    for (size_t k = 0; !rd.done(); ++k) {
      Entry e = read_entry(rd);
      if (r == static_cast<size_t>(comm_.rank())) e.xattrs = plan_.entries[mine_from[k]].xattrs;
      origin_.push_back(r == static_cast<size_t>(comm_.rank()) ? mine_from[k]
                                                               : SharedFiles::kNoOrigin);
      chunk_counts_.push_back(chunk_count_for(e.meta.size_bytes, opts_.chunk_bytes, buffer_bytes));
      owner_.push_back(static_cast<uint32_t>(r));
      plan_.entries.push_back(std::move(e));
      include_.push_back(0);  // handed out by the chunk coordinator, not cut locally
    }
  }
  global_count_ = static_cast<uint32_t>(owner_.size());
}

// pool: as alone, no more buffers than this rank's small-file units plus every large chunk
// (a sync that changes little registers, pins and touches little memory); then the copy's
// context, with temporary names unique across ranks.
void CopyRun::pool() {
  size_t large_units = 0;
  for (uint32_t c : chunk_counts_) large_units += c;
  // A transfer from elsewhere: units in flight may carry a stored form too, and any file may
  // come to any rank.
  // A mirror rank has no files of its own to count: its share is whatever it is sent.
  if (net_ && net_->mirror) large_units = SIZE_MAX / 2;
  pool_ = std::make_unique<io::BufferPool>(
      opts_.chunk_bytes,
      pool_buffer_count(plan_, {.memory_bytes = opts_.memory_bytes,
                                .chunk_bytes = opts_.chunk_bytes,
                                .buffer_bytes = opts_.chunk_bytes,
                                .files_per_unit = opts_.max_files_per_unit,
                                .include = &include_,
                                .extra_units = large_units,
                                .min_buffers = net_ ? net_->min_units : 2,
                                .buffers_per_unit = net_ ? net_->buffers_per_unit : 1}));
  backends_ = std::make_unique<BackendSet>(
      io::BackendOptions{opts_.backend, opts_.queue_depth, pool_.get()});
  ctx_ = std::make_unique<CopyContext>(plan_, opts_, stats_, backends_->source());
  CopyContext& ctx = *ctx_;
  ctx.apply_owner = io::can_chown();
  ctx.shared_large = true;
  // Shared large files by run-wide id and a run-wide suffix (rank 0's); everything else by
  // (rank, index), so ranks never pick the same name.
  ctx.set_temp_suffix(comm_.broadcast(ctx.temp_suffix(), 0));
  ctx.temp_ids.resize(plan_.entries.size());
  for (uint32_t i = 0; i < local_count_; ++i)
    ctx.temp_ids[i] = (uint64_t{1} << 48) | (static_cast<uint64_t>(comm_.rank()) << 32) | i;
  for (uint32_t g = 0; g < global_count_; ++g) ctx.temp_ids[local_count_ + g] = g;
  if (!opts_.manifest_path.empty()) ctx.manifest = &manifest_;
  // A follower in place is listed once, through its leader's checksum (link_followers).
  std::erase_if(in_place_files_, [&](uint32_t f) { return leader_of_.count(f) > 0; });
  hash_in_place_for_manifest(ctx, in_place_files_);
  for (auto& e : walk_errors_.take()) ctx.errors.add(std::move(e));
  if (!walked_) return;
  if (const LiveStats* w = walked_->stats) stats_.add_done(*w);
  if (!walked_->fatal.empty()) ctx.set_fatal(walked_->fatal);
  stats_.files_total += walked_->stopped_entries.size();
  for (const std::string& e : walked_->stopped_entries) ctx.stopped_errors.add(e);
}

// resume: large files whose part survives continue from the chunks the journal lists,
// identically on every rank; the journal is opened for this run's chunks.
void CopyRun::resume() {
  done_chunks_.assign(plan_.entries.size(), nullptr);
  if (opts_.resume) {
    DirFdCache dirs;
    for (uint32_t g = 0; g < global_count_; ++g) {
      uint32_t f = local_count_ + g;
      const Entry& e = plan_.entries[f];
      auto it = journal_state_.find(ctx_->temp_name(f));
      if (it == journal_state_.end()) continue;
      int dirfd = dirs.get(plan_.dst_parent(e), e.rel.empty());
      struct stat st;
      if (dirfd >= 0 &&
          ::fstatat(dirfd, ctx_->temp_name(f).c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          S_ISREG(st.st_mode) && static_cast<uint64_t>(st.st_size) == e.meta.size_bytes) {
        ctx_->resume_parts.insert(f);
        done_chunks_[f] = &it->second;
      }
    }
  }
  if (global_count_ > 0) {
    if (comm_.rank() != 0) comm_.barrier();  // rank 0 made the directory (save_roots) already
    auto j = Journal::open(journal_dir_, comm_.rank());
    if (comm_.rank() == 0) comm_.barrier();
    if (j) {
      journal_ = std::move(j.value());
      ctx_->journal = journal_.get();
    } else {
      io::log_warn(j.error().message + " (a stopped run will not be resumable)");
    }
  }
  count_totals();
}

void CopyRun::count_totals() {
  for (uint32_t f : plan_.files) {
    if (include_[f]) {
      stats_.bytes_total += plan_.entries[f].meta.size_bytes;
      stats_.files_total += 1;
    }
  }
  // Shared large files count once, on their owner, less the chunks a resumed run has.
  for (uint32_t g = 0; g < global_count_; ++g) {
    if (!mine(g)) continue;
    uint64_t size = plan_.entries[local_count_ + g].meta.size_bytes;
    uint64_t left = size;
    if (const auto* d = done_chunks_[local_count_ + g]) {
      for (uint32_t c : *d) {
        uint64_t off = static_cast<uint64_t>(c) * opts_.chunk_bytes;
        if (off < size) left -= std::min<uint64_t>(opts_.chunk_bytes, size - off);
      }
    }
    stats_.bytes_total += left;
    stats_.files_total += 1;
  }
}

}  // namespace barge::pipeline
