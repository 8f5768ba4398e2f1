#include "pipeline/remote/protocol.hpp"

#include <sys/random.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <nlohmann/json.hpp>
#include <set>
#include <stdexcept>

#include "pipeline/core/wire.hpp"
#include "transport/net/endpoint.hpp"

namespace barge::pipeline::remote {

namespace {

using nlohmann::json;

bool is_session_id(const std::string& s) {
  return s.size() == 32 &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(c) != 0; });
}

// A path below a root made of real names: no empty, "." or ".." component, no NUL.
bool safe_rel(std::string_view rel) {
  if (rel.find('\0') != std::string_view::npos) return false;
  size_t start = 0;
  for (;;) {
    size_t slash = rel.find('/', start);
    std::string_view part =
        rel.substr(start, slash == std::string_view::npos ? rel.npos : slash - start);
    if (part.empty() || part == "." || part == "..") return false;
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

std::string key_of(uint32_t root, std::string_view rel) {
  std::string k = std::to_string(root);
  k.push_back('\0');
  k.append(rel);
  return k;
}

// JSON from a peer: parse errors and wrong types become one line.
template <class T, class F>
io::Result<T> parse_json(std::string_view payload, const char* what, F&& fill) {
  try {
    json j = json::parse(payload);
    if (!j.is_object()) return io::Error::plain(std::string(what) + ": not a JSON object");
    T out;
    fill(j, out);
    return out;
  } catch (const json::exception& ex) {
    return io::Error::plain(std::string(what) + ": malformed (" + ex.what() + ")");
  }
}

}  // namespace

const std::vector<std::string>& capabilities() {
  static const std::vector<std::string> caps{"xxh3-128", "zstd", "sync", "xattrs"};
  return caps;
}

std::string encode_hello(const Hello& h) {
  json j{{"protocol", h.protocol},
         {"session", h.session},
         {"stream", h.stream},
         {"streams", h.streams}};
  if (h.stream == 0) {
    j["capabilities"] = h.capabilities;
    j["chunk_bytes"] = h.chunk_bytes;
    j["files_per_unit"] = h.files_per_unit;
    json sources = json::array();
    for (const RemoteSource& s : h.sources)
      sources.push_back({{"name", s.name}, {"dir", s.is_dir}});
    j["sources"] = sources;
    j["entries"] = h.entries;
    j["files"] = h.files;
    j["bytes"] = h.bytes;
    if (h.resume) j["resume"] = true;
    if (h.xattrs) j["xattrs"] = true;
    if (h.sync.enabled)
      j["sync"] = {{"delete", h.sync.delete_extra},
                   {"checksum", h.sync.checksum},
                   {"exclude", h.sync.excludes},
                   {"include", h.sync.includes}};
  }
  return j.dump();
}

io::Result<Hello> decode_hello(std::string_view payload) {
  auto h = parse_json<Hello>(payload, "hello", [](const json& j, Hello& h) {
    h.protocol = j.at("protocol").get<uint32_t>();
    h.session = j.at("session").get<std::string>();
    h.stream = j.at("stream").get<uint32_t>();
    h.streams = j.at("streams").get<uint32_t>();
    if (h.stream != 0) return;
    h.capabilities = j.at("capabilities").get<std::vector<std::string>>();
    h.chunk_bytes = j.at("chunk_bytes").get<uint64_t>();
    h.files_per_unit = j.at("files_per_unit").get<uint32_t>();
    for (const json& s : j.at("sources"))
      h.sources.push_back({s.at("name").get<std::string>(), s.at("dir").get<bool>()});
    h.entries = j.at("entries").get<uint64_t>();
    h.files = j.at("files").get<uint64_t>();
    h.bytes = j.at("bytes").get<uint64_t>();
    h.resume = j.value("resume", false);
    h.xattrs = j.value("xattrs", false);
    if (auto it = j.find("sync"); it != j.end()) {
      h.sync.enabled = true;
      h.sync.delete_extra = it->at("delete").get<bool>();
      h.sync.checksum = it->at("checksum").get<bool>();
      h.sync.excludes = it->at("exclude").get<std::vector<std::string>>();
      h.sync.includes = it->at("include").get<std::vector<std::string>>();
    }
  });
  if (!h) return h;
  if (h->protocol != kProtocolVersion)
    return io::Error::plain("hello: protocol version " + std::to_string(h->protocol) +
                            " (this receiver speaks " + std::to_string(kProtocolVersion) + ")");
  if (!is_session_id(h->session)) return io::Error::plain("hello: bad session id");
  if (h->streams == 0 || h->streams > kMaxStreams || h->stream > h->streams)
    return io::Error::plain("hello: bad stream count or number");
  if (h->stream != 0) return h;
  if (h->chunk_bytes < 4096 || h->chunk_bytes > kMaxChunkBytes || h->chunk_bytes % 4096 != 0)
    return io::Error::plain("hello: chunk size " + std::to_string(h->chunk_bytes) +
                            " out of range (4 KiB multiples up to 64 MiB)");
  if (h->files_per_unit == 0 || h->files_per_unit > kMaxItemsPerUnit)
    return io::Error::plain("hello: files per unit out of range");
  if (h->sources.empty()) return io::Error::plain("hello: no sources");
  if (h->files > h->entries) return io::Error::plain("hello: more files than entries");
  const auto& sync = h->sync;
  if (sync.excludes.size() + sync.includes.size() > kMaxSyncPatterns)
    return io::Error::plain("hello: too many --exclude/--include patterns");
  for (const auto* list : {&sync.excludes, &sync.includes})
    for (const std::string& p : *list)
      if (p.empty() || p.size() > kMaxPatternBytes || p.find('\0') != std::string::npos)
        return io::Error::plain("hello: a bad --exclude/--include pattern");
  return h;
}

std::string encode_welcome(const Welcome& w) {
  json j{{"protocol", w.protocol}, {"session", w.session}, {"capabilities", w.capabilities}};
  if (!w.endpoints.empty()) j["endpoints"] = w.endpoints;
  return j.dump();
}

io::Result<Welcome> decode_welcome(std::string_view payload) {
  auto w = parse_json<Welcome>(payload, "welcome", [](const json& j, Welcome& w) {
    w.protocol = j.at("protocol").get<uint32_t>();
    w.session = j.at("session").get<std::string>();
    w.capabilities = j.at("capabilities").get<std::vector<std::string>>();
    if (j.contains("endpoints")) w.endpoints = j.at("endpoints").get<std::vector<std::string>>();
  });
  if (w && w->protocol != kProtocolVersion)
    return io::Error::plain("welcome: protocol version " + std::to_string(w->protocol));
  if (w && w->endpoints.size() > kMaxStreams)
    return io::Error::plain("welcome: more than " + std::to_string(kMaxStreams) + " endpoints");
  if (w) {
    for (const std::string& e : w->endpoints) {
      if (auto ep = transport::parse_endpoint(e, "welcome endpoint"); !ep) return ep.error();
    }
  }
  return w;
}

std::string encode_entries(const Plan& plan, size_t& next, size_t max_bytes,
                           const std::vector<Hash128>* sums, bool xattrs) {
  WireWriter w;
  while (next < plan.entries.size() && w.bytes().size() < max_bytes) {
    const Entry& e = plan.entries[next];
    write_entry(w, e);
    if (sums && e.meta.type == io::FileType::kRegular) {
      w.u64((*sums)[next].low);
      w.u64((*sums)[next].high);
    }
    if (xattrs) {
      static const io::Xattrs none;
      const io::Xattrs& xs = e.xattrs ? *e.xattrs : none;
      w.u32(static_cast<uint32_t>(xs.size()));
      for (const auto& [name, value] : xs) {
        w.str(name);
        w.str(value);
      }
    }
    ++next;
  }
  return w.take();
}

io::Status PlanBuilder::add_batch(std::string_view payload) {
  WireReader r(payload);
  try {
    while (!r.done()) {
      Entry e = read_entry(r);
      if (hello_.sync.checksum && e.meta.type == io::FileType::kRegular) {
        Hash128 sum;
        sum.low = r.u64();
        sum.high = r.u64();
        if (sums_) {
          sums_->resize(plan_.entries.size() + 1);
          sums_->back() = sum;
        }
      }
      if (hello_.xattrs) {
        auto xs = read_xattrs(r);
        if (!xs) return io::Error::plain("plan: entry \"" + e.rel + "\": " + xs.error().message);
        if (!xs->empty()) e.xattrs = std::make_shared<const io::Xattrs>(std::move(*xs));
      }
      if (auto st = add(std::move(e)); !st) return st;
    }
  } catch (const WireError& ex) {
    return io::Error::plain(std::string("plan: ") + ex.what());
  }
  return io::Status::success();
}

// An entry's extended attributes: within Linux's bounds, names sorted and distinct, no
// NUL in a name.
io::Result<io::Xattrs> PlanBuilder::read_xattrs(WireReader& r) {
  const uint32_t n = r.u32();
  if (n > kMaxXattrsPerEntry) return io::Error::plain("too many extended attributes");
  io::Xattrs xs;
  size_t bytes = 0;
  for (uint32_t k = 0; k < n; ++k) {
    std::string name = r.str();
    std::string value = r.str();
    bytes += name.size() + value.size();
    if (name.empty() || name.size() > kMaxXattrName || name.find('\0') != std::string::npos ||
        name.find('.') == std::string::npos)
      return io::Error::plain("a bad extended attribute name");
    if (value.size() > kMaxXattrValue || bytes > kMaxXattrBytes)
      return io::Error::plain("extended attributes too large");
    if (!xs.empty() && !(xs.back().first < name))
      return io::Error::plain("extended attributes out of order or repeated");
    xs.emplace_back(std::move(name), std::move(value));
  }
  return xs;
}

io::Status PlanBuilder::add(Entry e) {
  auto bad = [&](const std::string& why) {
    return io::Error::plain("plan: entry \"" + e.rel + "\": " + why);
  };
  if (plan_.entries.size() >= hello_.entries) return bad("more entries than announced");
  if (e.root >= sources_.size()) return bad("no such source");
  root_seen_.resize(sources_.size());
  const bool is_dir = e.meta.type == io::FileType::kDirectory;
  if (e.rel.empty()) {
    if (root_seen_[e.root]) return bad("its source's entry came twice");
    if (is_dir != sources_[e.root].is_dir) return bad("its type is not its source's");
    root_seen_[e.root] = 1;
    e.parent = kNoParent;
  } else {
    if (!safe_rel(e.rel)) return bad("not a path of names below its source");
    size_t slash = e.rel.rfind('/');
    std::string parent = slash == std::string::npos ? "" : e.rel.substr(0, slash);
    auto it = dirs_.find(key_of(e.root, parent));
    if (it == dirs_.end()) return bad("its directory is not in the plan before it");
    e.parent = it->second;
  }
  if (e.meta.type == io::FileType::kSymlink && e.link_target.empty())
    return bad("a symlink without a target");
  if (e.meta.type != io::FileType::kSymlink && !e.link_target.empty())
    return bad("a link target on a non-symlink");
  if (!names_.insert(key_of(e.root, e.rel)).second) return bad("it came twice");
  const uint32_t index = static_cast<uint32_t>(plan_.entries.size());
  if (is_dir) dirs_.emplace(key_of(e.root, e.rel), index);
  if (e.meta.type == io::FileType::kRegular) {
    if (plan_.files.size() >= hello_.files) return bad("more files than announced");
    if (e.meta.size_bytes > hello_.bytes - plan_.total_file_bytes)
      return bad("more bytes than announced");
    plan_.files.push_back(index);
    plan_.total_file_bytes += e.meta.size_bytes;
  } else {
    e.meta.size_bytes = 0;  // only regular files have bytes to receive
  }
  plan_.entries.push_back(std::move(e));
  return io::Status::success();
}

io::Status PlanBuilder::finish() const {
  if (plan_.entries.size() != hello_.entries)
    return io::Error::plain("plan: " + std::to_string(plan_.entries.size()) + " of " +
                            std::to_string(hello_.entries) + " announced entries arrived");
  for (size_t r = 0; r < sources_.size(); ++r)
    if (r >= root_seen_.size() || !root_seen_[r])
      return io::Error::plain("plan: source " + std::to_string(r) + " has no entry");
  return io::Status::success();
}

std::string encode_unit_table(const std::vector<WireItem>& items) {
  WireWriter w;
  w.u32(static_cast<uint32_t>(items.size()));
  for (const WireItem& it : items) {
    w.u32(it.file);
    w.u32(it.chunk);
    w.u64(it.offset);
    w.u64(it.length);
    w.u64(it.hash.low);
    w.u64(it.hash.high);
    w.u8(static_cast<uint8_t>((it.compressed ? 1 : 0) | (it.sparse ? 2 : 0) | (it.failed ? 4 : 0)));
    w.u32(it.wire_bytes);
    if (!it.sparse) continue;
    w.u32(static_cast<uint32_t>(it.data.size()));
    for (const auto& [b, e] : it.data) {
      w.u64(b);
      w.u64(e);
    }
  }
  return w.take();
}

io::Result<std::vector<WireItem>> decode_unit_table(std::string_view table) {
  WireReader r(table);
  std::vector<WireItem> items;
  try {
    uint32_t n = r.u32();
    if (n == 0 || n > kMaxItemsPerUnit) return io::Error::plain("unit: item count out of range");
    items.resize(n);
    for (WireItem& it : items) {
      it.file = r.u32();
      it.chunk = r.u32();
      it.offset = r.u64();
      it.length = r.u64();
      it.hash.low = r.u64();
      it.hash.high = r.u64();
      uint8_t flags = r.u8();
      if (flags > 7) return io::Error::plain("unit: unknown item flags");
      it.compressed = flags & 1;
      it.sparse = flags & 2;
      it.failed = flags & 4;
      it.wire_bytes = r.u32();
      if (!it.sparse) continue;
      uint32_t ranges = r.u32();
      if (ranges > kMaxDataRanges) return io::Error::plain("unit: too many data ranges");
      it.data.resize(ranges);
      for (auto& [b, e] : it.data) {
        b = r.u64();
        e = r.u64();
      }
    }
    if (!r.done()) return io::Error::plain("unit: bytes after the item table");
  } catch (const WireError& ex) {
    return io::Error::plain(std::string("unit: ") + ex.what());
  }
  return items;
}

std::string encode_ready(const Ready& r) {
  WireWriter w;
  w.u32(static_cast<uint32_t>(r.unwanted.size()));
  for (uint32_t f : r.unwanted) w.u32(f);
  w.u32(static_cast<uint32_t>(r.done.size()));
  for (const auto& [f, c] : r.done) {
    w.u32(f);
    w.u32(c);
  }
  return w.take();
}

io::Result<Ready> decode_ready(std::string_view payload, const Plan& plan, uint64_t chunk_bytes,
                               uint64_t buffer_bytes) {
  Ready r;
  auto file_ok = [&](uint32_t f) {
    return f < plan.entries.size() && plan.entries[f].meta.type == io::FileType::kRegular;
  };
  try {
    WireReader in(payload);
    std::unordered_set<uint32_t> seen;
    for (uint32_t n = in.u32(); n > 0; --n) {
      uint32_t f = in.u32();
      if (!file_ok(f) || !seen.insert(f).second)
        return io::Error::plain("ready: entry " + std::to_string(f) + " is not a file to send");
      r.unwanted.push_back(f);
    }
    std::set<std::pair<uint32_t, uint32_t>> chunks;
    for (uint32_t n = in.u32(); n > 0; --n) {
      uint32_t f = in.u32(), c = in.u32();
      if (!file_ok(f) || seen.count(f) ||
          c >= chunk_count_for(plan.entries[f].meta.size_bytes, chunk_bytes, buffer_bytes) ||
          !chunks.emplace(f, c).second)
        return io::Error::plain("ready: chunk " + std::to_string(c) + " of entry " +
                                std::to_string(f) + " is not one to send");
      r.done.emplace_back(f, c);
    }
    if (!in.done()) return io::Error::plain("ready: bytes after the lists");
  } catch (const WireError& ex) {
    return io::Error::plain(std::string("ready: ") + ex.what());
  }
  return r;
}

io::Result<RunResult> decode_report(std::string_view payload) {
  return parse_json<RunResult>(payload, "report", [](const json& j, RunResult& r) {
    r.exit_code = j.at("exit_code").get<int>();
    r.bytes = j.at("bytes").get<uint64_t>();
    r.files = j.at("files").get<uint64_t>();
    r.dirs = j.at("directories").get<uint64_t>();
    r.symlinks = j.at("symlinks").get<uint64_t>();
    r.others = j.at("other_entries").get<uint64_t>();
    r.bytes_transferred = j.at("bytes_transferred").get<uint64_t>();
    r.seconds = j.at("seconds").get<double>();
    r.peak_rss_bytes = j.at("peak_rss_bytes").get<uint64_t>();
    r.errors = j.at("errors").get<std::vector<std::string>>();
    r.stopped_entries = j.at("stopped_entries").get<std::vector<std::string>>();
    r.files_not_copied = j.at("files_not_copied").get<uint64_t>();
    r.skipped_files = j.value("skipped_files", uint64_t{0});
    r.bytes_skipped = j.value("bytes_skipped", uint64_t{0});
    r.resumable = j.value("resumable", false);
    r.fatal = j.value("fatal", std::string());
    if (auto it = j.find("sync"); it != j.end())
      r.sync = RunResult::SyncCounts{it->at("deleted").get<uint64_t>(),
                                     it->at("unchanged_files").get<uint64_t>()};
    r.started = true;
  });
}

std::string random_bytes(size_t n) {
  std::string out(n, '\0');
  size_t got = 0;
  while (got < n) {
    ssize_t k = ::getrandom(out.data() + got, n - got, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) throw std::runtime_error("getrandom failed");
    got += static_cast<size_t>(k);
  }
  return out;
}

std::string to_hex(std::string_view bytes) {
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out.push_back(hex[c >> 4]);
    out.push_back(hex[c & 15]);
  }
  return out;
}

std::optional<std::string> from_hex(std::string_view hex) {
  if (hex.size() % 2) return std::nullopt;
  auto v = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = v(hex[i]), lo = v(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

}  // namespace barge::pipeline::remote
