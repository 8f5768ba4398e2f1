// One rank's share of a backup (run_backup, pipeline/repo/backup.hpp): the run object, phase
// by phase. Internal to pipeline/repo: backup.cpp (execute, the parent, the snapshot saved or
// the packs discarded, this rank's entries, run_backup), backup_units.cpp (walk, each file's
// reuse-or-read decision, the graph's stages per unit, transfer).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/io_backend.hpp"
#include "pipeline/core/plan.hpp"
#include "pipeline/core/stats.hpp"
#include "pipeline/engine/level_tuner.hpp"
#include "pipeline/engine/work_unit.hpp"
#include "pipeline/repo/backup.hpp"
#include "pipeline/repo/backup_setup.hpp"
#include "pipeline/repo/repository.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline {

// This rank's pack names, by first use; BlobRef::pack indexes it until rank 0 remaps.
class PackTable {
 public:
  uint32_t index(const std::string& name) {
    std::lock_guard lock(mu_);
    auto [it, fresh] = index_.try_emplace(name, static_cast<uint32_t>(names_.size()));
    if (fresh) names_.push_back(name);
    return it->second;
  }
  std::vector<std::string> names() const {
    std::lock_guard lock(mu_);
    return names_;
  }

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, uint32_t> index_;
  std::vector<std::string> names_;
};

struct FileWork {
  std::vector<repo::BlobRef> chunks;     // by chunk number; raw_bytes 0 = hole
  const repo::SnapEntry* old = nullptr;  // the parent's entry, for chunk reuse
};

// One rank's share of a backup, phase by phase.
class BackupRun {
 public:
  // `parent`: the parent snapshot when this rank has read it already (rank 0, in decide).
  BackupRun(const BackupOptions& opts, transport::Comm& comm, const repo::Repository& repo,
            const Decision& d, std::optional<repo::Snapshot> parent)
      : opts_(opts), comm_(comm), repo_(repo), decision_(d), parent_(std::move(parent)) {}

  void execute(BackupResult& out);

 private:
  bool load_parent(RunResult& result);
  void save(BackupResult& out, const std::vector<std::string>& blobs, uint64_t stored_new);
  void discard_if_unsaved(BackupResult& out);
  void ctx_fatal(const std::string& why);
  static std::string encode_strings(const std::vector<std::string>& v);
  static std::vector<std::string> decode_strings(const std::string& b);

  void walk(unsigned threads);
  void prepare();
  uint64_t chunk_bytes() const { return repo_.config().chunk_bytes; }
  uint64_t buffer_bytes() const { return (chunk_bytes() + 4095) / 4096 * 4096; }
  repo::BlobRef remap(const repo::BlobRef& c);
  void read_unit(WorkUnit& u, io::IoBackend& backend);
  void dedupe_unit(WorkUnit& u);
  void record_unit(WorkUnit& u);
  void transfer(unsigned threads);
  std::unique_ptr<LevelTuner> make_tuner(unsigned threads);
  static void count_for_tuner(const WorkUnit& u, LevelTuner& tuner);
  bool failed(uint32_t f) const { return dropped_[f].load(std::memory_order_relaxed) != 0; }
  void fail_file(uint32_t f, const std::string& why);

  std::string serialize_local();
  repo::Snapshot merge(const std::vector<std::string>& blobs, uint64_t stored_new) const;
  repo::Snapshot snapshot_header() const;

  const BackupOptions& opts_;
  transport::Comm& comm_;
  const repo::Repository& repo_;
  Decision decision_;
  std::optional<repo::Snapshot> parent_;
  std::unordered_map<std::string, uint32_t> parent_index_;
  Plan plan_;
  ErrorList walk_errors_, errors_;
  std::vector<repo::SnapEntry> entries_;
  std::vector<FileWork> work_;
  std::vector<uint8_t> include_, follower_;
  std::vector<std::atomic<uint8_t>> dropped_;
  PackTable pack_table_;
  std::optional<repo::PackWriter> packs_;
  LiveStats stats_;
  std::atomic<uint64_t> bytes_read_{0}, files_read_{0};
  std::mutex mu_;
  std::string fatal_;
  std::atomic<bool> stop_{false};
  std::string result_backend_;
  std::optional<TuneReport> tune_;  // --tune
};

}  // namespace barge::pipeline
