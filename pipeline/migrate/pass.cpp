#include "pipeline/migrate/pass.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <map>

#include "io/path_ops.hpp"
#include "pipeline/copy/sync.hpp"
#include "pipeline/core/manifest.hpp"
#include "pipeline/migrate/keep.hpp"

namespace barge::pipeline::migrate {

bool is_changed_while_copied(const std::string& error, const std::string& src) {
  // The engine's words for a source that changed under it, and for one that vanished
  // between the walk and its copy (renamed or deleted on a live source).
  return error.find("changed while being copied") != std::string::npos ||
         error.find("shrank while being copied") != std::string::npos ||
         (error.find("No such file or directory") != std::string::npos &&
          error.find(src + "/") != std::string::npos);
}

namespace {

// sync's itemized lines: "YXcstpoguax path" (Y '>' for a file whose bytes are copied, 'c'
// for a created entry, '.' for metadata) and "*deleting   path".
void count_changes(const std::vector<std::string>& changes, const State& s, bool dry_run,
                   PassRecord& r) {
  for (const std::string& line : changes) {
    ++r.entries_changed;
    if (line.rfind("*deleting", 0) == 0) {
      ++r.entries_deleted;
      continue;
    }
    if (line.size() < 13 || line[0] != '>' || line[1] != 'f') continue;
    ++r.files_changed;
    if (dry_run) {  // what the copy would move: the source's size now
      struct stat st;
      if (::lstat(io::join_path(s.src, line.substr(12)).c_str(), &st) == 0)
        r.bytes_changed += static_cast<uint64_t>(st.st_size);
    }
  }
}

}  // namespace

PassRun run_pass(const State& s, const CopyOptions& knobs, const PassSpec& spec,
                 transport::Comm& comm) {
  SyncOptions o;
  o.copy = knobs;
  o.copy.sources = {s.src};
  o.copy.destination = s.dst;
  o.copy.manifest_path = spec.manifest;
  o.copy.resume = spec.resume;
  o.copy.recheck_source = true;
  o.copy.report_path.clear();
  o.itemize = true;
  o.dry_run = spec.dry_run;
  o.delete_extra = spec.delete_extra;
  PassRun out;
  out.record.pass = spec.pass;
  out.record.kind = spec.kind;
  out.record.started_unix = now_unix();
  SyncResult r = run_sync(o, comm);
  out.record.seconds = now_unix() - out.record.started_unix;
  out.exit_code = r.run.exit_code;
  out.fatal = r.run.fatal;
  out.resumable = r.run.resumable;
  count_changes(r.changes, s, spec.dry_run, out.record);
  if (!spec.dry_run) out.record.bytes_changed = r.run.bytes_transferred;
  for (const std::string& e : r.run.errors) {
    if (is_changed_while_copied(e, s.src)) {
      ++out.record.files_retried;
      continue;
    }
    ++out.record.errors;
    if (out.record.error_samples.size() < 5) out.record.error_samples.push_back(e);
  }
  return out;
}

io::Status start_pass(State& s, const PassSpec& spec, const char* phase, bool keep,
                      unsigned threads, double* keep_s) {
  s.phase = phase;
  s.pass_running = spec.pass;
  s.pass_started_unix = now_unix();
  io::Status st = save_state(s);
  const double k0 = now_unix();
  if (st && keep) st = keep_before_pass(s, spec.pass, threads);
  *keep_s = now_unix() - k0;
  return st;
}

io::Status finish_pass(State& s, const PassSpec& spec, bool keep, double keep_s,
                       PassRecord& record) {
  const double k0 = now_unix();
  io::Status st = keep ? prune_after_pass(s, spec.pass) : io::Status::success();
  record.keep_seconds = keep_s + (now_unix() - k0);
  if (st) st = merge_manifest(s, spec.manifest);
  if (st) st = append_pass(s, record);
  s.pass_running = 0;
  if (st) st = save_state(s);
  return st;
}

io::Status merge_manifest(const State& s, const std::string& pass_manifest) {
  const std::string whole = s.dir + "/manifest";
  std::map<std::string, Hash128> merged;
  if (::access(whole.c_str(), F_OK) == 0) {
    auto old = read_manifest(whole);
    if (!old) return old.error();
    for (auto& e : old.value()) merged[e.path] = e.hash;
  }
  if (::access(pass_manifest.c_str(), F_OK) == 0) {
    auto add = read_manifest(pass_manifest);
    if (!add) return add.error();
    for (auto& e : add.value()) merged[e.path] = e.hash;
  }
  std::vector<ManifestEntry> entries;
  entries.reserve(merged.size());
  for (auto& [path, hash] : merged) entries.push_back({path, hash});
  auto text = format_manifest(std::move(entries));
  if (!text) return text.error();
  if (auto st = write_file_atomic(whole, text.value()); !st) return st;
  ::unlink(pass_manifest.c_str());
  return io::Status::success();
}

}  // namespace barge::pipeline::migrate
