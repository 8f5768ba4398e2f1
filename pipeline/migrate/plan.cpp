// migrate plan: the tree's measurements, the rate probe and the predictions.
#include "pipeline/migrate/plan.hpp"

#include <fcntl.h>
#include <tbb/global_control.h>
#include <unistd.h>

#include <tbb/parallel_for.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "io/unique_fd.hpp"
#include "pipeline/copy/tune_probe.hpp"
#include "pipeline/core/hash.hpp"
#include "pipeline/core/manifest.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/migrate/html.hpp"

namespace barge::pipeline::migrate {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using tune_detail::kLargeFile;

namespace {

void count_file(TreeFigures& t, const io::FileMeta& m, std::map<uint64_t, SizeBin>& bins,
                std::set<std::pair<uint64_t, uint64_t>>& inodes) {
  ++t.files;
  t.bytes += m.size_bytes;
  t.allocated_bytes += m.blocks_512 * 512;
  t.largest_file_bytes = std::max(t.largest_file_bytes, m.size_bytes);
  if (m.nlink > 1) {
    ++t.hardlinked_files;
    inodes.insert({m.device, m.inode});
  }
  if (io::is_sparse(m)) ++t.sparse_files;
  (m.size_bytes >= kLargeFile ? t.large_files : t.small_files) += 1;
  (m.size_bytes >= kLargeFile ? t.large_bytes : t.small_bytes) += m.size_bytes;
  uint64_t upper = 1;  // bin [upper/2, upper): 0-byte files in the first
  while (upper <= m.size_bytes && upper < (1ull << 62)) upper <<= 1;
  SizeBin& b = bins[upper];
  b.upper_bytes = upper;
  ++b.files;
  b.bytes += m.size_bytes;
}

}  // namespace

TreeFigures measure_tree(const Plan& plan) {
  TreeFigures t;
  std::map<uint64_t, SizeBin> bins;
  std::set<std::pair<uint64_t, uint64_t>> inodes;
  std::map<uint32_t, uint64_t> children;  // directory entry → entries in it
  for (const Entry& e : plan.entries) {
    if (e.parent != kNoParent) ++children[e.parent];
    switch (e.meta.type) {
      case io::FileType::kRegular:
        count_file(t, e.meta, bins, inodes);
        break;
      case io::FileType::kDirectory:
        ++t.dirs;
        break;
      case io::FileType::kSymlink:
        ++t.symlinks;
        break;
      default:
        ++t.specials;
    }
  }
  t.hardlink_groups = inodes.size();
  for (auto& [upper, b] : bins) t.size_histogram.push_back(b);
  uint64_t sum = 0;
  std::vector<std::pair<uint64_t, uint32_t>> by_count;
  for (auto [dir, n] : children) {
    sum += n;
    t.max_entries_per_dir = std::max(t.max_entries_per_dir, n);
    by_count.push_back({n, dir});
  }
  if (t.dirs) t.mean_entries_per_dir = static_cast<double>(sum) / static_cast<double>(t.dirs);
  const size_t top = std::min<size_t>(10, by_count.size());
  std::partial_sort(by_count.begin(), by_count.begin() + static_cast<long>(top), by_count.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  for (size_t i = 0; i < top; ++i) {
    const Entry& d = plan.entries[by_count[i].second];
    t.largest_dirs.push_back({d.rel.empty() ? "." : d.rel, by_count[i].first});
  }
  t.walk_errors = plan.walk_errors.size();
  for (size_t i = 0; i < std::min<size_t>(5, plan.walk_errors.size()); ++i)
    t.error_samples.push_back(plan.walk_errors[i].message);
  return t;
}

namespace {

// Read + XXH3 of the start of the largest file, for about `seconds`: verification's rate.
void probe_read(const Plan& plan, RateFigures& r, double seconds) {
  const Entry* big = nullptr;
  for (uint32_t f : plan.files)
    if (!big || plan.entries[f].meta.size_bytes > big->meta.size_bytes) big = &plan.entries[f];
  if (!big || big->meta.size_bytes == 0) return;
  io::UniqueFd fd(::open(plan.src_path(*big).c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return;
  ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  std::vector<std::byte> buf(4u << 20);
  StreamHasher h;
  const auto t0 = Clock::now();
  const auto end =
      t0 + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  uint64_t off = 0;
  while (Clock::now() < end) {
    ssize_t n = ::pread(fd.get(), buf.data(), buf.size(), static_cast<off_t>(off));
    if (n <= 0) break;
    h.update(std::span(buf.data(), static_cast<size_t>(n)));
    off += static_cast<uint64_t>(n);
  }
  r.read_bytes = off;
  r.read_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
}

// Read + XXH3 of random small files, in parallel as the verification reads them.
void probe_read_files(const Plan& plan, RateFigures& r, size_t want) {
  std::vector<uint32_t> small;
  for (uint32_t f : plan.files)
    if (plan.entries[f].meta.size_bytes < kLargeFile) small.push_back(f);
  std::shuffle(small.begin(), small.end(), std::mt19937(7));
  small.resize(std::min(small.size(), want));
  std::atomic<uint64_t> bytes{0};
  const auto t0 = Clock::now();
  tbb::parallel_for(size_t{0}, small.size(), [&](size_t i) {
    const Entry& e = plan.entries[small[i]];
    if (hash_file(AT_FDCWD, plan.src_path(e))) bytes += e.meta.size_bytes;
  });
  r.read_files = small.size();
  r.read_files_bytes = bytes;
  r.read_files_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
}

void probe_samples(const CopyOptions& opts, const Plan& plan, const TuneSetting& base,
                   const fs::path& scratch, double seconds, RateFigures& r) {
  tune_detail::SampleCopier copier(opts, plan, scratch);
  if (copier.pool_size() < 50) return;
  copier.limit(std::max(0.5, 2 * seconds));
  // A small first sample sizes the second to about `seconds`; both count.
  auto add = [&](const std::optional<TuneProbe>& p) {
    if (!p) return false;
    r.sample_files += p->files;
    r.sample_bytes += p->bytes;
    r.sample_seconds += p->seconds;
    return true;
  };
  if (!add(copier.run(base, 16ull << 20, 300)) || r.sample_seconds <= 0) return;
  const double scale = std::max(0.0, seconds / r.sample_seconds - 1);
  const uint64_t files =
      std::min<uint64_t>(static_cast<uint64_t>(r.sample_files * scale), copier.pool_size() / 4);
  if (files >= 50) add(copier.run(base, UINT64_MAX, files));
}

// Region copies of the largest files: the byte rate into the page cache, and with `sync`
// a second region timed with its write-back (the device's pace).
void probe_regions(const CopyOptions& opts, const Plan& plan, const TreeFigures& tree,
                   const TuneSetting& base, const fs::path& scratch, double seconds, bool sync,
                   RateFigures& r) {
  // Without large files, the byte rate comes from the largest of the small ones.
  const uint64_t min_bytes = tree.large_bytes ? kLargeFile : 1ull << 20;
  uint64_t source = 0;
  for (uint32_t f : plan.files)
    if (plan.entries[f].meta.size_bytes >= min_bytes) source += plan.entries[f].meta.size_bytes;
  if (source < (8ull << 20)) return;
  tune_detail::RegionCursor cursor(plan, min_bytes);
  auto until = [](double s) {
    return Clock::now() +
           std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
  };
  const uint64_t cap = std::clamp<uint64_t>(source / 3, 64ull << 20, 2ull << 30);
  TuneProbe p = tune_detail::region_copy(cursor, base, opts.memory_bytes, cap, scratch, false,
                                         until(sync ? seconds / 2 : seconds));
  r.region_bytes = p.bytes;
  r.region_seconds = p.seconds;
  if (!sync) return;
  // About as much as the device writes in the time left (at most 512 MiB).
  p = tune_detail::region_copy(cursor, base, opts.memory_bytes,
                               std::min<uint64_t>(cap, 512ull << 20), scratch, true,
                               until(seconds / 4));
  r.writeback_bytes = p.bytes;
  r.writeback_seconds = p.seconds;
}

}  // namespace

RateFigures probe_rates(const CopyOptions& opts, const Plan& plan, const TreeFigures& tree,
                        double seconds) {
  RateFigures r;
  const auto t0 = Clock::now();
  const unsigned threads = opts.threads ? opts.threads : default_threads();
  TuneSetting base{opts.chunk_bytes, opts.queue_depth, threads,
                   opts.direct_read && opts.direct_write, -1};
  fs::path scratch;
  try {
    scratch = tune_detail::scratch_dir(opts);
  } catch (const std::exception& e) {
    r.note = std::string("no probe: ") + e.what();
    return r;
  }
  // A copy larger than the level where write-back starts goes at the device's pace: the
  // byte rate is then timed with the write-back.
  const bool sync = opts.fsync || tree.bytes > tune_detail::dirty_limit_bytes(true);
  const double share = tree.large_bytes && tree.small_files ? 0.4 : 0.8;
  try {
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
    if (tree.small_files) probe_samples(opts, plan, base, scratch, seconds * share, r);
    probe_regions(opts, plan, tree, base, scratch, seconds * share, sync, r);
    probe_read(plan, r, seconds * 0.15);
    probe_read_files(plan, r, std::max<size_t>(200, r.sample_files / 2));
    r.probed = true;
    r.note = std::string(sync ? "the byte rate timed with write-back (the tree is larger than "
                                "the kernel's dirty background level)"
                              : "writes timed into the page cache (the tree fits in it)");
  } catch (const std::exception& e) {
    r.note = std::string("the probe stopped: ") + e.what();
  }
  std::error_code ec;
  fs::remove_all(scratch, ec);
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

Prediction predict(const TreeFigures& tree, const RateFigures& rates,
                   const std::vector<PassRecord>& passes, const std::optional<PassRecord>& delta,
                   double now) {
  Prediction p;
  // Bytes at the region copy's rate; each file's own cost is what is left of the sample's
  // time once its bytes are paid (a sample by count misses the rare large files, so its
  // bytes per file are not the tree's). Without a region rate, the sample's time per file.
  const double byte_rate = rates.large_rate();
  const double sample_rate =
      rates.sample_seconds > 0 ? rates.sample_bytes / rates.sample_seconds : 0;
  double per_file = rates.seconds_per_file();
  if (byte_rate > 0 && rates.sample_files)
    per_file = std::max(0.0, rates.sample_seconds - rates.sample_bytes / byte_rate) /
               static_cast<double>(rates.sample_files);
  // A tree larger than the dirty background level is written at the device's pace.
  const double bytes_rate = rates.writeback_rate() > 0 ? rates.writeback_rate() : byte_rate;
  auto copy_time = [&](double files, double bytes) {
    if (byte_rate > 0) return files * per_file + bytes / bytes_rate;
    return files * per_file + (sample_rate > 0 && files == 0 ? bytes / sample_rate : 0);
  };
  p.full_copy_seconds = copy_time(static_cast<double>(tree.files), static_cast<double>(tree.bytes));
  if (byte_rate <= 0 && tree.large_bytes && sample_rate > 0)  // large files at the sample's rate
    p.full_copy_seconds += static_cast<double>(tree.large_bytes) / sample_rate;
  p.basis = "per file " + fixed(per_file * 1e6, 1) + " us (sampled), bytes at " +
            (byte_rate > 0 ? human_bytes(static_cast<uint64_t>(byte_rate)) + "/s (region copy)"
                           : std::string("the sample's rate"));
  // The verification: both trees walked, every file read and hashed once (DST's).
  const double read_rate = rates.read_rate() > 0 ? rates.read_rate() : byte_rate;
  if (read_rate > 0)
    p.verify_seconds = 2 * tree.walk_seconds +
                       static_cast<double>(tree.files) * rates.read_seconds_per_file() +
                       static_cast<double>(tree.bytes) / read_rate;
  if (passes.empty()) return p;
  const PassRecord& last = passes.back();
  // A pass is a scan plus its copies: the scan is what is left of its time.
  const double copies =
      copy_time(static_cast<double>(last.files_changed), static_cast<double>(last.bytes_changed));
  double scan = std::max(last.seconds - copies, 0.1 * last.seconds);
  if (delta) scan = delta->seconds;  // a dry run is a scan
  p.scan_seconds = scan;
  // The change rate: what the latest look found, over the time since the pass it follows
  // began (a change is found by the first scan after it).
  std::optional<std::pair<const PassRecord*, double>> since;
  if (delta) {
    since = std::make_pair(&*delta, now - last.started_unix);
  } else if (passes.size() >= 2) {
    since = std::make_pair(&last, last.started_unix - passes[passes.size() - 2].started_unix);
  }
  if (!since || since->second <= 0) return p;
  p.change_bytes_per_second = since->first->bytes_changed / since->second;
  p.change_files_per_second = since->first->files_changed / since->second;
  // Copy time per second of the changes' age: per file, or per byte when large files change.
  const double rate_copy = copy_time(*p.change_files_per_second, *p.change_bytes_per_second);
  // The next pass finds what changed during the last one (and since it ended).
  const double age = std::max(last.seconds, now - last.started_unix);
  p.catch_up_seconds = scan + rate_copy * last.seconds;
  const double final_pass = scan + rate_copy * age;
  p.cutover_seconds = final_pass + last.keep_seconds + p.verify_seconds.value_or(0);
  p.basis += "; passes: scan " + std::to_string(scan) + " s, change rate from " +
             (delta ? "a dry run now" : "the last two passes");
  return p;
}

}  // namespace barge::pipeline::migrate
