// barge bench meta: the phases, timed per operation, merged on rank 0.
#include "pipeline/bench/meta.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <nlohmann/json.hpp>
#include <vector>

#include "io/log.hpp"
#include "pipeline/bench/error_kind.hpp"
#include "pipeline/core/stats.hpp"
#include "pipeline/core/wire.hpp"

namespace barge::pipeline::bench {
namespace {

using Clock = std::chrono::steady_clock;

// One rank's part of a phase.
struct RankPhase {
  uint64_t ops = 0;
  double seconds = 0;
  LatencyHistogram latency;
  uint64_t wall_ops = 0;
  double wall_seconds = 0;
};

class MetaRun {
 public:
  MetaRun(const MetaBenchOptions& o, transport::Comm& comm) : o_(o), comm_(comm) {
    std::string dir = o.path;
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    root_ = dir + "/barge-meta." + std::to_string(comm.rank());
    buf_.assign(o.file_bytes, 'b');
    dirs_ = o.dirs_per_rank ? o.dirs_per_rank : o.files_per_rank;
  }

  MetaBenchResult run();

 private:
  using Op = std::function<int(uint64_t)>;  // an errno, 0 when done
  // Times count operations (or, with a stonewall, as many as fit, then the wear-out to the
  // busiest rank's count). Returns how many were done.
  uint64_t phase(const std::string& name, uint64_t count, const Op& op, bool stonewall,
                 MetaBenchResult& out);
  void merge(const std::string& name, const RankPhase& mine, bool stonewall, MetaBenchResult& out);
  std::string dir_path(uint64_t i) const { return root_ + "/d/dir." + std::to_string(i); }
  std::string file_path(uint64_t i) const { return root_ + "/f/file." + std::to_string(i); }
  int create_file(uint64_t i);
  int read_file(uint64_t i);

