#include "pipeline/repo/repo_format.hpp"

#include <zstd.h>

#include <cstring>
#include <ctime>
#include <random>
#include <unordered_set>

#include "pipeline/core/wire.hpp"

namespace barge::pipeline::repo {
namespace {

constexpr char kBlobMagic[4] = {'B', 'B', 'L', 'B'};
constexpr char kPackMagic[8] = {'B', 'R', 'G', 'P', 'A', 'C', 'K', '\0'};
constexpr char kSnapMagic[8] = {'B', 'R', 'G', 'S', 'N', 'A', 'P', '\0'};
constexpr char kConfigMagic[8] = {'B', 'R', 'G', 'R', 'E', 'P', 'O', '\0'};
constexpr size_t kSnapHeaderBytes = 48;
constexpr size_t kConfigBytes = 48;
// Bounds a forged header cannot push past: manifests up to 64 GiB raw (chunks: kMaxChunkBytes).
constexpr uint64_t kMaxManifestBytes = uint64_t{64} << 30;

template <class T>
void put(std::byte* p, T v) {
  std::memcpy(p, &v, sizeof v);
}
template <class T>
T get(const std::byte* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
uint64_t sum64(const std::byte* p, size_t n) { return hash64_bytes({p, n}); }
std::span<const std::byte> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

io::Error bad(const std::string& what) { return io::Error::plain(what); }

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}
bool is_lower_hex(std::string_view s, size_t n) {
  if (s.size() != n) return false;
  for (char c : s)
    if (hex_value(c) < 0) return false;
  return true;
}
void hex_to_bytes(std::string_view hex, std::byte* out) {
  for (size_t i = 0; i < hex.size() / 2; ++i)
    out[i] = static_cast<std::byte>(hex_value(hex[2 * i]) * 16 + hex_value(hex[2 * i + 1]));
}
std::string bytes_to_hex(const std::byte* p, size_t n) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < n; ++i) {
    auto b = static_cast<unsigned>(p[i]);
    out += kDigits[b >> 4];
    out += kDigits[b & 15];
  }
  return out;
}

// Structural checks beyond the byte layout: what restore and verify rely on.
void check_snapshot(const Snapshot& s) {
  if (!is_snapshot_id(s.id)) throw WireError("bad snapshot id");
  if (s.kind > SnapKind::kDifferential) throw WireError("unknown snapshot kind");
  if (!s.parent.empty() && !is_snapshot_id(s.parent)) throw WireError("bad parent id");
  if (!s.base_full.empty() && !is_snapshot_id(s.base_full)) throw WireError("bad base id");
  for (const std::string& p : s.packs)
    if (!is_pack_name(p)) throw WireError("bad pack name");
  // Every entry below the root sits in a directory entry of the snapshot: nothing can be
  // placed through a symlink, a file or a path the snapshot does not describe.
  std::unordered_set<std::string_view> dirs;
  for (size_t i = 0; i < s.entries.size(); ++i) {
    const SnapEntry& e = s.entries[i];
    if (!is_safe_relative_path(e.path))
      throw WireError("unsafe path in entry " + std::to_string(i));
    if (i > 0 && !(s.entries[i - 1].path < e.path))
      throw WireError("entries not sorted or duplicated at " + std::to_string(i));
    if (i == 0 ? !e.path.empty() || e.meta.type != io::FileType::kDirectory : e.path.empty())
      throw WireError("the first entry, and only it, is the root directory");
    if (i > 0) {
      size_t slash = e.path.rfind('/');
      std::string_view parent = slash == std::string::npos
                                    ? std::string_view()
                                    : std::string_view(e.path).substr(0, slash);
      if (!dirs.count(parent))
        throw WireError("entry " + std::to_string(i) +
                        " is not inside a directory of the snapshot");
    }
    if (e.meta.type == io::FileType::kDirectory) dirs.insert(e.path);
    if (e.link_to != kNoLink) {
      if (e.link_to >= i || e.meta.type != io::FileType::kRegular ||
          s.entries[e.link_to].meta.type != io::FileType::kRegular ||
          s.entries[e.link_to].link_to != kNoLink || !e.chunks.empty())
        throw WireError("bad hard link in entry " + std::to_string(i));
    }
    if (!e.chunks.empty() && e.meta.type != io::FileType::kRegular)
      throw WireError("chunks on a non-file entry " + std::to_string(i));
    uint64_t end = 0;
    for (const BlobRef& c : e.chunks) {
      if (c.pack >= s.packs.size()) throw WireError("chunk names no pack");
      if (c.raw_bytes == 0 || c.raw_bytes > kMaxChunkBytes) throw WireError("bad chunk length");
      if (c.codec == Codec::kRaw ? c.stored_bytes != c.raw_bytes
                                 : c.stored_bytes == 0 || c.stored_bytes > kMaxChunkBytes)
        throw WireError("bad stored length");
      if (c.file_offset < end || c.file_offset > e.meta.size_bytes ||
          e.meta.size_bytes - c.file_offset < c.raw_bytes)
        throw WireError("chunks overlap or pass the end of the file in entry " + std::to_string(i));
      end = c.file_offset + c.raw_bytes;
    }
  }
}

}  // namespace

