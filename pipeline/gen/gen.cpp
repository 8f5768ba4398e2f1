#include "pipeline/gen/gen.hpp"

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
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <span>
#include <system_error>

#include "io/unique_fd.hpp"

namespace barge::pipeline {
namespace detail {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;
constexpr uint64_t kGiB = 1024 * kMiB;

constexpr uint64_t kBlockBytes = 64 * kKiB;     // unit of content generation and compressibility
constexpr uint64_t kTagStrideBytes = 4 * kKiB;  // dedup granularity we keep unique
constexpr uint64_t kWriteBytes = 1 * kMiB;      // one pwrite, one buffer
// Files above this are split into independently written segments so that one big file still
// keeps every core busy generating; a multiple of kWriteBytes and kBlockBytes.
constexpr uint64_t kSegmentBytes = 64 * kMiB;
constexpr uint64_t kMaxFilesPerDir = 1000;
constexpr uint64_t kMaxLeavesPerTop = 32;
constexpr uint64_t kLargeFileBytes = 2 * kGiB;
constexpr size_t kPhraseBytes = 384;

// Mtimes land in [2020-01-01, 2024-01-01) UTC so they look like real data, not "now".
constexpr int64_t kMtimeBaseSec = 1577836800;
constexpr uint64_t kMtimeSpanSec = 4ull * 365 * 86400;

// Stream domains keep the planning, content and metadata streams independent of each other.
enum Domain : uint64_t {
  kDomainPlan = 1,
  kDomainData = 2,
  kDomainPool = 3,
  kDomainPoolPick = 4,
  kDomainFileTime = 5,
  kDomainDirTime = 6,
  kDomainLinkTime = 7,
  kDomainRootTime = 8,
};

inline uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
inline uint64_t combine(uint64_t h, uint64_t v) { return splitmix64(h ^ splitmix64(v)); }

// xoshiro256** (Blackman & Vigna): ~1 ns per 8 bytes, far ahead of the page cache.
class Xoshiro256 {
 public:
  explicit Xoshiro256(uint64_t key) {
    for (auto& word : s_) {
      key += 0x9E3779B97F4A7C15ull;
      word = splitmix64(key);
    }
  }
  uint64_t next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, n) by multiply-shift; the bias (< n / 2^64) does not matter here.
  uint64_t below(uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(next()) * n) >> 64);
  }
  double unit() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)

  // Fills [out, out + len) with raw output; unaligned destinations are fine.
  void fill(std::byte* out, size_t len) {
    uint64_t s0 = s_[0], s1 = s_[1], s2 = s_[2], s3 = s_[3];
    auto step = [&] {
      const uint64_t result = rotl(s1 * 5, 7) * 9;
      const uint64_t t = s1 << 17;
      s2 ^= s0;
      s3 ^= s1;
      s1 ^= s2;
      s0 ^= s3;
      s2 ^= t;
      s3 = rotl(s3, 45);
      return result;
    };
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
      const uint64_t v = step();
      std::memcpy(out + i, &v, 8);
    }
    if (i < len) {
      const uint64_t v = step();
      std::memcpy(out + i, &v, len - i);
    }
    s_ = {s0, s1, s2, s3};
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::array<uint64_t, 4> s_{};
};

// Pick an octave [2^k, 2^(k+1)) with k uniform in [lo_log2, hi_log2), then a size uniformly
// inside it: roughly log-uniform, integer-only so every platform draws the same sizes.
uint64_t octave_uniform(Xoshiro256& rng, unsigned lo_log2, unsigned hi_log2) {
  const unsigned k = lo_log2 + static_cast<unsigned>(rng.below(hi_log2 - lo_log2));
  const uint64_t base = uint64_t{1} << k;
  return base + rng.below(base);
}

enum class SizeKind { kSmall, kMedium, kLargeMixed, kLargeFixed };