  const MetaBenchOptions& o_;
  transport::Comm& comm_;
  std::string root_;
  std::string buf_;
  uint64_t dirs_ = 0;
  std::map<std::string, uint64_t> errors_;
  std::string fatal_;
};

int result_of(int rc) { return rc == 0 ? 0 : errno; }

int MetaRun::create_file(uint64_t i) {
  int fd = ::open(file_path(i).c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return errno;
  int err = 0;
  if (!buf_.empty() && ::write(fd, buf_.data(), buf_.size()) != static_cast<ssize_t>(buf_.size()))
    err = errno ? errno : EIO;
  if (::close(fd) != 0 && !err) err = errno;
  return err;
}

int MetaRun::read_file(uint64_t i) {
  int fd = ::open(file_path(i).c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  int err = 0;
  std::string in(buf_.size() ? buf_.size() : 1, '\0');
  if (::read(fd, in.data(), buf_.size()) != static_cast<ssize_t>(buf_.size()))
    err = errno ? errno : EIO;
  ::close(fd);
  return err;
}

uint64_t MetaRun::phase(const std::string& name, uint64_t count, const Op& op, bool stonewall,
                        MetaBenchResult& out) {
  RankPhase mine;
  bool walled = stonewall && o_.stonewall_s > 0;
  comm_.barrier();
  auto t0 = Clock::now();
  auto wall = t0 + std::chrono::duration_cast<Clock::duration>(
                       std::chrono::duration<double>(walled ? o_.stonewall_s : 1e9));
  auto run_to = [&](uint64_t from, uint64_t to, bool check_wall) {
    uint64_t i = from;
    for (; i < to && fatal_.empty(); ++i) {
      auto t = Clock::now();
      if (check_wall && t >= wall) break;
      int err = op(i);
      auto lat = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t).count();
      if (err) {
        ++errors_[detail::error_kind(err)];
        if (detail::is_fatal_error(err)) fatal_ = name + ": " + std::strerror(err);
        continue;
      }
      ++mine.ops;
      mine.latency.record(static_cast<uint64_t>(lat));
    }
    return i;
  };
  uint64_t done = run_to(0, count, walled);
  if (walled) {
    mine.wall_ops = mine.ops;
    mine.wall_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
    uint64_t target = done;
    comm_.allreduce_max(std::span<uint64_t>(&target, 1));  // wear-out: the busiest rank's count
    done = run_to(done, target, false);
  }
  mine.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  merge(name, mine, walled, out);
  return done;
}

void MetaRun::merge(const std::string& name, const RankPhase& mine, bool walled,
                    MetaBenchResult& out) {
  WireWriter w;
  w.u64(mine.ops);
  w.i64(static_cast<int64_t>(mine.seconds * 1e9));
  w.u64(mine.wall_ops);
  w.i64(static_cast<int64_t>(mine.wall_seconds * 1e9));
  w.str(mine.latency.serialize());
  std::vector<std::string> all = comm_.gather(w.bytes(), 0);
  if (comm_.rank() != 0) return;
  MetaPhase p;
  p.name = name;
  uint64_t wall_ops = 0;
  double wall_s = 0;
  for (const auto& part : all) {
    WireReader r(part);
    p.ops += r.u64();
    p.seconds = std::max(p.seconds, static_cast<double>(r.i64()) / 1e9);
    wall_ops += r.u64();
    wall_s = std::max(wall_s, static_cast<double>(r.i64()) / 1e9);
    p.latency.merge(LatencyHistogram::deserialize(r.str()));
  }
  if (walled) {
    p.stonewall_ops = wall_ops;
    p.stonewall_seconds = wall_s;
  }
  out.phases.push_back(std::move(p));
}

MetaBenchResult MetaRun::run() {
  MetaBenchResult out;
  out.options = o_;
  out.rank_count = comm_.size();
  const std::string tree[] = {root_, root_ + "/d", root_ + "/f"};
  auto mk = [](const std::string& p) { return result_of(::mkdir(p.c_str(), 0755)); };
  auto rm = [](const std::string& p) { return result_of(::rmdir(p.c_str())); };
  auto st = [](const std::string& p) {
    struct stat s {};
    return result_of(::stat(p.c_str(), &s));
  };
  phase(
      "tree_create", 3, [&](uint64_t i) { return mk(tree[i]); }, false, out);
  uint64_t dirs = phase(
      "dir_create", dirs_, [&](uint64_t i) { return mk(dir_path(i)); }, true, out);
  phase(
      "dir_stat", dirs, [&](uint64_t i) { return st(dir_path(i)); }, false, out);
  phase(
      "dir_remove", dirs, [&](uint64_t i) { return rm(dir_path(i)); }, false, out);
  uint64_t files = phase(
      "file_create", o_.files_per_rank, [&](uint64_t i) { return create_file(i); }, true, out);
  phase(
      "file_stat", files, [&](uint64_t i) { return st(file_path(i)); }, false, out);
  phase(
      "file_read", files, [&](uint64_t i) { return read_file(i); }, false, out);
  phase(
      "file_remove", files, [&](uint64_t i) { return result_of(::unlink(file_path(i).c_str())); },
      false, out);
  phase(
      "tree_remove", 3, [&](uint64_t i) { return rm(tree[2 - i]); }, false, out);
  // Errors by kind, summed on rank 0; a fatal error on any rank fails the job.
  WireWriter w;
  w.u32(static_cast<uint32_t>(errors_.size()));
  for (const auto& [k, n] : errors_) {
    w.str(k);
    w.u64(n);
  }
  std::vector<std::string> all = comm_.gather(w.bytes(), 0);
  for (const auto& part : all) {
    WireReader r(part);
    for (uint32_t n = r.u32(); n > 0; --n) {
      std::string k = r.str();
      out.errors[k] += r.u64();
    }
  }
  bool ok = fatal_.empty();
  if (!comm_.agree(ok)) {
    if (!ok) io::log_error("bench meta: " + root_ + ": " + fatal_);
    out.exit_code = kExitFatal;
  } else if (!out.errors.empty()) {
    out.exit_code = kExitPartial;
  }
  return out;
}

}  // namespace

io::Status validate(const MetaBenchOptions& o) {
  if (o.path.empty()) return io::Error::plain("bench meta: PATH is required");
  if (o.files_per_rank == 0) return io::Error::plain("--files must be at least 1");
  if (o.stonewall_s < 0) return io::Error::plain("--stonewall must not be negative");
  if (o.file_bytes > (64u << 20)) return io::Error::plain("--bytes must be at most 64M");
  return io::Status::success();
}

MetaBenchResult run_meta_bench(const MetaBenchOptions& o, transport::Comm& comm) {
  struct stat st {};
  io::Status ok = ::stat(o.path.c_str(), &st) != 0 ? io::Error::from_errno(errno, o.path)
                  : !S_ISDIR(st.st_mode)           ? io::Error::plain(o.path + ": not a directory")
                  : ::access(o.path.c_str(), W_OK | X_OK) != 0
                      ? io::Error::from_errno(errno, o.path)
                      : io::Status::success();
  if (!comm.agree(ok.ok())) {
    if (comm.rank() == 0 || !ok.ok())
      io::log_error("bench meta: " +
                    (ok.ok() ? std::string("another rank failed") : ok.error().message));
    MetaBenchResult r;
    r.exit_code = kExitFatal;
    return r;
  }
  return MetaRun(o, comm).run();
}

nlohmann::json to_json(const MetaBenchResult& r) {
  nlohmann::json phases = nlohmann::json::array();
  for (const auto& p : r.phases) {
    nlohmann::json j{{"name", p.name},
                     {"ops", p.ops},
                     {"seconds", p.seconds},
                     {"ops_per_second", p.ops_per_second()},
                     {"latency_ns", latency_json(p.latency)}};
    if (p.stonewall_ops) {
      j["stonewall"] = {
          {"ops", *p.stonewall_ops},
          {"seconds", *p.stonewall_seconds},
          {"ops_per_second", *p.stonewall_seconds > 0
                                 ? static_cast<double>(*p.stonewall_ops) / *p.stonewall_seconds
                                 : 0}};
    }
    phases.push_back(j);
  }
  nlohmann::json errors = nlohmann::json::object();
  for (const auto& [k, n] : r.errors) errors[k] = n;
  return {{"command", "bench meta"},
          {"options",
           {{"path", r.options.path},
            {"files_per_rank", r.options.files_per_rank},
            {"dirs_per_rank",
             r.options.dirs_per_rank ? r.options.dirs_per_rank : r.options.files_per_rank},
            {"file_bytes", r.options.file_bytes},
            {"stonewall_s", r.options.stonewall_s}}},
          {"ranks", r.rank_count},
          {"phases", phases},
          {"errors", errors},
          {"exit_code", r.exit_code}};
}

std::string human_summary(const MetaBenchResult& r) {
  char line[256];
  std::snprintf(line, sizeof line, "bench meta: %d %s, %llu files and %llu directories per rank\n",
                r.rank_count, r.rank_count == 1 ? "rank" : "ranks",
                static_cast<unsigned long long>(r.options.files_per_rank),
                static_cast<unsigned long long>(
                    r.options.dirs_per_rank ? r.options.dirs_per_rank : r.options.files_per_rank));
  std::string out = line;
  out += "  phase               ops/s        ops   p50 us   p99 us p99.9 us   max us\n";
  for (const auto& p : r.phases) {
    auto us = [](uint64_t ns) { return static_cast<double>(ns) / 1e3; };
    std::snprintf(line, sizeof line, "  %-12s %12.0f %10llu %8.1f %8.1f %8.1f %8.1f\n",
                  p.name.c_str(), p.ops_per_second(), static_cast<unsigned long long>(p.ops),
                  us(p.latency.percentile(50)), us(p.latency.percentile(99)),
                  us(p.latency.percentile(99.9)), us(p.latency.max()));
    out += line;
  }
  std::string errors;
  for (const auto& [k, n] : r.errors) errors += " " + k + " " + std::to_string(n);
  out += "  errors " + (errors.empty() ? std::string("none") : errors.substr(1)) + "\n";
  return out;
}

}  // namespace barge::pipeline::bench
