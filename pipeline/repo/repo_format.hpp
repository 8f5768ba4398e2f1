// The backup repository's on-disk structures (docs/FORMAT.md, "Backup repository"): the
// config, pack files of blobs, and snapshot manifests.
//
// Every decoder here reads untrusted bytes (a repository may be damaged or forged): each
// checks magic, version, bounds and checksums, and returns an error naming what is wrong
// instead of reading past its input. decode_snapshot also refuses entry paths that could
// lead outside a restore destination (absolute, "..", ".", empty components).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/metadata.hpp"
#include "io/result.hpp"
#include "pipeline/core/hash.hpp"

namespace barge::pipeline::repo {

// Version of the config and the packs.
inline constexpr uint32_t kFormatVersion = 1;
// Version of snapshot manifests written now; version 1 (no `unreadable` count) is still read.
inline constexpr uint32_t kSnapshotVersion = 2;

// A repository's chunk size: a multiple of 4 KiB for new repositories (decode_config accepts
// any value in range, as older repositories may hold one).
inline constexpr uint32_t kMinChunkBytes = 4096;
inline constexpr uint32_t kMaxChunkBytes = 1u << 30;

enum class Codec : uint8_t { kRaw = 0, kZstd = 1 };

// A blob inside a pack: a 40-byte header, then the stored bytes.
//   magic "BBLB" | codec u8 | 3 zero bytes | raw_bytes u32 | stored_bytes u32 |
//   XXH3-128 of the raw bytes (high u64, low u64) | XXH3-64 of the 32 bytes before it
inline constexpr size_t kBlobHeaderBytes = 40;
struct BlobHeader {
  Codec codec = Codec::kRaw;
  uint32_t raw_bytes = 0;
  uint32_t stored_bytes = 0;
  Hash128 hash;
};
void encode_blob_header(const BlobHeader& h, std::span<std::byte, kBlobHeaderBytes> out);
io::Result<BlobHeader> decode_blob_header(std::span<const std::byte> in);

// A pack starts with 32 bytes: magic "BRGPACK\0" | version u32 | 4 zero bytes | pack name
// (16 bytes, the name's 32 hex digits as binary).
inline constexpr size_t kPackHeaderBytes = 32;
std::string encode_pack_header(const std::string& pack_name);
io::Status check_pack_header(std::span<const std::byte> in, const std::string& pack_name);
bool is_pack_name(std::string_view name);  // 32 lowercase hex digits

// Where one chunk of a file is stored.
struct BlobRef {
  uint32_t pack = 0;          // index into Snapshot::packs
  uint64_t pack_offset = 0;   // offset of the blob header in the pack
  uint32_t stored_bytes = 0;  // after the header
  uint32_t raw_bytes = 0;
  uint64_t file_offset = 0;  // where the raw bytes go in the file (holes between chunks)
  Hash128 hash;              // XXH3-128 of the raw bytes
  Codec codec = Codec::kRaw;
};

inline constexpr uint32_t kNoLink = UINT32_MAX;

}  // namespace barge::pipeline::repo
namespace barge::pipeline {
class WireWriter;
class WireReader;
}  // namespace barge::pipeline
namespace barge::pipeline::repo {

// A BlobRef's bytes in manifests and between ranks; read_chunk throws WireError on a
// truncated input or an unknown codec.
void write_chunk(WireWriter& w, const BlobRef& c);
BlobRef read_chunk(WireReader& r);

struct SnapEntry {
  std::string path;  // relative to the backup root, '/'-separated; "" is the root itself
  io::FileMeta meta;
  std::string link_target;     // symlinks
  uint32_t link_to = kNoLink;  // hard link: index of the entry that holds the data
  std::vector<std::pair<std::string, std::string>> xattrs;
  std::vector<BlobRef> chunks;  // regular files, by file offset
};

enum class SnapKind : uint8_t { kFull = 0, kIncremental = 1, kDifferential = 2 };
const char* kind_name(SnapKind k);

struct Snapshot {
  std::string id;  // sortable: time, then random (see new_snapshot_id)
  SnapKind kind = SnapKind::kFull;
  std::string parent;     // the snapshot compared against ("" for a full)
  std::string base_full;  // the full snapshot this one's chain starts from
  int64_t time_ns = 0;
  std::string host;
  std::string source;  // absolute path that was backed up
  std::string tag;
  uint32_t level = 3;  // zstd level
  uint64_t files = 0;
  uint64_t bytes_raw = 0;         // file bytes in the snapshot
  uint64_t bytes_stored_new = 0;  // pack bytes this snapshot added
  uint64_t bytes_stored = 0;      // pack bytes its entries reference
  // Errors while it was taken (entries left out or stored without their xattrs): a snapshot
  // with unreadable > 0 is not a complete image of the source. 0 in version 1 manifests.
  uint64_t unreadable = 0;
  std::vector<std::string> packs;  // pack names
  std::vector<SnapEntry> entries;  // sorted by path; parents before children
};

// "20261122T053300.123Z-1a2b3c4d": ordered by time, unique across hosts.
std::string new_snapshot_id(int64_t time_ns);
bool is_snapshot_id(std::string_view id);

// A snapshot file: 48-byte header, then zstd(payload).
//   magic "BRGSNAP\0" | version u32 (1 or 2) | kind u8 | 3 zero bytes | payload raw length u64 |
//   stored length u64 | XXH3-64 of the stored bytes | XXH3-64 of the 40 bytes before it
std::string encode_snapshot(const Snapshot& s);
io::Result<Snapshot> decode_snapshot(std::string_view bytes);
// The kind from a snapshot file's first 48 bytes (header checksum checked), without reading
// the rest; decode_snapshot checks it against the payload.
io::Result<SnapKind> peek_snapshot_kind(std::string_view header);
inline constexpr size_t kSnapshotHeaderBytes = 48;

// The config file: magic "BRGREPO\0" | version u32 | chunk bytes u32 | repository id (16
// bytes) | creation time ns i64 | XXH3-64 of the 40 bytes before it.
struct Config {
  std::string repo_id;  // 32 hex digits
  uint32_t chunk_bytes = 0;
  int64_t created_ns = 0;
};
std::string encode_config(const Config& c);
io::Result<Config> decode_config(std::string_view bytes);

// A path from a manifest that stays inside the directory it is joined to: relative, no
// empty, "." or ".." component, no NUL. "" (the root) is safe.
bool is_safe_relative_path(std::string_view path);

// 32 random lowercase hex digits.
std::string random_hex128();

}  // namespace barge::pipeline::repo
