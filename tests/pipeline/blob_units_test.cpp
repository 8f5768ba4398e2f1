// Pool sizing and unit filling of the blob-fetching assemblies (restore, verify REPO).
#include <gtest/gtest.h>

#include "pipeline/repo/repository.hpp"

namespace barge::pipeline::repo {
namespace {

TEST(BlobPool, SmallBlobsGetFewSmallBuffers) {
  // 100k small blobs, 4 workers: 1 MiB buffers, 16 units (2 buffers each), not 256.
  BlobPool p = blob_pool(10 << 10, 8 << 10, 256ull << 20, 100000, 4);
  EXPECT_EQ(p.buffer_bytes, uint64_t{1} << 20);
  EXPECT_EQ(p.count, 32u);
}

TEST(BlobPool, BuffersHoldTheLargestChunkAndNeverExceedMemory) {
  BlobPool p = blob_pool(4 << 20, (4 << 20) + 100, 64ull << 20, 1000, 64);
  EXPECT_GE(p.buffer_bytes, (4u << 20) + 100 + 2 * kBlobSlotBytes);
  EXPECT_EQ(p.buffer_bytes % io::BufferPool::kAlignment, 0u);
  EXPECT_LE(p.count * p.buffer_bytes, 64ull << 20);
  // Few blobs: no more units than they make; never fewer than 4 buffers.
  EXPECT_EQ(blob_pool(4 << 20, 4 << 20, 256ull << 20, 3, 4).count, 6u);
  EXPECT_EQ(blob_pool(4 << 20, 4 << 20, 1 << 20, 1000, 4).count, 4u);
}

Item blob(uint64_t raw, uint64_t stored, bool compressed) {
  BlobRef ref;
  ref.raw_bytes = raw;
  ref.stored_bytes = stored;
  ref.codec = compressed ? Codec::kZstd : Codec::kRaw;
  return blob_item(ref, 0);
}

TEST(BlobUnitFill, BlobsPackedAlignedUntilTheBufferIsFull) {
  WorkUnit u;
  BlobUnitFill fill(u, 1 << 20, 128);
  EXPECT_TRUE(fill.add(blob(400 << 10, 400 << 10, false)));
  EXPECT_TRUE(fill.add(blob(1, 1, false)));
  EXPECT_TRUE(fill.add(blob(400 << 10, 100 << 10, true)));
  EXPECT_FALSE(fill.add(blob(400 << 10, 400 << 10, false)));  // 4096 + 3 x 400 KiB > 1 MiB
  ASSERT_EQ(u.items.size(), 3u);
  EXPECT_EQ(u.items[0].ext.buf_offset_bytes, 0u);
  EXPECT_EQ(u.items[1].ext.buf_offset_bytes, 400u << 10);
  EXPECT_EQ(u.items[2].ext.buf_offset_bytes, (400u << 10) + 4096);
  // Headers and compressed forms follow each other in aux, none overlapping.
  EXPECT_EQ(u.items[0].stored.aux_offset_bytes, kBlobSlotBytes);
  EXPECT_EQ(u.items[1].stored.aux_offset_bytes, 2 * kBlobSlotBytes);
  EXPECT_EQ(u.items[2].stored.aux_offset_bytes, 3 * kBlobSlotBytes);
}

TEST(BlobUnitFill, FirstBlobAlwaysGoesInAndEmptyItemsTakeNoRoom) {
  WorkUnit u;
  BlobUnitFill fill(u, 1 << 20, 2);
  EXPECT_TRUE(fill.add(blob(2 << 20, 2 << 20, false)));  // alone larger than the buffer
  EXPECT_TRUE(fill.add(Item{}));                         // a file without data
  EXPECT_TRUE(fill.full());
  EXPECT_EQ(u.items[0].ext.buf_offset_bytes, 0u);
  EXPECT_FALSE(u.items[1].stored.present);
}

}  // namespace
}  // namespace barge::pipeline::repo
