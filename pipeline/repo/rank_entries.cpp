#include "pipeline/repo/rank_entries.hpp"

#include <algorithm>
#include <map>
#include <unordered_map>

namespace barge::pipeline {

using repo::BlobRef;
using repo::SnapEntry;

RankEntriesWriter::RankEntriesWriter(const std::vector<std::string>& packs) {
  head_.u32(static_cast<uint32_t>(packs.size()));
  for (const std::string& p : packs) head_.str(p);
}

void RankEntriesWriter::add(const SnapEntry& s, bool follower) {
  body_.str(s.path);
  write_meta(body_, s.meta);
  body_.str(s.link_target);
  body_.u8(follower ? 1 : 0);
  body_.u32(static_cast<uint32_t>(s.xattrs.size()));
  for (const auto& [k, v] : s.xattrs) {
    body_.str(k);
    body_.str(v);
  }
  body_.u32(static_cast<uint32_t>(s.chunks.size()));
  for (const BlobRef& c : s.chunks) repo::write_chunk(body_, c);
  ++count_;
}

std::string RankEntriesWriter::take() {
  head_.u64(count_);
  std::string out = head_.take();
  out += body_.take();
  return out;
}

namespace {

// One rank's serialize_local() appended to snap; `follower` gets each entry's mark.
void read_rank_entries(const std::string& blob, repo::Snapshot& snap,
                       std::unordered_map<std::string, uint32_t>& pack_index,
                       std::vector<uint8_t>& follower) {
  WireReader r(blob);
  std::vector<uint32_t> remap;
  for (uint32_t k = 0, np = r.u32(); k < np; ++k) {
    std::string name = r.str();
    auto [it, fresh] = pack_index.try_emplace(name, static_cast<uint32_t>(snap.packs.size()));
    if (fresh) snap.packs.push_back(name);
    remap.push_back(it->second);
  }
  for (uint64_t k = 0, n = r.u64(); k < n; ++k) {
    SnapEntry e;
    e.path = r.str();
    e.meta = read_meta(r);
    e.link_target = r.str();
    follower.push_back(r.u8());
    for (uint32_t x = 0, nx = r.u32(); x < nx; ++x) {
      std::string key = r.str();
      e.xattrs.emplace_back(std::move(key), r.str());
    }
    for (uint32_t c = 0, nc = r.u32(); c < nc; ++c) {
      BlobRef ref = repo::read_chunk(r);
      ref.pack = remap.at(ref.pack);
      e.chunks.push_back(ref);
    }
    snap.entries.push_back(std::move(e));
  }
}

// Sorted by path (parents first), the follower marks carried along.
void sort_by_path(repo::Snapshot& snap, std::vector<uint8_t>& follower) {
  std::vector<uint32_t> order(snap.entries.size());
  for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(),
            [&](uint32_t a, uint32_t b) { return snap.entries[a].path < snap.entries[b].path; });
  std::vector<SnapEntry> sorted;
  std::vector<uint8_t> sorted_follower;
  sorted.reserve(order.size());
  for (uint32_t i : order) {
    sorted.push_back(std::move(snap.entries[i]));
    sorted_follower.push_back(follower[i]);
  }
  snap.entries = std::move(sorted);
  follower = std::move(sorted_follower);
}

// Hard links across ranks: entries are sorted by path, so the first member of a group is
// the one leads_link_group picks (pipeline/core/plan.hpp); the rest link to it.
void link_groups(repo::Snapshot& snap, const std::vector<uint8_t>& follower) {
  std::map<std::pair<uint64_t, uint64_t>, uint32_t> leader;
  for (uint32_t i = 0; i < snap.entries.size(); ++i) {
    SnapEntry& e = snap.entries[i];
    if (e.meta.type != io::FileType::kRegular || e.meta.nlink < 2) continue;
    auto [it, fresh] = leader.try_emplace({e.meta.device, e.meta.inode}, i);
    if (fresh && !follower[i]) continue;
    if (fresh) {  // a follower whose leader is not in the snapshot: keep it as a plain file
      leader.erase(it);
      continue;
    }
    e.link_to = it->second;
    e.chunks.clear();
  }
}

void count_totals(repo::Snapshot& snap) {
  std::unordered_map<uint64_t, bool> seen_blob;
  for (const SnapEntry& e : snap.entries) {
    if (e.meta.type != io::FileType::kRegular) continue;
    ++snap.files;
    if (e.link_to != repo::kNoLink) continue;
    snap.bytes_raw += e.meta.size_bytes;
    for (const BlobRef& c : e.chunks) {
      uint64_t key = (static_cast<uint64_t>(c.pack) << 40) ^ c.pack_offset;
      if (seen_blob.emplace(key, true).second)
        snap.bytes_stored += repo::kBlobHeaderBytes + c.stored_bytes;
    }
  }
}

}  // namespace

repo::Snapshot merge_rank_entries(repo::Snapshot snap, const std::vector<std::string>& blobs) {
  std::vector<uint8_t> follower;
  std::unordered_map<std::string, uint32_t> pack_index;
  for (const std::string& b : blobs) read_rank_entries(b, snap, pack_index, follower);
  sort_by_path(snap, follower);
  link_groups(snap, follower);
  count_totals(snap);
  return snap;
}

}  // namespace barge::pipeline