uint64_t draw_size(Xoshiro256& rng, SizeKind kind) {
  switch (kind) {
    case SizeKind::kSmall: {
      const uint64_t pct = rng.below(100);
      if (pct < 2) return 0;                            // 2%: empty files
      if (pct < 10) return octave_uniform(rng, 0, 11);  // 8%: [1 B, 2 KiB)
      return octave_uniform(rng, 11, 15);               // 90%: [2 KiB, 32 KiB)
    }
    case SizeKind::kMedium:
      return octave_uniform(rng, 20, 26);  // [1 MiB, 64 MiB)
    case SizeKind::kLargeMixed:
      return octave_uniform(rng, 28, 31);  // [256 MiB, 2 GiB)
    case SizeKind::kLargeFixed:
      return kLargeFileBytes;
  }
  return 0;
}

struct SizeClass {
  SizeKind kind;
  uint64_t budget_bytes;
  // A last remainder below this joins the previous file, so a class's files stay in range.
  uint64_t absorb_below_bytes;
};

std::vector<SizeClass> size_classes(const GenOptions& opts) {
  const uint64_t total = opts.total_bytes;
  switch (opts.profile) {
    case GenProfile::kSmall:
      return {{SizeKind::kSmall, total, 0}};
    case GenProfile::kLarge:
      return {{SizeKind::kLargeFixed, total, 0}};
    case GenProfile::kMixed: {
      const uint64_t small = total / 5;
      const uint64_t medium = total / 2;
      return {{SizeKind::kSmall, small, 0},
              {SizeKind::kMedium, medium, 1 * kMiB},
              {SizeKind::kLargeMixed, total - small - medium, 256 * kMiB}};
    }
  }
  return {};
}

// Draws until the budget is spent; the last file takes the remainder.
std::vector<uint64_t> natural_sizes(Xoshiro256& rng, const SizeClass& c) {
  std::vector<uint64_t> sizes;
  uint64_t left = c.budget_bytes;
  while (left > 0) {
    uint64_t s = draw_size(rng, c.kind);
    if (s >= left || left - s < c.absorb_below_bytes) s = left;
    sizes.push_back(s);
    left -= s;
  }
  return sizes;
}

// Draws `count` sizes and scales them so they sum exactly to the budget.
std::vector<uint64_t> scaled_sizes(Xoshiro256& rng, const SizeClass& c, uint64_t count) {
  std::vector<uint64_t> sizes(count);
  unsigned __int128 sum = 0;
  for (auto& s : sizes) {
    s = draw_size(rng, c.kind);
    sum += s;
  }
  uint64_t assigned = 0;
  for (auto& s : sizes) {
    s = sum == 0 ? c.budget_bytes / count
                 : static_cast<uint64_t>(static_cast<unsigned __int128>(s) * c.budget_bytes / sum);
    assigned += s;
  }
  // Rounding left fewer than `count` bytes over; one each to the first files.
  for (uint64_t i = 0; assigned < c.budget_bytes; ++i, ++assigned) ++sizes[i];
  return sizes;
}

// Splits `file_count` across classes in proportion to their natural counts (largest remainder),
// at least one per class while there are files to give.
std::vector<uint64_t> apportion(const std::vector<uint64_t>& natural, uint64_t file_count,
                                std::vector<SizeClass>& classes) {
  const size_t k = classes.size();
  std::vector<uint64_t> counts(k, 0);
  uint64_t natural_total = 0;
  for (uint64_t n : natural) natural_total += n;
  uint64_t left = file_count;
  for (size_t i = 0; i < k && left > 0; ++i) {
    if (classes[i].budget_bytes > 0) {
      counts[i] = 1;
      --left;
    }
  }
  if (left > 0 && natural_total > 0) {
    std::vector<std::pair<uint64_t, size_t>> remainders;  // (remainder, class)
    uint64_t given = 0;
    for (size_t i = 0; i < k; ++i) {
      const unsigned __int128 share = static_cast<unsigned __int128>(left) * natural[i];
      const auto whole = static_cast<uint64_t>(share / natural_total);
      counts[i] += whole;
      given += whole;
      remainders.emplace_back(static_cast<uint64_t>(share % natural_total), i);
    }
    std::stable_sort(remainders.begin(), remainders.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t j = 0; given < left; ++j, ++given) ++counts[remainders[j % k].second];
  }
  // Every class with budget got a file unless file_count < classes; then the biggest class
  // that did takes the orphaned budgets.
  size_t heir = k;
  for (size_t i = 0; i < k; ++i) {
    if (counts[i] > 0 && (heir == k || classes[i].budget_bytes > classes[heir].budget_bytes)) {
      heir = i;
    }
  }
  for (size_t i = 0; i < k && heir < k; ++i) {
    if (counts[i] == 0) classes[heir].budget_bytes += std::exchange(classes[i].budget_bytes, 0);
  }
  return counts;
}

