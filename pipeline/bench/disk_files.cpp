// barge bench disk's files: placement, layout, alignment checks and removal.
#include "pipeline/bench/disk_files.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "io/buffer_pool.hpp"
#include "io/full_io.hpp"
#include "io/metadata.hpp"

namespace barge::pipeline::bench::detail {
namespace {

std::string file_name(const DiskBenchOptions& o, int rank) {
  std::string dir = o.path;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  return dir + "/barge-bench." + (o.shared_file ? std::string("shared") : std::to_string(rank));
}

io::Status check_directory(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return io::Error::from_errno(errno, path);
  if (!S_ISDIR(st.st_mode)) return io::Error::plain(path + ": not a directory");
  if (::access(path.c_str(), W_OK | X_OK) != 0) return io::Error::from_errno(errno, path);
  return io::Status::success();
}

// O_DIRECT needs the block size (offsets and lengths) to be a multiple of the file's
// direct-I/O alignment; the pool's buffers are 4 KiB-aligned.
io::Status check_direct(const DiskBenchOptions& o, const BenchFile& f) {
  if (!o.direct) return io::Status::success();
  io::UniqueFd probe(::open(f.path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
  if (!probe.valid()) {
    return io::Error::from_errno(errno, "--direct: " + f.path + " cannot be opened with O_DIRECT");
  }
  uint32_t align = io::dio_alignment(probe.get());
  if (align == 0) align = 512;  // statx does not say: the usual logical block size
  if (o.block_bytes % align != 0) {
    return io::Error::plain("--bs " + std::to_string(o.block_bytes) + " is not a multiple of " +
                            f.path + "'s direct I/O alignment (" + std::to_string(align) +
                            " bytes)");
  }
  if (align > io::BufferPool::kAlignment) {
    return io::Error::plain("--direct: " + f.path + " needs " + std::to_string(align) +
                            "-byte alignment, more than barge's buffers have");
  }
  return io::Status::success();
}

// Incompressible bytes over the region, each 4 KiB stamped with its offset.
io::Status lay_out(const BenchFile& f) {
  constexpr size_t kChunk = 1 << 20;
  std::vector<uint64_t> words(kChunk / 8);
  uint64_t state = 0x243F6A8885A308D3ull ^ f.base_bytes;
  for (auto& w : words) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    w = z ^ (z >> 27);
  }
  for (uint64_t done = 0; done < f.region_bytes;) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(kChunk, f.region_bytes - done));
    uint64_t at = f.base_bytes + done;
    for (size_t w = 0; w < n / 8; w += 512) words[w] = at + w * 8;
    std::string what = "lay out " + f.path + " at offset " + std::to_string(at);
    if (auto st = io::write_full(f.fd.get(), words.data(), n, static_cast<int64_t>(at), what); !st)
      return st;
    done += n;
  }
  if (::fsync(f.fd.get()) != 0) return io::Error::from_errno(errno, "fsync " + f.path);
  return io::Status::success();
}

io::Status allocate(const BenchFile& f) {
  if (::fallocate(f.fd.get(), 0, static_cast<off_t>(f.base_bytes),
                  static_cast<off_t>(f.region_bytes)) != 0 &&
      errno != EOPNOTSUPP) {
    return io::Error::from_errno(errno, "fallocate " + f.path);
  }
  return io::Status::success();
}

uint64_t size_of(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) ? static_cast<uint64_t>(st.st_size)
                                                               : 0;
}

// Opens (creating when absent) and fills the region when the test reads and the file
// does not hold it yet. `existing` is the file's size before the run (shared: rank 0's view).
io::Status open_region(const DiskBenchOptions& o, BenchFile& f, bool create, uint64_t existing) {
  int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0);
  f.fd.reset(::open(f.path.c_str(), flags, 0644));
  if (!f.fd.valid()) return io::Error::from_errno(errno, "open " + f.path);
  if (auto st = check_direct(o, f); !st) return st;
  if (existing >= f.base_bytes + f.region_bytes) return io::Status::success();  // reused
  if (reads_any(o.rw)) return lay_out(f);
  return o.preallocate ? allocate(f) : io::Status::success();
}

}  // namespace

io::Result<BenchFile> prepare_file(const DiskBenchOptions& o, transport::Comm& comm) {
  BenchFile f;
  f.path = file_name(o, comm.rank());
  f.region_bytes = o.size_bytes;
  f.base_bytes = o.shared_file ? o.size_bytes * static_cast<uint64_t>(comm.rank()) : 0;
  io::Status st = check_directory(o.path);
  if (!comm.agree(st.ok())) return st.ok() ? io::Error::plain("") : st.error();
  uint64_t existing = size_of(f.path);
  bool shared = o.shared_file && comm.size() > 1;
  if (shared) {
    existing = std::stoull(comm.broadcast(std::to_string(existing), 0));
    if (comm.rank() == 0) {
      f.created = existing == 0 && ::access(f.path.c_str(), F_OK) != 0;
      f.fd.reset(::open(f.path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
      if (!f.fd.valid()) st = io::Error::from_errno(errno, "open " + f.path);
    }
    if (!comm.agree(st.ok())) return st.ok() ? io::Error::plain("") : st.error();
  } else {
    f.created = ::access(f.path.c_str(), F_OK) != 0;
  }
  st = open_region(o, f, !shared || comm.rank() == 0, existing);
  if (st.ok() && o.direct) {  // laid out through the page cache; the run itself bypasses it
    drop_cache(f);
    f.fd.reset(::open(f.path.c_str(), O_RDWR | O_DIRECT | O_CLOEXEC));
    if (!f.fd.valid()) st = io::Error::from_errno(errno, "open " + f.path + " with O_DIRECT");
  }
  if (!comm.agree(st.ok())) {
    remove_file(f, o, comm);
    return st.ok() ? io::Error::plain("") : st.error();
  }
  return f;
}

void drop_cache(const BenchFile& f) {
  (void)::fdatasync(f.fd.get());
  (void)::posix_fadvise(f.fd.get(), static_cast<off_t>(f.base_bytes),
                        static_cast<off_t>(f.region_bytes), POSIX_FADV_DONTNEED);
}

void remove_file(BenchFile& f, const DiskBenchOptions& o, transport::Comm& comm) {
  f.fd.reset();
  if (o.shared_file && comm.size() > 1) comm.barrier();  // every rank is done with it
  if (f.created && !o.keep) ::unlink(f.path.c_str());
  f.created = false;
}

}  // namespace barge::pipeline::bench::detail