void write_chunk(WireWriter& w, const BlobRef& c) {
  w.u32(c.pack);
  w.u64(c.pack_offset);
  w.u32(c.stored_bytes);
  w.u32(c.raw_bytes);
  w.u64(c.file_offset);
  w.u64(c.hash.high);
  w.u64(c.hash.low);
  w.u8(static_cast<uint8_t>(c.codec));
}

BlobRef read_chunk(WireReader& r) {
  BlobRef c;
  c.pack = r.u32();
  c.pack_offset = r.u64();
  c.stored_bytes = r.u32();
  c.raw_bytes = r.u32();
  c.file_offset = r.u64();
  c.hash.high = r.u64();
  c.hash.low = r.u64();
  uint8_t codec = r.u8();
  if (codec > static_cast<uint8_t>(Codec::kZstd)) throw WireError("unknown codec");
  c.codec = static_cast<Codec>(codec);
  return c;
}

const char* kind_name(SnapKind k) {
  switch (k) {
    case SnapKind::kFull:
      return "full";
    case SnapKind::kIncremental:
      return "incremental";
    case SnapKind::kDifferential:
      return "differential";
  }
  return "?";
}

void encode_blob_header(const BlobHeader& h, std::span<std::byte, kBlobHeaderBytes> out) {
  std::byte* p = out.data();
  std::memset(p, 0, kBlobHeaderBytes);
  std::memcpy(p, kBlobMagic, 4);
  p[4] = static_cast<std::byte>(h.codec);
  put<uint32_t>(p + 8, h.raw_bytes);
  put<uint32_t>(p + 12, h.stored_bytes);
  put<uint64_t>(p + 16, h.hash.high);
  put<uint64_t>(p + 24, h.hash.low);
  put<uint64_t>(p + 32, sum64(p, 32));
}

io::Result<BlobHeader> decode_blob_header(std::span<const std::byte> in) {
  if (in.size() < kBlobHeaderBytes) return bad("blob header truncated");
  const std::byte* p = in.data();
  if (std::memcmp(p, kBlobMagic, 4) != 0) return bad("no blob header (bad magic)");
  if (get<uint64_t>(p + 32) != sum64(p, 32)) return bad("blob header checksum mismatch");
  BlobHeader h;
  auto codec = static_cast<uint8_t>(p[4]);
  if (codec > static_cast<uint8_t>(Codec::kZstd)) return bad("blob header: unknown codec");
  h.codec = static_cast<Codec>(codec);
  h.raw_bytes = get<uint32_t>(p + 8);
  h.stored_bytes = get<uint32_t>(p + 12);
  h.hash.high = get<uint64_t>(p + 16);
  h.hash.low = get<uint64_t>(p + 24);
  if (h.raw_bytes > kMaxChunkBytes || h.stored_bytes > kMaxChunkBytes)
    return bad("blob header: length out of range");
  return h;
}

bool is_pack_name(std::string_view name) { return is_lower_hex(name, 32); }

std::string encode_pack_header(const std::string& pack_name) {
  std::string out(kPackHeaderBytes, '\0');
  auto* p = reinterpret_cast<std::byte*>(out.data());
  std::memcpy(p, kPackMagic, 8);
  put<uint32_t>(p + 8, kFormatVersion);
  hex_to_bytes(pack_name, p + 16);
  return out;
}

io::Status check_pack_header(std::span<const std::byte> in, const std::string& pack_name) {
  if (in.size() < kPackHeaderBytes) return bad("pack header truncated");
  const std::byte* p = in.data();
  if (std::memcmp(p, kPackMagic, 8) != 0) return bad("not a barge pack (bad magic)");
  if (get<uint32_t>(p + 8) != kFormatVersion)
    return bad("pack format version " + std::to_string(get<uint32_t>(p + 8)) + " not supported");
  if (bytes_to_hex(p + 16, 16) != pack_name) return bad("pack header names another pack");
  return io::Status::success();
}

