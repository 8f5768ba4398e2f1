// barge gen, the writing: each file's contents block by block, the files written in parallel
// (large ones in segments), then directories, symlinks and their times; run_gen.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <oneapi/tbb/blocked_range.h>
#include <oneapi/tbb/parallel_for.h>
#include <oneapi/tbb/task_arena.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <system_error>

#include "io/unique_fd.hpp"
#include "pipeline/gen/gen.hpp"
#include "pipeline/gen/gen_internal.hpp"

namespace barge::pipeline {
namespace detail {

struct TimeSpec {
  int64_t sec;
  int64_t nsec;
};

TimeSpec entry_time(uint64_t seed, Domain domain, uint64_t index) {
  const uint64_t h = combine(combine(seed, domain), index);
  return {kMtimeBaseSec + static_cast<int64_t>(h % kMtimeSpanSec),
          static_cast<int64_t>(splitmix64(h) % 1000000000)};
}

std::array<timespec, 2> to_times(TimeSpec t) {
  timespec ts{};
  ts.tv_sec = static_cast<time_t>(t.sec);
  ts.tv_nsec = static_cast<long>(t.nsec);
  return {ts, ts};  // atime = mtime
}

// Words for the low-entropy part: text-like so compressors see something close to logs/docs.
constexpr std::array<std::string_view, 64> kWords = {
    "the",     "of",      "and",   "to",     "in",      "data",   "file",   "block",
    "barge",   "stream",  "copy",  "write",  "read",    "node",   "rank",   "chunk",
    "error",   "warning", "info",  "debug",  "request", "reply",  "server", "client",
    "path",    "size",    "bytes", "offset", "status",  "ok",     "failed", "retry",
    "time",    "start",   "end",   "user",   "group",   "mode",   "buffer", "queue",
    "thread",  "worker",  "job",   "task",   "value",   "key",    "table",  "row",
    "column",  "index",   "query", "result", "update",  "insert", "delete", "select",
    "network", "storage", "cache", "memory", "disk",    "volume", "system", "process"};

// One 64 KiB block (or a short tail): text for the first r fraction, PRNG output after.
void fill_block(std::byte* out, size_t len, uint64_t key, double r) {
  Xoshiro256 rng(key);
  const auto text_len = std::min(len, static_cast<size_t>(r * static_cast<double>(len) + 0.5));
  if (text_len > 0) {
    // A phrase drawn per block, so equal offsets in different blocks differ.
    std::array<char, kPhraseBytes + 16> phrase;
    size_t phrase_len = 0;
    while (phrase_len < kPhraseBytes) {
      const std::string_view w = kWords[rng.next() & 63];
      std::memcpy(phrase.data() + phrase_len, w.data(), w.size());
      phrase_len += w.size();
      phrase[phrase_len++] = (rng.next() & 15) == 0 ? '\n' : ' ';
    }
    const size_t first = std::min(phrase_len, text_len);
    std::memcpy(out, phrase.data(), first);
    for (size_t have = first; have < text_len;) {  // doubling copy: few, long memcpys
      const size_t n = std::min(have, text_len - have);
      std::memcpy(out + have, out, n);
      have += n;
    }
    // A random tag at each 4 KiB boundary keeps every 4 KiB block unique; zstd pays ~8 bytes.
    for (size_t off = 0; off < text_len; off += kTagStrideBytes) {
      rng.fill(out + off, std::min<size_t>(8, text_len - off));
    }
  }
  rng.fill(out + text_len, len - text_len);
}

struct ContentParams {
  uint64_t seed;
  double compressibility;  // global R, used for pool blocks
  bool dedupable;
  uint64_t pool_blocks;
};

// Fills buf with file bytes [offset, offset + len); offset is a multiple of kBlockBytes and buf
// has room for len rounded up to kBlockBytes (pool blocks are generated whole, then cut).
void fill_range(const ContentParams& p, uint64_t file_index, const GenFile& file, uint64_t offset,
                size_t len, std::byte* buf) {
  const uint64_t file_key = combine(combine(p.seed, kDomainData), file_index);
  for (size_t done = 0; done < len; done += kBlockBytes) {
    const uint64_t block = (offset + done) / kBlockBytes;
    const size_t block_len = std::min<size_t>(kBlockBytes, file.size_bytes - offset - done);
    if (p.dedupable) {
      const uint64_t pick = combine(combine(combine(p.seed, kDomainPoolPick), file_index), block);
      if (pick & 1) {
        const uint64_t slot = (pick >> 1) % p.pool_blocks;
        fill_block(buf + done, kBlockBytes, combine(combine(p.seed, kDomainPool), slot),
                   p.compressibility);
        continue;
      }
    }
    fill_block(buf + done, block_len, combine(file_key, block), file.compressibility);
  }
}

io::Status pwrite_all(int fd, const std::byte* buf, size_t len, uint64_t offset,
                      const std::string& path) {
  while (len > 0) {
    const ssize_t n = ::pwrite(fd, buf, len, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io::Error::from_errno(errno, "write " + path + " at offset " + std::to_string(offset));
    }
    buf += n;
    len -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
  return io::Status::success();
}

struct WorkItem {
  uint64_t file;
  uint64_t offset;
  uint64_t length;
  bool segmented;  // the file is written by several items
};

class TreeWriter {
 public:
  TreeWriter(const GenOptions& opts, const GenPlan& plan)
      : opts_(opts),
        plan_(plan),
        params_{opts.seed, opts.compressibility, opts.dedupable,
                std::max<uint64_t>(1, opts.total_bytes / kBlockBytes / 8)},
        segments_left_(plan.files.size()) {
    for (uint64_t f = 0; f < plan.files.size(); ++f) {
      const uint64_t size = plan.files[f].size_bytes;
      const uint64_t segments = std::max<uint64_t>(1, (size + kSegmentBytes - 1) / kSegmentBytes);
      segments_left_[f].store(static_cast<uint32_t>(segments), std::memory_order_relaxed);
      for (uint64_t s = 0; s < segments; ++s) {
        const uint64_t offset = s * kSegmentBytes;
        items_.push_back({f, offset, std::min(kSegmentBytes, size - offset), segments > 1});
      }
    }
  }

  io::Status write_files() {
    const int concurrency =
        opts_.threads == 0 ? tbb::task_arena::automatic : static_cast<int>(opts_.threads);
    tbb::task_arena arena(concurrency);
    arena.execute([&] {
      tbb::parallel_for(tbb::blocked_range<size_t>(0, items_.size()),
                        [&](const tbb::blocked_range<size_t>& range) {
                          for (size_t i = range.begin(); i != range.end(); ++i) run_item(i);
                        });
    });
    if (failed_.load()) return *first_error_;
    return io::Status::success();
  }

 private:
  // Never throws: a worker's failure is recorded, the lowest item index wins so the
  // reported error does not depend on scheduling.
  void run_item(size_t i) noexcept {
    if (failed_.load(std::memory_order_relaxed)) return;
    io::Status st;
    try {
      st = write_item(items_[i]);
    } catch (const std::exception& e) {
      st = io::Error::plain("gen " + path_of(items_[i].file) + ": " + e.what());
    } catch (...) {
      st = io::Error::plain("gen " + path_of(items_[i].file) + ": unknown exception");
    }
    if (st.ok()) return;
    std::lock_guard lock(error_mu_);
    if (!first_error_ || i < first_error_index_) {
      first_error_ = st.error();
      first_error_index_ = i;
    }
    failed_.store(true);
  }

  std::string path_of(uint64_t file) const { return (opts_.dir / plan_.file_path(file)).string(); }

  io::Status write_item(const WorkItem& item) {
    const std::string path = path_of(item.file);
    const GenFile& file = plan_.files[item.file];
    // Segments of one file share it, so only a whole-file item can insist on creating it.
    const int flags = O_WRONLY | O_CREAT | O_CLOEXEC | (item.segmented ? 0 : O_EXCL);
    io::UniqueFd fd(::open(path.c_str(), flags, 0600));
    if (!fd.valid()) return io::Error::from_errno(errno, "open " + path);
    if (item.length > 0) {
      const size_t buf_bytes =
          std::min(kWriteBytes, (item.length + kBlockBytes - 1) / kBlockBytes * kBlockBytes);
      auto buf = std::make_unique_for_overwrite<std::byte[]>(buf_bytes);
      for (uint64_t done = 0; done < item.length; done += kWriteBytes) {
        const auto len = static_cast<size_t>(std::min(kWriteBytes, item.length - done));
        fill_range(params_, item.file, file, item.offset + done, len, buf.get());
        if (auto st = pwrite_all(fd.get(), buf.get(), len, item.offset + done, path); !st) {
          return st;
        }
      }
    }
    // The last segment to finish stamps the file: mode and times must follow every write.
    const bool last =
        !item.segmented || segments_left_[item.file].fetch_sub(1, std::memory_order_acq_rel) == 1;
    if (last) {
      if (::fchmod(fd.get(), file.mode) != 0) return io::Error::from_errno(errno, "chmod " + path);
      const auto times = to_times(entry_time(opts_.seed, kDomainFileTime, item.file));
      if (::futimens(fd.get(), times.data()) != 0) {
        return io::Error::from_errno(errno, "futimens " + path);
      }
    }
    if (auto st = fd.close(); !st) return io::Error::from_errno(st.error().errnum, "close " + path);
    return io::Status::success();
  }

  const GenOptions& opts_;
  const GenPlan& plan_;
  const ContentParams params_;
  std::vector<WorkItem> items_;
  std::vector<std::atomic<uint32_t>> segments_left_;
  std::atomic<bool> failed_{false};
  std::mutex error_mu_;
  std::optional<io::Error> first_error_;
  size_t first_error_index_ = 0;
};

// Creates the root if missing; refuses anything but an empty directory.
io::Status prepare_root(const std::filesystem::path& dir) {
  const std::string path = dir.string();
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return io::Error::from_errno(errno, "stat " + path);
    std::error_code ec;
    std::filesystem::create_directories(dir, ec);
    if (ec) return io::Error{ec.value(), "mkdir " + path + ": " + ec.message()};
    return io::Status::success();
  }
  if (!S_ISDIR(st.st_mode)) return io::Error{ENOTDIR, "gen " + path + ": not a directory"};
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  if (ec) return io::Error{ec.value(), "open " + path + ": " + ec.message()};
  if (it != std::filesystem::directory_iterator()) {
    return io::Error{ENOTEMPTY, "gen " + path + ": directory not empty (refusing to mix trees)"};
  }
  return io::Status::success();
}

io::Status make_dirs(const GenOptions& opts, const GenPlan& plan) {
  for (const auto& rel : plan.dirs) {
    const std::string path = (opts.dir / rel).string();
    if (::mkdir(path.c_str(), 0755) != 0) return io::Error::from_errno(errno, "mkdir " + path);
    // mkdir's mode passes through the umask; the tree must not depend on it.
    if (::chmod(path.c_str(), 0755) != 0) return io::Error::from_errno(errno, "chmod " + path);
  }
  return io::Status::success();
}

io::Status make_symlinks(const GenOptions& opts, const GenPlan& plan) {
  for (size_t i = 0; i < plan.symlinks.size(); ++i) {
    const std::string path = (opts.dir / plan.symlinks[i].rel_path).string();
    if (::symlink(plan.symlinks[i].target.c_str(), path.c_str()) != 0) {
      return io::Error::from_errno(errno, "symlink " + path);
    }
    const auto times = to_times(entry_time(opts.seed, kDomainLinkTime, i));
    if (::utimensat(AT_FDCWD, path.c_str(), times.data(), AT_SYMLINK_NOFOLLOW) != 0) {
      return io::Error::from_errno(errno, "utimensat " + path);
    }
  }
  return io::Status::success();
}

// Last, deepest first: creating entries bumps a directory's mtime, stamping one does not
// touch its parent, so this order leaves every stamp in place. The root goes last.
io::Status stamp_dirs(const GenOptions& opts, const GenPlan& plan) {
  std::vector<size_t> order(plan.dirs.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  auto depth = [&](size_t i) { return std::count(plan.dirs[i].begin(), plan.dirs[i].end(), '/'); };
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return depth(a) > depth(b); });
  for (size_t i : order) {
    const std::string path = (opts.dir / plan.dirs[i]).string();
    const auto times = to_times(entry_time(opts.seed, kDomainDirTime, i));
    if (::utimensat(AT_FDCWD, path.c_str(), times.data(), 0) != 0) {
      return io::Error::from_errno(errno, "utimensat " + path);
    }
  }
  const std::string root = opts.dir.string();
  const auto times = to_times(entry_time(opts.seed, kDomainRootTime, 0));
  if (::utimensat(AT_FDCWD, root.c_str(), times.data(), 0) != 0) {
    return io::Error::from_errno(errno, "utimensat " + root);
  }
  return io::Status::success();
}

}  // namespace detail

io::Result<GenResult> run_gen(const GenOptions& opts) {
  using namespace detail;
  const auto start = std::chrono::steady_clock::now();
  if (auto st = validate_gen_options(opts); !st) return st.error();
  if (auto st = prepare_root(opts.dir); !st) return st.error();
  const GenPlan plan = plan_gen(opts);
  if (auto st = make_dirs(opts, plan); !st) return st.error();
  {
    TreeWriter writer(opts, plan);
    if (auto st = writer.write_files(); !st) return st.error();
  }
  if (auto st = make_symlinks(opts, plan); !st) return st.error();
  if (auto st = stamp_dirs(opts, plan); !st) return st.error();

  GenResult result;
  result.files = plan.files.size();
  result.dirs = plan.dirs.size();
  result.symlinks = plan.symlinks.size();
  for (const auto& f : plan.files) result.bytes += f.size_bytes;
  result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace barge::pipeline
