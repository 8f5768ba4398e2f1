#include "pipeline/repo/restore_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "io/metadata.hpp"
#include "io/path_ops.hpp"
#include "io/xattr.hpp"
#include "pipeline/engine/codec_stages.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/engine/graph.hpp"
#include "pipeline/repo/repository.hpp"

namespace barge::pipeline::restore {

std::string RestoreFiles::dst(const repo::SnapEntry& e) const {
  const std::string root = destination_of(opts_.destination).path;
  return e.path.empty() ? root : io::join_path(root, e.path);
}

// restore = pack-fetch → decompress+check → write → commit, over the chunks of `mine`'s
// files (Extent::file is the position in `mine`), small files batched into one unit.
void RestoreFiles::run(const std::vector<uint32_t>& mine, unsigned threads, RunResult& result) {
  mine_ = &mine;
  open_ = std::make_unique<OpenFile[]>(mine.size());
  uint64_t max_raw = 0, max_stored = 0, units = 1;
  for (size_t k = 0; k < mine.size(); ++k) {
    const auto& chunks = chunks_of(k);
    open_[k].left.store(std::max<uint32_t>(1, static_cast<uint32_t>(chunks.size())));
    units += std::max<size_t>(1, chunks.size());
    for (const repo::BlobRef& c : chunks) {
      max_raw = std::max<uint64_t>(max_raw, c.raw_bytes);
      max_stored = std::max<uint64_t>(max_stored, c.stored_bytes);
    }
  }
  const repo::BlobPool size =
      repo::blob_pool(max_raw, max_stored, opts_.memory_bytes, units, threads);
  const uint64_t buffer_bytes = size.buffer_bytes;
  io::BufferPool pool(size.buffer_bytes, size.count);
  BackendSet backends(io::BackendOptions{opts_.backend, opts_.queue_depth, &pool});
  const BackendSource backend = backends.source();
  auto fail_item = [this](Item& it, const io::Error& e) {
    it.failed = true;
    const repo::BlobRef& ref = chunks_of(it.ext.file)[it.ext.chunk];
    fail_file(it.ext.file, dst(entry_of(it.ext.file)) + ": not restored: chunk at offset " +
                               std::to_string(ref.file_offset) + " in pack " +
                               snap_.packs[ref.pack] + ": " + e.message);
  };
  repo::PackFetchStage fetch(
      [this](uint32_t pack, std::string* err) { return packs_.get(pack, err); }, backend,
      fail_item);
  DecompressCheckStage check(
      [&](Item& it, const std::string& why) { fail_item(it, io::Error::plain(why)); });
  size_t next_file = 0, next_chunk = 0;
  Assembly a;
  a.buffers_per_unit = 2;
  a.next = [&](WorkUnit& u) { return cut(u, buffer_bytes, next_file, next_chunk); };
  a.stopping = [] { return stop_signal().load() != 0; };
  a.stages = {{kStagePackFetch, StageKind::kIo, [&](WorkUnit& u) { fetch(u); }},
              {kStageDecompress, StageKind::kCpu, [&](WorkUnit& u) { check(u); }},
              {kStageWrite, StageKind::kIo, [&](WorkUnit& u) { write_unit(u, backend()); }}};
  a.last = [&](WorkUnit* u, const Emit& emit) {
    commit_unit(*u);
    emit(u);
  };
  a.on_throw = [&](WorkUnit& u, const std::string& why) {
    for (Item& it : u.items) fail_item(it, io::Error::plain(why));
  };
  run_graph(a, pool, stats_, threads);
  // Files a stop left unfinished: their unnamed inodes go away with their descriptors.
  open_.reset();
  result.io_backend = backends.name();
  result.buffers_registered = backends.registered();
}

void RestoreFiles::fail_file(uint32_t k, std::string why) {
  if (!open_[k].failed.exchange(true)) fail_((*mine_)[k], std::move(why));
}

// Fills `u` with the next chunks: as many as fit one buffer (and their stored forms the
// aux buffer), at most max_files_per_unit; a file without data gets one empty item.
bool RestoreFiles::cut(WorkUnit& u, uint64_t cap, size_t& k, size_t& c) const {
  repo::BlobUnitFill fill(u, cap, opts_.max_files_per_unit);
  while (k < mine_->size() && !fill.full()) {
    const auto& chunks = chunks_of(static_cast<uint32_t>(k));
    Item it;
    if (!chunks.empty()) {
      const repo::BlobRef& ref = chunks[c];
      it = repo::blob_item(ref, ref.pack);
      it.ext.chunk = static_cast<uint32_t>(c);
      it.ext.chunk_count = static_cast<uint32_t>(chunks.size());
      it.ext.offset_bytes = ref.file_offset;
    }
    it.ext.file = static_cast<uint32_t>(k);
    if (!fill.add(std::move(it))) break;
    if (chunks.empty() || ++c == chunks.size()) {
      c = 0;
      ++k;
    }
  }
  return !u.items.empty();
}

// Opens file k's unnamed inode beneath its parent on first use; -1 once it failed.
int RestoreFiles::open_file(uint32_t k, ParentCache& parents) {
  OpenFile& f = open_[k];
  std::lock_guard lock(f.mu);
  if (!f.tried) {
    f.tried = true;
    const repo::SnapEntry& e = entry_of(k);
    int pfd = parents.get(parent_of(e.path));
    if (pfd < 0) {
      fail_file(k, io::Error::from_errno(errno, "open parent of " + dst(e)).message);
      return -1;
    }
    // Created with its final permission bits (the umask is 0 here); the commit sets the
    // mode again, as a default ACL may have masked them.
    f.fd.reset(::openat(pfd, ".", O_TMPFILE | O_WRONLY | O_CLOEXEC, e.meta.mode & 0777));
    f.chown = apply_owner_ && (e.meta.uid != ::geteuid() || e.meta.gid != parents.new_gid());
    if (!f.fd.valid()) {
      fail_file(k, io::Error::from_errno(errno, "create " + dst(e)).message);
    } else if (io::is_sparse(e.meta) &&  // otherwise the writes give the file its length
               ::ftruncate(f.fd.get(), static_cast<off_t>(e.meta.size_bytes)) != 0) {
      fail_file(k, io::Error::from_errno(errno, "write " + dst(e)).message);
      f.fd.reset();
    }
  }
  return f.failed.load() ? -1 : f.fd.get();
}

// write: every checked chunk into its file's unnamed inode, one batch through the ring. A
// sparse file stays sparse: its zero blocks are left as holes (the inode was sized with
// ftruncate, so they read back as zeros).
void RestoreFiles::write_unit(WorkUnit& u, io::IoBackend& backend) {
  ParentCache parents(root_fd_);
  std::vector<io::IoOp> ops;
  std::vector<size_t> op_item;
  for (size_t n = 0; n < u.items.size(); ++n) {
    Item& it = u.items[n];
    if (it.failed) continue;
    int fd = open_file(it.ext.file, parents);
    if (fd < 0) {
      it.failed = true;
      continue;
    }
    std::span<const std::byte> raw = u.bytes(it);
    for (auto [begin, end] : write_ranges(raw, io::is_sparse(entry_of(it.ext.file).meta))) {
      ops.push_back({io::IoKind::kWrite, fd, const_cast<std::byte*>(raw.data()) + begin,
                     end - begin, it.ext.offset_bytes + begin, u.buffer.index()});
      op_item.push_back(n);
    }
  }
  backend.run(ops);
  for (size_t n = 0; n < ops.size(); ++n) {
    Item& it = u.items[op_item[n]];
    if (ops[n].error == 0 && ops[n].done_bytes == ops[n].length_bytes) continue;
    it.failed = true;
    fail_file(it.ext.file, io::Error::from_errno(ops[n].error ? ops[n].error : EIO,
                                                 "write " + dst(entry_of(it.ext.file)))
                               .message);
  }
  for (const Item& it : u.items)
    if (!it.failed) stats_.bytes_done += it.ext.length_bytes;
}

// commit: a file whose last chunk is written gets its xattrs and metadata and is linked
// into place; a failed one's unnamed inode goes away with its descriptor.
void RestoreFiles::commit_unit(WorkUnit& u) {
  ParentCache parents(root_fd_);
  for (const Item& it : u.items) {
    OpenFile& f = open_[it.ext.file];
    if (f.left.fetch_sub(1) != 1) continue;
    io::UniqueFd fd = std::move(f.fd);
    if (f.failed.load() || !fd.valid()) continue;
    const uint32_t i = (*mine_)[it.ext.file];
    const repo::SnapEntry& e = snap_.entries[i];
    if (opts_.xattrs && !e.xattrs.empty()) {
      if (auto st = io::write_xattrs(e.xattrs, fd.get(), dst(e)); !st)
        errors_.add(st.error().message);
    }
    if (auto st = io::apply_meta_fd(fd.get(), e.meta, f.chown, dst(e)); !st) {
      fail_file(it.ext.file, st.error().message);
      continue;
    }
    int pfd = parents.get(parent_of(e.path));
    std::string tmp = ".barge-tmp." + name_of(e.path).substr(0, 32) + "." + std::to_string(i);
    if (pfd < 0 || detail::link_into_place(fd.get(), pfd, name_of(e.path), tmp) != 0) {
      fail_file(it.ext.file, io::Error::from_errno(errno, "link into place " + dst(e)).message);
      continue;
    }
    stats_.files_done += 1;
  }
}

}  // namespace barge::pipeline::restore
