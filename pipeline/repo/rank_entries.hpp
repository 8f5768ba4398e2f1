// One rank's entries of a backup on their way to rank 0 (pack names, then each entry with
// its hard-link follower mark), and rank 0's merge of every rank's into one snapshot.
#pragma once

#include <string>
#include <vector>

#include "pipeline/core/wire.hpp"
#include "pipeline/repo/repo_format.hpp"

namespace barge::pipeline {

class RankEntriesWriter {
 public:
  explicit RankEntriesWriter(const std::vector<std::string>& packs);
  void add(const repo::SnapEntry& e, bool follower);
  std::string take();

 private:
  WireWriter head_, body_;
  uint64_t count_ = 0;
};

// Rank 0: every rank's entries appended to `header` (packs renumbered into one table),
// sorted by path, hard links across ranks resolved, files and bytes counted. Throws
// WireError on a malformed record.
repo::Snapshot merge_rank_entries(repo::Snapshot header, const std::vector<std::string>& blobs);

}  // namespace barge::pipeline
