// WorkUnit: what travels through the copy graph. One unit owns one pool buffer and carries
// one or more extents (a batch of whole small files, or one chunk of a large file), each
// with its checksum and outcome.
#pragma once

#include <memory>
#include <span>
#include <utility>
#include <vector>

#include "io/buffer_pool.hpp"
#include "io/unique_fd.hpp"
#include "pipeline/hash.hpp"
#include "pipeline/plan.hpp"

namespace barge::pipeline {

struct Item {
  Extent ext;
  Hash128 hash;          // XXH3-128 of the bytes as read from the source
  bool failed = false;   // this extent's file failed or the run stopped; later stages skip it
  io::UniqueFd dst;      // temp file of a single-extent file (large files share one in LargeFile)
  int dst_fd = -1;       // descriptor to write through (dst.get() or the shared one)
  bool unnamed = false;  // dst is an O_TMPFILE inode, linked in at commit
  // Sparse source: the data ranges of this extent (file offsets, SEEK_DATA/SEEK_HOLE); holes
  // are zero in the buffer and are not written. Unused (all data) when sparse is false.
  bool sparse = false;
  std::vector<std::pair<uint64_t, uint64_t>> data;  // [begin, end)
};

struct WorkUnit {
  std::vector<Item> items;
  io::Buffer buffer;

  std::span<std::byte> bytes(const Item& it) const {
    return {buffer.data() + it.ext.buf_offset_bytes, static_cast<size_t>(it.ext.length_bytes)};
  }
};

}  // namespace barge::pipeline
