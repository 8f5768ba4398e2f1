// send/recv's messages (docs/PROTOCOL.md): the handshake's JSON payloads, the plan's entry
// batches and the work-unit table, encoded by the sender and decoded, with every bound
// checked, by the receiver. Everything here parses bytes from the network: nothing is trusted.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "io/result.hpp"
#include "pipeline/core/hash.hpp"
#include "pipeline/core/plan.hpp"
#include "pipeline/core/stats.hpp"

namespace barge::pipeline {
class WireReader;  // pipeline/core/wire.hpp
}

namespace barge::pipeline::remote {

inline constexpr uint32_t kProtocolVersion = 1;
inline constexpr uint32_t kMaxControlPayload = 16u << 20;  // hello … done, a plan batch
inline constexpr uint64_t kMaxChunkBytes = 64ull << 20;
inline constexpr uint32_t kMaxStreams = 64;
inline constexpr uint32_t kMaxItemsPerUnit = 4096;
inline constexpr uint32_t kMaxDataRanges = 4096;  // of a sparse item
inline constexpr size_t kPlanBatchBytes = 1u << 20;

// send --sync: the hello's "sync" object. The receiver compares DST with the plan and asks
// only for what differs (pipeline/remote/recv_sync.hpp).
struct SyncRequest {
  bool enabled = false;
  bool delete_extra = false;  // remove what SRC lacks, except what the filter covers
  bool checksum = false;      // regular files in the plan carry their XXH3-128
  std::vector<std::string> excludes, includes;  // the sender's --exclude / --include
};
inline constexpr size_t kMaxSyncPatterns = 1024;
inline constexpr size_t kMaxPatternBytes = 4096;

// The first frame on every connection, from the sender. Stream 0 is the control stream and
// carries the transfer's shape; data streams 1..streams carry only session and stream.
struct Hello {
  uint32_t protocol = kProtocolVersion;
  std::string session;  // 32 hex digits, fresh per transfer
  uint32_t stream = 0;
  uint32_t streams = 1;  // data streams that will follow
  std::vector<std::string> capabilities;
  uint64_t chunk_bytes = 0;
  uint32_t files_per_unit = 0;
  std::vector<RemoteSource> sources;
  uint64_t entries = 0;  // plan entries that follow
  uint64_t files = 0;
  uint64_t bytes = 0;
  SyncRequest sync;
  bool resume = false;  // send --resume or a retry: the receiver skips what it already holds
  bool xattrs = false;  // send --xattrs: every plan entry carries its extended attributes
};
// An entry's extended attributes in the plan (send --xattrs), as Linux bounds them.
inline constexpr uint32_t kMaxXattrsPerEntry = 1024;
inline constexpr size_t kMaxXattrName = 255;
inline constexpr size_t kMaxXattrValue = 65536;
inline constexpr size_t kMaxXattrBytes = 1u << 20;  // names and values of one entry
std::string encode_hello(const Hello& h);
io::Result<Hello> decode_hello(std::string_view payload);

// The receiver's answer to a hello. A receiver running as several ranks (mpirun/srun) lists
// every rank's data endpoint, rank 0's first: data stream k goes to endpoints[(k - 1) % n].
// Empty: one rank, the data streams go where the control stream went.
struct Welcome {
  uint32_t protocol = kProtocolVersion;
  std::string session;
  std::vector<std::string> capabilities;
  std::vector<std::string> endpoints;  // "HOST:PORT"; at most kMaxStreams
};
std::string encode_welcome(const Welcome& w);
io::Result<Welcome> decode_welcome(std::string_view payload);

// The capabilities this build has: "zstd" (compressed items), "xxh3-128" (item checksums),
// "sync" (a receiver that compares DST with the plan), "xattrs" (plan entries with their
// extended attributes).
const std::vector<std::string>& capabilities();

// Plan batches: entries (pre-order, every root's own entry first) as write_entry encodes them,
// a regular file's followed by its XXH3-128 (low, high) when `sums` is given (sync --checksum),
// then, with `xattrs`, every entry's extended attributes (count, then name and value each).
std::string encode_entries(const Plan& plan, size_t& next, size_t max_bytes,
                           const std::vector<Hash128>* sums = nullptr, bool xattrs = false);

// The receiver's side: entries decoded into a plan whose roots are already placed. Each
// entry is checked: its root exists, its path is made of real names (no "", ".", "..", no
// NUL), its parent came before it as a directory, it is not a duplicate, and the counts and
// sizes stay within what the hello announced.
class PlanBuilder {
 public:
  // `sums` receives, per entry, the checksums a sync --checksum plan carries.
  PlanBuilder(Plan& plan, const Hello& hello, const std::vector<RemoteSource>& sources,
              std::vector<Hash128>* sums = nullptr)
      : plan_(plan), hello_(hello), sources_(sources), sums_(sums) {}
  io::Status add_batch(std::string_view payload);
  // Every announced entry arrived, every root has its entry.
  io::Status finish() const;

