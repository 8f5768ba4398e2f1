// Packs: the writer that appends blobs to this run's packs, the pack-append and pack-fetch
// stages of the engine, blob units, and reading one blob back.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "io/full_io.hpp"
#include "pipeline/core/compress.hpp"
#include "pipeline/core/plan.hpp"
#include "pipeline/repo/repo_files.hpp"
#include "pipeline/repo/repository.hpp"

namespace barge::pipeline::repo {

using detail::fsync_dir;
using detail::make_dir;
using detail::write_all;

PackWriter::PackWriter(const Repository& repo, uint64_t pack_target_bytes)
    : repo_(repo), target_bytes_(pack_target_bytes) {}

PackWriter::~PackWriter() = default;

io::Status PackWriter::open_new_pack() {
  Pack p;
  p.name = random_hex128();
  std::string dir = repo_.path() + "/packs/" + p.name.substr(0, 2);
  if (auto st = make_dir(dir); !st) return st;
  std::string path = repo_.pack_path(p.name);
  p.fd.reset(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!p.fd.valid()) return io::Error::from_errno(errno, "create " + path);
  std::string header = encode_pack_header(p.name);
  if (auto st = write_all(p.fd.get(), header.data(), header.size(), path); !st) {
    ::unlink(path.c_str());  // not in packs_: discard() would not find it
    return st;
  }
  p.size = header.size();
  packs_.push_back(std::move(p));
  return io::Status::success();
}

io::Result<PackWriter::Slot> PackWriter::reserve(uint64_t bytes) {
  std::lock_guard lock(mu_);
  if (packs_.empty() || packs_.back().size >= target_bytes_) {
    // Start writing the full pack back now, so that finish() has little left to wait for.
    if (!packs_.empty()) ::sync_file_range(packs_.back().fd.get(), 0, 0, SYNC_FILE_RANGE_WRITE);
    if (auto st = open_new_pack(); !st) return st.error();
  }
  Pack& p = packs_.back();
  Slot slot{p.name, p.fd.get(), p.size};
  p.size += bytes;
  bytes_written_ += bytes;
  return slot;
}

io::Result<PackWriter::Stored> PackWriter::append(const BlobHeader& h,
                                                  std::span<const std::byte> stored) {
  std::byte header[kBlobHeaderBytes];
  encode_blob_header(h, std::span<std::byte, kBlobHeaderBytes>(header));
  auto slot = reserve(kBlobHeaderBytes + stored.size());
  if (!slot) return slot.error();
  const std::string path = repo_.pack_path(slot->pack);
  if (auto st = write_all(slot->fd, header, kBlobHeaderBytes, path, slot->pack_offset); !st)
    return st.error();
  if (auto st = write_all(slot->fd, stored.data(), stored.size(), path,
                          slot->pack_offset + kBlobHeaderBytes);
      !st)
    return st.error();
  return Stored{slot->pack, slot->pack_offset};
}

io::Status PackWriter::finish() {
  std::lock_guard lock(mu_);
  std::vector<std::string> dirs;
  for (Pack& p : packs_) {
    if (!p.fd.valid()) continue;
    if (::fdatasync(p.fd.get()) != 0)
      return io::Error::from_errno(errno, "sync " + repo_.pack_path(p.name));
    if (auto st = p.fd.close(); !st)
      return io::Error::plain(repo_.pack_path(p.name) + ": " + st.error().message);
    dirs.push_back(repo_.path() + "/packs/" + p.name.substr(0, 2));
  }
  std::sort(dirs.begin(), dirs.end());
  dirs.erase(std::unique(dirs.begin(), dirs.end()), dirs.end());
  for (const std::string& d : dirs)
    if (auto st = fsync_dir(d); !st) return st;
  if (!dirs.empty()) return fsync_dir(repo_.path() + "/packs");
  return io::Status::success();
}

PackWriter::Discarded PackWriter::discard() {
  std::lock_guard lock(mu_);
  Discarded out;
  for (Pack& p : packs_) {
    p.fd.reset();
    std::string path = repo_.pack_path(p.name);
    struct stat st;
    // The space it holds (p.size counts reservations whose write failed).
    uint64_t used = ::stat(path.c_str(), &st) == 0 ? static_cast<uint64_t>(st.st_blocks) * 512 : 0;
    if (::unlink(path.c_str()) == 0 || errno == ENOENT) {
      ++out.packs;
      out.bytes += used;
    } else {
      ++out.failed;
    }
  }
  packs_.clear();
  return out;
}

std::string PackWriter::pack_path(const std::string& pack) const { return repo_.pack_path(pack); }

uint64_t PackWriter::bytes_written() const {
  std::lock_guard lock(mu_);
  return bytes_written_;
}

void PackAppendStage::operator()(WorkUnit& unit) const {
  std::vector<io::IoOp> ops;
  std::vector<size_t> op_item;
  std::vector<std::string> where(unit.items.size());
  for (size_t k = 0; k < unit.items.size(); ++k) {
    Item& it = unit.items[k];
    if (it.failed || !it.stored.present) continue;
    std::byte* header = unit.aux.data() + it.stored.aux_offset_bytes - kBlobHeaderBytes;
    BlobHeader h{it.stored.compressed ? Codec::kZstd : Codec::kRaw,
                 static_cast<uint32_t>(it.ext.length_bytes), it.stored.stored_bytes, it.hash};
    encode_blob_header(h, std::span<std::byte, kBlobHeaderBytes>(header, kBlobHeaderBytes));
    auto slot = packs_.reserve(kBlobHeaderBytes + it.stored.stored_bytes);
    if (!slot) {
      fail_(it, slot.error());
      continue;
    }
    where[k] = packs_.pack_path(slot->pack);
    it.stored.pack = pack_index_(slot->pack);
    it.stored.pack_offset = slot->pack_offset;
    const int aux = unit.aux.index(), buf = unit.buffer.index();
    if (it.stored.compressed) {
      ops.push_back({io::IoKind::kWrite, slot->fd, header,
                     kBlobHeaderBytes + it.stored.stored_bytes, slot->pack_offset, aux});
      op_item.push_back(k);
    } else {
      ops.push_back(
          {io::IoKind::kWrite, slot->fd, header, kBlobHeaderBytes, slot->pack_offset, aux});
      op_item.push_back(k);
      ops.push_back({io::IoKind::kWrite, slot->fd, unit.bytes(it).data(), it.ext.length_bytes,
                     slot->pack_offset + kBlobHeaderBytes, buf});
      op_item.push_back(k);
    }
  }
  backend_().run(ops);
  for (size_t n = 0; n < ops.size(); ++n) {
    Item& it = unit.items[op_item[n]];
    if (it.failed) continue;
    const std::string& path = where[op_item[n]];
    if (ops[n].error != 0)
      fail_(it, io::Error::from_errno(ops[n].error, "write " + path));
    else if (ops[n].done_bytes != ops[n].length_bytes)
      fail_(it, io::Error::plain("write " + path + ": short write"));
  }
}

BlobPool blob_pool(uint64_t max_raw, uint64_t max_stored, uint64_t memory_bytes, uint64_t units,
                   unsigned threads) {
  constexpr uint64_t kMinBufferBytes = 1 << 20;
  constexpr uint64_t kA = io::BufferPool::kAlignment;
  BlobPool p;
  p.buffer_bytes =
      (std::max({max_raw, max_stored + 2 * kBlobSlotBytes, kMinBufferBytes}) + kA - 1) / kA * kA;
  const uint64_t useful = 2 * std::min<uint64_t>(units, 4 * uint64_t{std::max(threads, 1u)});
  p.count = pool_buffers(memory_bytes, p.buffer_bytes, useful, 4);
  return p;
}

Item blob_item(const BlobRef& ref, uint32_t pack) {
  Item it;
  it.ext.length_bytes = ref.raw_bytes;
  it.hash = ref.hash;
  it.stored.present = true;
  it.stored.compressed = ref.codec == Codec::kZstd;
  it.stored.stored_bytes = ref.stored_bytes;
  it.stored.pack = pack;
  it.stored.pack_offset = ref.pack_offset;
  return it;
}

bool BlobUnitFill::add(Item it) {
  constexpr uint64_t kA = io::BufferPool::kAlignment;
  it.ext.buf_offset_bytes = buf_;
  if (!it.stored.present) {  // a file without data: an empty item
    unit_.items.push_back(std::move(it));
    return true;
  }
  const uint64_t aux_end = PackFetchStage::place(it, aux_);
  const uint64_t buf_end = buf_ + (it.ext.length_bytes + kA - 1) / kA * kA;
  if (!unit_.items.empty() && (buf_end > cap_ || aux_end > cap_)) return false;
  buf_ = buf_end;
  aux_ = aux_end;
  unit_.items.push_back(std::move(it));
  return true;
}

size_t PackFetchStage::place(Item& it, size_t cursor) {
  it.stored.aux_offset_bytes = cursor + kBlobSlotBytes;
  return it.stored.compressed ? (it.stored.aux_offset_bytes + it.stored.stored_bytes + 7) / 8 * 8
                              : it.stored.aux_offset_bytes;
}

void PackFetchStage::operator()(WorkUnit& unit) const {
  std::vector<io::IoOp> ops;
  std::vector<size_t> op_item;
  for (size_t k = 0; k < unit.items.size(); ++k) {
    Item& it = unit.items[k];
    if (it.failed || !it.stored.present) continue;
    std::string err;
    int fd = pack_fd_(it.stored.pack, &err);
    if (fd < 0) {
      fail_(it, io::Error::plain(err));
      continue;
    }
    std::byte* header = unit.aux.data() + it.stored.aux_offset_bytes - kBlobHeaderBytes;
    const int aux = unit.aux.index(), buf = unit.buffer.index();
    if (it.stored.compressed) {
      ops.push_back({io::IoKind::kRead, fd, header, kBlobHeaderBytes + it.stored.stored_bytes,
                     it.stored.pack_offset, aux});
      op_item.push_back(k);
    } else {
      ops.push_back({io::IoKind::kRead, fd, header, kBlobHeaderBytes, it.stored.pack_offset, aux});
      op_item.push_back(k);
      ops.push_back({io::IoKind::kRead, fd, unit.bytes(it).data(), it.ext.length_bytes,
                     it.stored.pack_offset + kBlobHeaderBytes, buf});
      op_item.push_back(k);
    }
  }
  backend_().run(ops);
  for (size_t n = 0; n < ops.size(); ++n) {
    Item& it = unit.items[op_item[n]];
    if (it.failed) continue;
    if (ops[n].error != 0) {
      fail_(it, io::Error::from_errno(ops[n].error, "read"));
    } else if (ops[n].done_bytes != ops[n].length_bytes) {
      fail_(it, io::Error::plain("pack truncated"));
    }
  }
  for (Item& it : unit.items) {
    if (it.failed || !it.stored.present) continue;
    auto h = decode_blob_header(std::span<const std::byte>(
        unit.aux.data() + it.stored.aux_offset_bytes - kBlobHeaderBytes, kBlobHeaderBytes));
    if (!h) {
      fail_(it, h.error());
    } else if (h->raw_bytes != it.ext.length_bytes || h->stored_bytes != it.stored.stored_bytes ||
               h->codec != (it.stored.compressed ? Codec::kZstd : Codec::kRaw) ||
               !(h->hash == it.hash)) {
      fail_(it, io::Error::plain("blob header does not match the manifest"));
    }
  }
}

io::Status read_blob(int pack_fd, const BlobRef& ref, std::span<std::byte> out,
                     std::vector<std::byte>& scratch) {
  size_t want = kBlobHeaderBytes + ref.stored_bytes;
  scratch.resize(want);
  auto got = io::read_full(pack_fd, scratch.data(), want, ref.pack_offset, "read");
  if (!got) return got.error();
  if (*got < want) return io::Error::plain("pack truncated");
  auto h = decode_blob_header(std::span<const std::byte>(scratch.data(), kBlobHeaderBytes));
  if (!h) return h.error();
  if (h->raw_bytes != ref.raw_bytes || h->stored_bytes != ref.stored_bytes ||
      h->codec != ref.codec || !(h->hash == ref.hash))
    return io::Error::plain("blob header does not match the manifest");
  if (out.size() < ref.raw_bytes) return io::Error::plain("blob larger than its buffer");
  std::span<const std::byte> stored(scratch.data() + kBlobHeaderBytes, ref.stored_bytes);
  if (ref.codec == Codec::kRaw) {
    if (ref.stored_bytes != ref.raw_bytes)
      return io::Error::plain("raw blob whose stored size is not its size");
    std::memcpy(out.data(), stored.data(), ref.raw_bytes);
    if (!(hash_bytes(out.first(ref.raw_bytes)) == ref.hash))
      return io::Error::plain("checksum mismatch");
    return io::Status::success();
  }
  auto n = DecompressStage{}(stored, out, ref.raw_bytes, ref.hash);
  if (!n) return n.error();
  return io::Status::success();
}

}  // namespace barge::pipeline::repo
