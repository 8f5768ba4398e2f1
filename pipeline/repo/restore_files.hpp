// restore's transfer: pack-fetch → decompress+check → write → commit over one rank's files,
// each written as an unnamed inode and linked into place when its last chunk is in.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "io/unique_fd.hpp"
#include "pipeline/core/stats.hpp"
#include "pipeline/engine/work_unit.hpp"
#include "pipeline/repo/backup.hpp"
#include "pipeline/repo/restore_paths.hpp"

namespace barge::pipeline::restore {

class RestoreFiles {
 public:
  // fail(entry, why): the snapshot entry is not restored, for that reason.
  using Fail = std::function<void(uint32_t, std::string)>;
  RestoreFiles(const RestoreOptions& opts, const repo::Snapshot& snap, PackFds& packs, int root_fd,
               bool apply_owner, const std::vector<uint32_t>& data_of, LiveStats& stats,
               ErrorList& errors, Fail fail)
      : opts_(opts),
        snap_(snap),
        packs_(packs),
        root_fd_(root_fd),
        apply_owner_(apply_owner),
        data_of_(data_of),
        stats_(stats),
        errors_(errors),
        fail_(std::move(fail)) {}

  // Restores the files `mine` lists (snapshot entries with data); sets result's I/O fields.
  void run(const std::vector<uint32_t>& mine, unsigned threads, RunResult& result);

 private:
  struct OpenFile {
    std::mutex mu;
    io::UniqueFd fd;
    bool tried = false;
    bool chown = true;  // ownership differs from what the new inode got
    std::atomic<uint32_t> left{0};
    std::atomic<bool> failed{false};
  };
  std::string dst(const repo::SnapEntry& e) const;
  const repo::SnapEntry& entry_of(uint32_t k) const { return snap_.entries[(*mine_)[k]]; }
  const std::vector<repo::BlobRef>& chunks_of(uint32_t k) const {
    return snap_.entries[data_of_[(*mine_)[k]]].chunks;
  }
  void fail_file(uint32_t k, std::string why);
  bool cut(WorkUnit& u, uint64_t cap, size_t& k, size_t& c) const;
  int open_file(uint32_t k, ParentCache& parents);
  void write_unit(WorkUnit& u, io::IoBackend& backend);
  void commit_unit(WorkUnit& u);

  const RestoreOptions& opts_;
  const repo::Snapshot& snap_;
  PackFds& packs_;
  const int root_fd_;
  const bool apply_owner_;
  const std::vector<uint32_t>& data_of_;  // per entry: the entry whose chunks hold its bytes
  LiveStats& stats_;
  ErrorList& errors_;
  Fail fail_;
  const std::vector<uint32_t>* mine_ = nullptr;  // the files this rank restores
  std::unique_ptr<OpenFile[]> open_;             // per file of mine_, during the run
};

}  // namespace barge::pipeline::restore
