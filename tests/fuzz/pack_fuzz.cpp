// libFuzzer target for the pack reader: the input is a pack file. Its header is checked,
// then every blob header found in a walk from the first blob is decoded and the blob read
// back through read_blob (decompression and XXH3-128 check) from a memfd, as restore and
// verify do. Nothing may crash, and a blob read as good must hash to its header's checksum.
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "pipeline/repo/repo_format.hpp"
#include "pipeline/repo/repository.hpp"

using namespace barge::pipeline;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const std::byte> in(reinterpret_cast<const std::byte*>(data), size);
  if (size < repo::kPackHeaderBytes) return 0;
  (void)repo::check_pack_header(in, "00000000000000000000000000000000");
  int fd = ::memfd_create("pack", 0);
  if (fd < 0) return 0;
  if (::write(fd, data, size) != static_cast<ssize_t>(size)) {
    ::close(fd);
    return 0;
  }
  std::vector<std::byte> out, scratch;
  uint64_t off = repo::kPackHeaderBytes;
  for (int n = 0; n < 64 && off + repo::kBlobHeaderBytes <= size; ++n) {
    auto h = repo::decode_blob_header(in.subspan(off));
    if (!h) break;
    repo::BlobRef ref;
    ref.pack_offset = off;
    ref.raw_bytes = h->raw_bytes;
    ref.stored_bytes = h->stored_bytes;
    ref.codec = h->codec;
    ref.hash = h->hash;
    if (h->raw_bytes > (16u << 20)) break;  // keep the fuzzer's memory bounded
    out.assign(h->raw_bytes, std::byte{0});
    auto st = repo::read_blob(fd, ref, out, scratch);
    if (st && !(hash_bytes(out) == h->hash)) __builtin_trap();
    off += repo::kBlobHeaderBytes + h->stored_bytes;
  }
  ::close(fd);
  return 0;
}