std::string new_snapshot_id(int64_t time_ns) {
  time_t secs = static_cast<time_t>(time_ns / 1000000000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%04d%02d%02dT%02d%02d%02d.%03dZ-%s", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>((time_ns / 1000000) % 1000), random_hex128().substr(0, 8).c_str());
  return buf;
}

bool is_snapshot_id(std::string_view id) {
  // 20261122T053300.123Z-1a2b3c4d
  if (id.size() != 29 || id[8] != 'T' || id[15] != '.' || id[19] != 'Z' || id[20] != '-')
    return false;
  for (size_t i : {0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 16, 17, 18})
    if (id[i] < '0' || id[i] > '9') return false;
  return is_lower_hex(id.substr(21), 8);
}

std::string encode_snapshot(const Snapshot& s) {
  WireWriter w;
  w.str(s.id);
  w.u8(static_cast<uint8_t>(s.kind));
  w.str(s.parent);
  w.str(s.base_full);
  w.i64(s.time_ns);
  w.str(s.host);
  w.str(s.source);
  w.str(s.tag);
  w.u32(s.level);
  w.u64(s.files);
  w.u64(s.bytes_raw);
  w.u64(s.bytes_stored_new);
  w.u64(s.bytes_stored);
  w.u64(s.unreadable);  // version 2
  w.u32(static_cast<uint32_t>(s.packs.size()));
  for (const std::string& p : s.packs) w.str(p);
  w.u64(s.entries.size());
  for (const SnapEntry& e : s.entries) {
    w.str(e.path);
    write_meta(w, e.meta);
    w.str(e.link_target);
    w.u32(e.link_to);
    w.u32(static_cast<uint32_t>(e.xattrs.size()));
    for (const auto& [name, value] : e.xattrs) {
      w.str(name);
      w.str(value);
    }
    w.u32(static_cast<uint32_t>(e.chunks.size()));
    for (const BlobRef& c : e.chunks) write_chunk(w, c);
  }
  const std::string& raw = w.bytes();
  std::string out(kSnapHeaderBytes + ZSTD_compressBound(raw.size()), '\0');
  size_t n = ZSTD_compress(out.data() + kSnapHeaderBytes, out.size() - kSnapHeaderBytes, raw.data(),
                           raw.size(), 3);
  if (ZSTD_isError(n)) throw std::runtime_error(std::string("zstd: ") + ZSTD_getErrorName(n));
  out.resize(kSnapHeaderBytes + n);
  auto* p = reinterpret_cast<std::byte*>(out.data());
  std::memcpy(p, kSnapMagic, 8);
  put<uint32_t>(p + 8, kSnapshotVersion);
  p[12] = static_cast<std::byte>(s.kind);  // readable without decompressing (backup's choice)
  put<uint64_t>(p + 16, raw.size());
  put<uint64_t>(p + 24, n);
  put<uint64_t>(p + 32, sum64(p + kSnapHeaderBytes, n));
  put<uint64_t>(p + 40, sum64(p, 40));
  return out;
}

io::Result<Snapshot> decode_snapshot(std::string_view bytes) {
  if (bytes.size() < kSnapHeaderBytes) return bad("snapshot truncated (no header)");
  auto in = as_bytes(bytes);
  const std::byte* p = in.data();
  if (std::memcmp(p, kSnapMagic, 8) != 0) return bad("not a barge snapshot (bad magic)");
  if (get<uint64_t>(p + 40) != sum64(p, 40)) return bad("snapshot header checksum mismatch");
  const uint32_t version = get<uint32_t>(p + 8);
  if (version != 1 && version != kSnapshotVersion)
    return bad("snapshot format version " + std::to_string(version) + " not supported");
  uint64_t raw_len = get<uint64_t>(p + 16);
  uint64_t stored_len = get<uint64_t>(p + 24);
  if (stored_len != bytes.size() - kSnapHeaderBytes) return bad("snapshot truncated");
  if (get<uint64_t>(p + 32) != sum64(p + kSnapHeaderBytes, stored_len))
    return bad("snapshot checksum mismatch (damaged manifest)");
  // A real manifest compresses a few times (hashes and inode numbers do not); a forged
  // length must not make us allocate without bound.
  if (raw_len > kMaxManifestBytes || raw_len > (uint64_t{64} << 20) + stored_len * 1024)
    return bad("snapshot: length out of range");
  unsigned long long content = ZSTD_getFrameContentSize(p + kSnapHeaderBytes, stored_len);
  if (content != raw_len) return bad("snapshot: payload length does not match its header");
  std::string raw(raw_len, '\0');
  size_t n = ZSTD_decompress(raw.data(), raw.size(), p + kSnapHeaderBytes, stored_len);
  if (ZSTD_isError(n) || n != raw_len) return bad("snapshot: payload does not decompress");
  try {
    WireReader r(raw);
    Snapshot s;
    s.id = r.str();
    s.kind = static_cast<SnapKind>(r.u8());
    s.parent = r.str();
    s.base_full = r.str();
    s.time_ns = r.i64();
    s.host = r.str();
    s.source = r.str();
    s.tag = r.str();
    s.level = r.u32();
    s.files = r.u64();
    s.bytes_raw = r.u64();
    s.bytes_stored_new = r.u64();
    s.bytes_stored = r.u64();
    if (version >= 2) s.unreadable = r.u64();
    uint32_t npacks = r.u32();
    for (uint32_t i = 0; i < npacks; ++i) s.packs.push_back(r.str());
    uint64_t nentries = r.u64();
    for (uint64_t i = 0; i < nentries; ++i) {
      SnapEntry e;
      e.path = r.str();
      e.meta = read_meta(r);
      e.link_target = r.str();
      e.link_to = r.u32();
      uint32_t nx = r.u32();
      for (uint32_t k = 0; k < nx; ++k) {
        std::string name = r.str();
        e.xattrs.emplace_back(std::move(name), r.str());
      }
      uint32_t nc = r.u32();
      for (uint32_t k = 0; k < nc; ++k) e.chunks.push_back(read_chunk(r));
      s.entries.push_back(std::move(e));
    }
    if (!r.done()) throw WireError("trailing bytes");
    if (static_cast<uint8_t>(p[12]) != static_cast<uint8_t>(s.kind) || p[13] != std::byte{0} ||
        p[14] != std::byte{0} || p[15] != std::byte{0})
      throw WireError("header and payload disagree on the kind");
    check_snapshot(s);
    return s;
  } catch (const WireError& ex) {
    return bad(std::string("snapshot: ") + ex.what());
  }
}

std::string encode_config(const Config& c) {
  std::string out(kConfigBytes, '\0');
  auto* p = reinterpret_cast<std::byte*>(out.data());
  std::memcpy(p, kConfigMagic, 8);
  put<uint32_t>(p + 8, kFormatVersion);
  put<uint32_t>(p + 12, c.chunk_bytes);
  hex_to_bytes(c.repo_id, p + 16);
  put<int64_t>(p + 32, c.created_ns);
  put<uint64_t>(p + 40, sum64(p, 40));
  return out;
}

io::Result<SnapKind> peek_snapshot_kind(std::string_view header) {
  if (header.size() < kSnapHeaderBytes) return bad("snapshot truncated (no header)");
  auto in = as_bytes(header);
  const std::byte* p = in.data();
  if (std::memcmp(p, kSnapMagic, 8) != 0) return bad("not a barge snapshot (bad magic)");
  if (get<uint64_t>(p + 40) != sum64(p, 40)) return bad("snapshot header checksum mismatch");
  auto kind = static_cast<uint8_t>(p[12]);
  if (kind > static_cast<uint8_t>(SnapKind::kDifferential)) return bad("snapshot: unknown kind");
  return static_cast<SnapKind>(kind);
}

io::Result<Config> decode_config(std::string_view bytes) {
  if (bytes.size() != kConfigBytes) return bad("config: wrong size (not a barge repository?)");
  auto in = as_bytes(bytes);
  const std::byte* p = in.data();
  if (std::memcmp(p, kConfigMagic, 8) != 0) return bad("config: not a barge repository");
  if (get<uint64_t>(p + 40) != sum64(p, 40)) return bad("config: checksum mismatch");
  if (get<uint32_t>(p + 8) != kFormatVersion)
    return bad("repository format version " + std::to_string(get<uint32_t>(p + 8)) +
               " not supported");
  Config c;
  c.chunk_bytes = get<uint32_t>(p + 12);
  c.repo_id = bytes_to_hex(p + 16, 16);
  c.created_ns = get<int64_t>(p + 32);
  if (c.chunk_bytes < kMinChunkBytes || c.chunk_bytes > kMaxChunkBytes)
    return bad("config: chunk size out of range");
  return c;
}

bool is_safe_relative_path(std::string_view path) {
  if (path.empty()) return true;
  if (path.find('\0') != std::string_view::npos) return false;
  size_t start = 0;
  for (;;) {
    size_t slash = path.find('/', start);
    std::string_view comp =
        path.substr(start, slash == std::string_view::npos ? slash : slash - start);
    if (comp.empty() || comp == "." || comp == "..") return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

std::string random_hex128() {
  std::random_device rd;
  std::byte b[16];
  for (int i = 0; i < 16; i += 4) {
    uint32_t v = rd();
    std::memcpy(b + i, &v, 4);
  }
  return bytes_to_hex(b, 16);
}

}  // namespace barge::pipeline::repo