 private:
  io::Status add(Entry e);
  static io::Result<io::Xattrs> read_xattrs(WireReader& r);
  Plan& plan_;
  const Hello& hello_;
  const std::vector<RemoteSource>& sources_;
  std::vector<Hash128>* sums_;
  std::unordered_map<std::string, uint32_t> dirs_;  // "root\0rel" → entry of a directory
  std::unordered_set<std::string> names_;
  std::vector<uint8_t> root_seen_;
};

// The receiver's answer to the plan: the regular files it wants no bytes for (in place
// already, linked here, unchanged for a sync, or their directory failed) and, on a resume,
// the chunks of large files it already holds (journaled).
struct Ready {
  std::vector<uint32_t> unwanted;
  std::vector<std::pair<uint32_t, uint32_t>> done;  // (file, chunk)
};
std::string encode_ready(const Ready& r);
// The sender's check: every file a regular file of `plan`, every chunk one it has (with the
// chunk size of the hello), none twice.
io::Result<Ready> decode_ready(std::string_view payload, const Plan& plan, uint64_t chunk_bytes,
                               uint64_t buffer_bytes);

// One extent of a unit frame, as it travels: which chunk of which file, its checksum, and
// how its bytes follow the table (zstd, or raw; a raw sparse extent sends only its data
// ranges, the holes being zero).
struct WireItem {
  uint32_t file = 0;
  uint32_t chunk = 0;
  uint64_t offset = 0;
  uint64_t length = 0;
  Hash128 hash;
  bool compressed = false;
  bool sparse = false;
  bool failed = false;      // the sender could not read it: no bytes follow, the file is given up
  uint32_t wire_bytes = 0;  // bytes following the table for it
  std::vector<std::pair<uint64_t, uint64_t>> data;  // sparse: [begin, end) file offsets
};
std::string encode_unit_table(const std::vector<WireItem>& items);
// Decodes a unit's table (the payload's first `table_bytes`).
io::Result<std::vector<WireItem>> decode_unit_table(std::string_view table);

// The receiver's check of one decoded item against its plan: a regular file it expects,
// a chunk that exists and has not arrived yet, the right offset and length, data ranges
// inside the extent. Thread-safe.
class ChunkLedger {
 public:
  ChunkLedger(const Plan& plan, const std::vector<uint8_t>& expected, uint64_t chunk_bytes,
              uint64_t buffer_bytes);
  io::Status accept(const WireItem& it);
  // A chunk the receiver already holds (resume): counted as arrived; it may not come again.
  void mark_done(uint32_t file, uint32_t chunk);
  uint32_t chunk_count(uint32_t file) const;
  // Files expected whose chunks did not all arrive.
  std::vector<uint32_t> incomplete() const;
  // Every (file, chunk) accepted or marked done, file by file.
  std::vector<std::pair<uint32_t, uint32_t>> arrived() const;

 private:
  const Plan& plan_;
  const std::vector<uint8_t>& expected_;
  uint64_t chunk_bytes_, buffer_bytes_;
  mutable std::mutex mu_;
  std::unordered_map<uint32_t, std::vector<bool>> got_;  // per file started: chunks in
  std::unordered_map<uint32_t, uint32_t> left_;
};

// The receiver's final report (the done frame on the control stream): its run result as
// to_json gives it; decode_report takes the fields the sender's report uses.
io::Result<RunResult> decode_report(std::string_view payload);

// `n` random bytes (getrandom): session ids, the key of an ssh-started transfer.
std::string random_bytes(size_t n);
// "abc" ↔ "616263" (lower case).
std::string to_hex(std::string_view bytes);
std::optional<std::string> from_hex(std::string_view hex);
// A fresh session id: 16 random bytes in hex.
inline std::string new_session_id() { return to_hex(random_bytes(16)); }

}  // namespace barge::pipeline::remote
