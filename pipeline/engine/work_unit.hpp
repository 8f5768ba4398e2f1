// WorkUnit: what travels through every assembly of the graph (pipeline/engine/graph.hpp). One unit
// owns one pool buffer (two with a codec) and carries one or more extents (a batch of whole
// small files, or one chunk of a large file), each with its checksum and outcome.
#pragma once

#include <functional>
#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "io/buffer_pool.hpp"
#include "io/io_backend.hpp"
#include "io/unique_fd.hpp"
#include "pipeline/core/hash.hpp"
#include "pipeline/core/plan.hpp"

namespace barge::pipeline {

// Returns the calling thread's I/O backend (one ring per thread).
using BackendSource = std::function<io::IoBackend&()>;

// An extent as a repository stores it: a blob in a pack.
struct Stored {
  bool present = false;           // this extent has a stored form (backup: it was not reused)
  bool compressed = false;        // zstd; otherwise the raw bytes
  uint32_t stored_bytes = 0;      // bytes of the stored form
  uint64_t aux_offset_bytes = 0;  // where the stored form (after any blob header) is in aux
  uint32_t pack = 0;              // the pack (an index the command defines)
  uint64_t pack_offset = 0;       // offset of the blob's header in the pack
};

struct Item {
  Extent ext;
  Hash128 hash;          // XXH3-128 of the bytes as read from the source
  bool failed = false;   // this extent's file failed or the run stopped; later stages skip it
  io::UniqueFd dst;      // temp file of a single-extent file (large files share one in LargeFile)
  int dst_fd = -1;       // descriptor to write through (dst.get() or the shared one)
  bool unnamed = false;  // dst is an O_TMPFILE inode, linked in at commit
  io::UniqueFd src;      // the source, kept open for the write stage when it may clone it
  // Sparse source: the data ranges of this extent (file offsets, SEEK_DATA/SEEK_HOLE); holes
  // are zero in the buffer and are not written. Unused (all data) when sparse is false.
  bool sparse = false;
  std::vector<std::pair<uint64_t, uint64_t>> data;  // [begin, end)
  // Codec assemblies: the extent's stored form in WorkUnit::aux (compressed or raw), and
  // where it lives in a pack (backup: after pack-append; restore, verify: read by pack-fetch).
  Stored stored;
  bool streamed = false;  // hashed while read in pieces (a file larger than its unit's room)
  // copy --reflink: not read, because clones work here and nothing needs the bytes (no
  // manifest, no --verify); the write stage clones it, or reads it first if the clone fails.
  bool unread = false;
};

struct WorkUnit {
  std::vector<Item> items;
  io::Buffer buffer;    // the raw bytes, at each extent's buf_offset_bytes
  io::Buffer aux;       // codec assemblies: the stored forms, at each item's aux_offset_bytes
  uint32_t source = 0;  // recv: the stream the unit is read from
  int level = -1;       // the zstd level its items were compressed at (0: raw; -1: none)

  std::span<std::byte> bytes(const Item& it) const {
    return {buffer.data() + it.ext.buf_offset_bytes, static_cast<size_t>(it.ext.length_bytes)};
  }
  std::span<std::byte> stored_bytes(const Item& it) const {
    return {aux.data() + it.stored.aux_offset_bytes, it.stored.stored_bytes};
  }
};

}  // namespace barge::pipeline
