#include "pipeline/copy/tune_probe.hpp"

#include <fcntl.h>
#include <tbb/global_control.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <random>
#include <stdexcept>

#include "io/buffer_pool.hpp"
#include "io/unique_fd.hpp"
#include "io/uring_queue.hpp"
#include "pipeline/copy/copy.hpp"

namespace barge::pipeline::tune_detail {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string mib(uint64_t bytes) {
  if (bytes >= (1ull << 20)) return std::to_string(bytes >> 20) + " MiB";
  return std::to_string(bytes >> 10) + " KiB";
}

uint64_t dirty_limit_bytes(bool background) {
  auto read_u64 = [](const char* path) {
    uint64_t v = 0;
    std::ifstream(path) >> v;
    return v;
  };
  const char* bytes =
      background ? "/proc/sys/vm/dirty_background_bytes" : "/proc/sys/vm/dirty_bytes";
  const char* ratio_file =
      background ? "/proc/sys/vm/dirty_background_ratio" : "/proc/sys/vm/dirty_ratio";
  if (uint64_t b = read_u64(bytes)) return b;
  uint64_t ratio = read_u64(ratio_file);
  std::ifstream meminfo("/proc/meminfo");
  std::string key;
  uint64_t kib = 0;
  while (meminfo >> key >> kib)
    if (key == "MemAvailable:") return kib * 1024 / 100 * (ratio ? ratio : background ? 10 : 20);
  return background ? 2ull << 30 : 4ull << 30;
}

fs::path scratch_dir(const CopyOptions& o) {
  std::error_code ec;
  fs::path d = o.destination;
  if (!fs::is_directory(d, ec)) d = d.has_parent_path() ? d.parent_path() : fs::path(".");
  fs::path s = d / (".barge-tune." + std::to_string(::getpid()));
  fs::create_directory(s, ec);
  if (ec)
    throw std::runtime_error("cannot make the probe's scratch " + s.string() + ": " + ec.message());
  return s;
}

namespace {

int open_maybe_direct(const std::string& path, int flags, bool direct, mode_t mode = 0) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC | (direct ? O_DIRECT : 0), mode);
  if (fd < 0 && direct && errno == EINVAL) fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error("probe: open " + path + ": " + std::strerror(errno));
  return fd;
}

}  // namespace

RegionCursor::RegionCursor(const Plan& plan, uint64_t min_bytes) {
  for (uint32_t f : plan.files) {
    const auto& e = plan.entries[f];
    if (e.meta.size_bytes >= min_bytes) files_.push_back({plan.src_path(e), e.meta.size_bytes});
  }
  std::sort(files_.begin(), files_.end(),
            [](const auto& a, const auto& b) { return a.second > b.second; });
}

bool RegionCursor::next(uint64_t len, std::string* path, uint64_t* off, uint64_t* got) {
  while (file_ < files_.size() && pos_ + kAlign > files_[file_].second) {
    ++file_;
    pos_ = 0;
  }
  if (file_ >= files_.size()) return false;
  *path = files_[file_].first;
  *off = pos_;
  *got = std::min(len, files_[file_].second - pos_) / kAlign * kAlign;
  pos_ += *got;
  return *got > 0;
}

