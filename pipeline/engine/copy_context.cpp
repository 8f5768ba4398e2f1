// CopyContext (the copy's shared state) and DirFdCache.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>

#include "io/log.hpp"
#include "io/metadata.hpp"
#include "io/path_ops.hpp"
#include "io/xattr.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/engine/copy_stages.hpp"

namespace barge::pipeline {
namespace {

constexpr uint64_t kDirectAlign = 4096;

uint64_t round_up(uint64_t v, uint64_t a) { return (v + a - 1) / a * a; }

// Unique per run across hosts sharing a file system: pid alone repeats across nodes.
std::string make_temp_suffix() {
  char host[64] = {};
  ::gethostname(host, sizeof host - 1);
  std::random_device rd;
  uint64_t nonce = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  char buf[128];
  std::snprintf(buf, sizeof buf, ".%s.%d.%016llx", host, static_cast<int>(::getpid()),
                static_cast<unsigned long long>(nonce));
  std::string s(buf);
  for (char& c : s) {
    if (c == '/') c = '_';
  }
  return s.substr(0, 96);  // leaves room in a 255-byte name for ".barge-tmp.<index>"
}

}  // namespace

CopyContext::CopyContext(const Plan& p, const CopyOptions& o, LiveStats& s, BackendSource b)
    : plan(p),
      opts(o),
      stats(s),
      backend(std::move(b)),
      parent_ok(p.entries.size(), 1),
      chunks_left_(new std::atomic<uint32_t>[p.entries.size()]),
      failed_(new std::atomic<uint8_t>[p.entries.size()]),
      temp_suffix_(make_temp_suffix()),
      euid_(::geteuid()),
      egid_(::getegid()) {
  uint64_t buffer_bytes = round_up(o.chunk_bytes, kDirectAlign);
  for (size_t i = 0; i < p.entries.size(); ++i) {
    failed_[i].store(0, std::memory_order_relaxed);
    chunks_left_[i].store(
        chunk_count_for(p.entries[i].meta.size_bytes, o.chunk_bytes, buffer_bytes),
        std::memory_order_relaxed);
  }
}

void CopyContext::fail_file(uint32_t file, std::string message) {
  if (failed_[file].exchange(1) != 0) return;
  if (is_consequence_of_stop(message)) {
    stopped_errors.add(std::move(message));
  } else {
    errors.add(std::move(message));
  }
}

bool CopyContext::is_consequence_of_stop(const std::string& message) const {
  if (!stop.load()) return false;
  auto ends_with = [&](std::string_view tail) {
    return message.size() >= tail.size() &&
           message.compare(message.size() - tail.size(), tail.size(), tail) == 0;
  };
  if (ends_with("(run stopped)")) return true;
  // "<operation> <path>: <strerror>" of a destination that cannot take more data, on this
  // rank or (the stop came from a peer) another. Not EIO: a source's read error says the
  // same, and must stay named.
  for (int err : {ENOSPC, EDQUOT, EROFS, EFBIG}) {
    if (ends_with(std::string(": ") + std::strerror(err))) return true;
  }
  return false;
}

bool CopyContext::needs_chown(const Entry& e) const {
  if (!apply_owner) return false;
  if (e.meta.uid != euid_ || e.meta.gid != egid_) return true;
  // A new file takes the group of a setgid directory: then the gid may differ after all.
  return e.parent == kNoParent || (plan.entries[e.parent].meta.mode & S_ISGID);
}

void CopyContext::abandon_file(uint32_t file) { failed_[file].store(1); }

void CopyContext::set_fatal(std::string message) {
  std::lock_guard lock(mu_);
  if (fatal_.empty()) fatal_ = printable_path(message);
  stop.store(true);
}

std::string CopyContext::fatal() const {
  std::lock_guard lock(mu_);
  return fatal_;
}

LargeFile& CopyContext::large_file(uint32_t file) {
  std::lock_guard lock(mu_);
  auto& slot = large_[file];
  if (!slot) {
    slot = std::make_unique<LargeFile>();
    if (manifest) slot->hasher.emplace();
  }
  return *slot;
}

std::unique_ptr<LargeFile> CopyContext::take_large_file(uint32_t file) {
  std::lock_guard lock(mu_);
  auto it = large_.find(file);
  if (it == large_.end()) return nullptr;
  auto out = std::move(it->second);
  large_.erase(it);
  return out;
}

std::vector<uint32_t> CopyContext::open_large_files() {
  std::lock_guard lock(mu_);
  std::vector<uint32_t> out;
  for (auto& [file, lf] : large_) out.push_back(file);
  return out;
}

bool CopyContext::is_large(uint32_t file) const {
  const io::FileMeta& m = plan.entries[file].meta;
  return m.type == io::FileType::kRegular &&
         chunk_count_for(m.size_bytes, opts.chunk_bytes, round_up(opts.chunk_bytes, kDirectAlign)) >
             1;
}

std::string CopyContext::temp_name(uint32_t file) const {
  // Large files get a deterministic part name, so a resumed run finds their chunks.
  if (is_large(file)) return part_name(plan.entries[file], opts.chunk_bytes);
  // Short and unique per run: fits beside a 255-byte name and never collides with it.
  return ".barge-tmp." + std::to_string(temp_ids.empty() ? file : temp_ids[file]) + temp_suffix_;
}

std::string CopyContext::dst_dir_of(const Entry& e) const { return plan.dst_parent(e); }

std::string CopyContext::src_dir_of(const Entry& e) const { return plan.src_parent(e); }

int DirFdCache::get(const std::string& path, bool follow_last) {
  if (fd_.valid() && path == path_) return fd_.get();
  auto fd = io::open_dir_path(path, io::DirOpen::kParent, follow_last);
  if (!fd) {
    errno = fd.error().errnum ? fd.error().errnum : ENOENT;
    fd_.reset();
    path_.clear();
    return -1;
  }
  fd_ = std::move(fd.value());
  path_ = path;
  return fd_.get();
}

}  // namespace barge::pipeline