// Mixed profile: spread per-file compressibility around R, then pull the byte-weighted mean
// back to R (the few large files would otherwise decide the whole tree's ratio).
void assign_mixed_compressibility(Xoshiro256& rng, double target, std::vector<GenFile>& files) {
  constexpr double kExtremeFraction = 0.2;
  const double jitter = std::min({0.1, target, 1.0 - target});
  std::vector<bool> extreme(files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    if (rng.unit() < kExtremeFraction) {
      extreme[i] = true;
      files[i].compressibility = rng.unit() < target ? 1.0 : 0.0;
    } else {
      files[i].compressibility = target + (2 * rng.unit() - 1) * jitter;
    }
  }
  for (int pass = 0; pass < 4; ++pass) {
    double total = 0, weighted = 0, middle = 0;
    for (size_t i = 0; i < files.size(); ++i) {
      const auto bytes = static_cast<double>(files[i].size_bytes);
      total += bytes;
      weighted += bytes * files[i].compressibility;
      if (!extreme[i] && files[i].compressibility > 0 && files[i].compressibility < 1) {
        middle += bytes;
      }
    }
    if (middle == 0 || total == 0) return;
    const double shift = (target * total - weighted) / middle;
    if (shift > -1e-9 && shift < 1e-9) return;
    for (size_t i = 0; i < files.size(); ++i) {
      double& r = files[i].compressibility;
      if (!extreme[i] && r > 0 && r < 1) r = std::clamp(r + shift, 0.0, 1.0);
    }
  }
}

uint32_t mixed_mode(Xoshiro256& rng) {
  switch (rng.below(10)) {
    case 7:
      return 0600;
    case 8:
      return 0755;
    case 9:
      return 0640;
    default:
      return 0644;
  }
}

std::string format_top(uint64_t top) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "d%03" PRIu64, top);
  return buf;
}

std::string format_dir(uint64_t top, uint64_t mid) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "/d%02" PRIu64, mid);
  return format_top(top) + buf;
}

std::string leaf_dir(const GenPlan& plan, uint64_t file_index) {
  const uint64_t leaf = file_index / plan.files_per_leaf;
  return format_dir(leaf / plan.leaves_per_top, leaf % plan.leaves_per_top);
}

void plan_layout(const GenOptions& opts, GenPlan& plan) {
  const uint64_t n = plan.files.size();
  if (n == 0 || (opts.profile == GenProfile::kLarge && n <= kMaxFilesPerDir)) return;
  const uint64_t leaves = (n + kMaxFilesPerDir - 1) / kMaxFilesPerDir;
  plan.files_per_leaf = (n + leaves - 1) / leaves;  // even fill, not 1000 + a runt
  const uint64_t used_leaves = (n + plan.files_per_leaf - 1) / plan.files_per_leaf;
  const uint64_t tops = (used_leaves + kMaxLeavesPerTop - 1) / kMaxLeavesPerTop;
  plan.leaves_per_top = (used_leaves + tops - 1) / tops;
  for (uint64_t leaf = 0; leaf < used_leaves; ++leaf) {
    const uint64_t top = leaf / plan.leaves_per_top, mid = leaf % plan.leaves_per_top;
    if (mid == 0) plan.dirs.push_back(format_top(top));
    plan.dirs.push_back(format_dir(top, mid));
  }
}