TuneProbe region_copy(RegionCursor& src, const TuneSetting& s, uint64_t memory, uint64_t cap,
                      const fs::path& scratch, bool sync, Clock::time_point deadline) {
  const uint64_t chunk = std::max<uint64_t>(kAlign, s.chunk_bytes / kAlign * kAlign);
  const unsigned slots =
      static_cast<unsigned>(std::clamp<uint64_t>(memory / chunk, 1, std::max(1u, s.queue_depth)));
  io::BufferPool pool(chunk, slots);
  std::vector<io::Buffer> bufs;
  for (unsigned i = 0; i < slots; ++i) bufs.push_back(pool.acquire());
  io::UringQueue q({.queue_depth = slots, .sqpoll = false, .register_pool = nullptr});
  const std::string out = (scratch / "region").string();
  io::UniqueFd wfd(open_maybe_direct(out, O_WRONLY | O_CREAT | O_TRUNC, s.direct, 0600));
  std::vector<io::UniqueFd> rfds;
  std::vector<bool> writing(slots, false);
  std::vector<uint64_t> got(slots, 0);
  std::string cur_path;
  uint64_t cur_off = 0, cur_left = 0, write_off = 0;
  int cur_fd = -1;
  TuneProbe p;
  p.setting = s;
  auto start_read = [&](unsigned slot) {
    if (Clock::now() >= deadline || p.bytes + q.in_flight() * chunk >= cap) return;
    if (cur_left == 0) {
      if (!src.next(cap, &cur_path, &cur_off, &cur_left)) return;
      rfds.emplace_back(open_maybe_direct(cur_path, O_RDONLY, s.direct));
      cur_fd = rfds.back().get();
    }
    uint64_t len = std::min(chunk, cur_left);
    q.start(slot, io::IoOp{io::IoKind::kRead, cur_fd, bufs[slot].data(), len, cur_off});
    cur_off += len;
    cur_left -= len;
    writing[slot] = false;
  };
  const auto t0 = Clock::now();
  for (unsigned i = 0; i < slots; ++i) start_read(i);
  while (q.in_flight() > 0) {
    for (unsigned slot : q.wait(Clock::now() + std::chrono::seconds(5))) {
      const io::IoOp& op = q.op(slot);
      if (op.error)
        throw std::runtime_error(std::string("probe: ") + (writing[slot] ? "write " : "read ") +
                                 std::strerror(op.error));
      if (writing[slot]) {
        p.bytes += got[slot];
        start_read(slot);
        continue;
      }
      got[slot] = op.done_bytes;
      uint64_t len = s.direct ? (op.done_bytes + kAlign - 1) / kAlign * kAlign : op.done_bytes;
      q.start(slot, io::IoOp{io::IoKind::kWrite, wfd.get(), bufs[slot].data(), len, write_off});
      write_off += len;
      writing[slot] = true;
    }
  }
  if (sync) ::fdatasync(wfd.get());
  p.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  ::unlink(out.c_str());
  return p;
}

SampleCopier::SampleCopier(const CopyOptions& opts, const Plan& plan, fs::path scratch)
    : opts_(opts), plan_(plan), scratch_(std::move(scratch)) {
  for (uint32_t f : plan.files)
    if (plan.entries[f].meta.size_bytes < kLargeFile) pool_.push_back(f);
  std::shuffle(pool_.begin(), pool_.end(), std::mt19937(42));
}

std::optional<TuneProbe> SampleCopier::run(const TuneSetting& s, uint64_t want_bytes,
                                           uint64_t want_files) {
  fs::path dir = scratch_ / ("p" + std::to_string(runs_++));
  fs::create_directory(dir);
  Plan sub;
  while (next_ < pool_.size() && sub.total_file_bytes < want_bytes &&
         sub.files.size() < want_files) {
    const Entry& e = plan_.entries[pool_[next_++]];
    auto k = static_cast<uint32_t>(sub.roots.size());
    sub.roots.push_back(Root{plan_.src_path(e), (dir / std::to_string(k)).string(), ""});
    sub.entries.push_back(Entry{"", k, kNoParent, e.meta, "", nullptr});
    sub.files.push_back(k);
    sub.total_file_bytes += e.meta.size_bytes;
  }
  if (sub.files.size() < 50) return std::nullopt;  // the samples ran out
  CopyOptions c = opts_;
  c.chunk_bytes = s.chunk_bytes;
  c.queue_depth = s.queue_depth;
  c.threads = s.threads;
  c.direct_read = c.direct_write = s.direct;
  c.progress = ProgressMode::kNone;
  c.manifest_path.clear();
  c.report_path.clear();
  c.resume = false;
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, s.threads);
  // A setting much slower than the defaults is cut short: what it committed still rates it.
  PlannedCopy how;
  how.time_limit_s = time_limit_s_;
  RunResult r = copy_planned(c, sub, RunResult{}, Clock::now(), how);
  std::error_code ec;
  fs::remove_all(dir, ec);
  const bool cut = r.fatal == kProbeTimeUp;
  if (r.exit_code != kExitOk && !cut)
    throw std::runtime_error("probe copy failed: " +
                             (r.fatal.empty() ? r.errors.empty() ? "" : r.errors[0] : r.fatal));
  TuneProbe p;
  p.setting = s;
  p.bytes = r.bytes;
  p.files = r.files;
  p.seconds = r.seconds;
  if (cut) p.change = " (cut short)";
  return p;
}

}  // namespace barge::pipeline::tune_detail