void plan_mixed_extras(Xoshiro256& rng, GenPlan& plan) {
  plan.dirs.push_back("empty0");
  plan.dirs.push_back(plan.files_per_leaf > 0 ? plan.dirs.front() + "/empty1" : "empty1");
  const uint64_t n = plan.files.size();
  if (n == 0) return;
  const uint64_t links = std::clamp<uint64_t>(n / 1000, 2, 100);
  for (uint64_t i = 0; i < links; ++i) {
    const uint64_t target = rng.below(n), host = rng.below(n);
    const std::string dir = plan.files_per_leaf > 0 ? leaf_dir(plan, host) : std::string();
    char name[32];
    std::snprintf(name, sizeof name, "link%03" PRIu64, i);
    const std::filesystem::path link_dir = dir.empty() ? "." : dir;
    plan.symlinks.push_back(
        {dir.empty() ? name : dir + "/" + name,
         std::filesystem::path(plan.file_path(target)).lexically_relative(link_dir).string()});
  }
}

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

std::optional<GenProfile> parse_gen_profile(std::string_view name) {
  if (name == "small") return GenProfile::kSmall;
  if (name == "large") return GenProfile::kLarge;
  if (name == "mixed") return GenProfile::kMixed;
  return std::nullopt;
}

std::string_view to_string(GenProfile profile) {
  switch (profile) {
    case GenProfile::kSmall:
      return "small";
    case GenProfile::kLarge:
      return "large";
    case GenProfile::kMixed:
      return "mixed";
  }
  return "?";
}

io::Status validate_gen_options(const GenOptions& opts) {
  if (opts.dir.empty()) return io::Error::plain("gen: no output directory given");
  if (opts.total_bytes == 0)
    return io::Error::plain("gen " + opts.dir.string() + ": size must be > 0");
  if (!(opts.compressibility >= 0.0 && opts.compressibility <= 1.0)) {
    return io::Error::plain("gen " + opts.dir.string() + ": compressibility must be in [0, 1]");
  }
  return io::Status::success();
}

std::string GenPlan::file_path(uint64_t file_index) const {
  char name[32];
  std::snprintf(name, sizeof name, "f%06" PRIu64, file_index);
  if (files_per_leaf == 0) return name;
  return detail::leaf_dir(*this, file_index) + "/" + name;
}

GenPlan plan_gen(const GenOptions& opts) {
  using namespace detail;
  Xoshiro256 rng(combine(opts.seed, kDomainPlan));
  std::vector<SizeClass> classes = size_classes(opts);
  std::vector<std::vector<uint64_t>> sizes;
  for (const auto& c : classes) sizes.push_back(natural_sizes(rng, c));
  if (opts.file_count != 0) {
    std::vector<uint64_t> natural;
    for (const auto& s : sizes) natural.push_back(s.size());
    const std::vector<uint64_t> counts = apportion(natural, opts.file_count, classes);
    for (size_t i = 0; i < classes.size(); ++i) {
      sizes[i] =
          counts[i] == 0 ? std::vector<uint64_t>{} : scaled_sizes(rng, classes[i], counts[i]);
    }
  }

  GenPlan plan;
  for (const auto& class_sizes : sizes) {
    for (uint64_t s : class_sizes) plan.files.push_back({s, opts.compressibility, 0644});
  }
  if (opts.profile == GenProfile::kMixed) {
    // Fisher-Yates, so small, medium and large files share directories as in real trees.
    for (size_t i = plan.files.size(); i > 1; --i) {
      std::swap(plan.files[i - 1], plan.files[rng.below(i)]);
    }
    assign_mixed_compressibility(rng, opts.compressibility, plan.files);
    for (auto& f : plan.files) f.mode = mixed_mode(rng);
  }
  plan_layout(opts, plan);
  if (opts.profile == GenProfile::kMixed) plan_mixed_extras(rng, plan);
  return plan;
}

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
