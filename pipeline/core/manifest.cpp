#include "pipeline/core/manifest.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "io/unique_fd.hpp"

namespace barge::pipeline {
namespace {

constexpr size_t kHexDigits = 32;
constexpr size_t kReadBufferBytes = size_t{1} << 20;
constexpr size_t kReadBufferAlign = 4096;  // page-aligned so an O_DIRECT reader could share it
constexpr size_t kDisplayMaxBytes = 256;

// Paths are arbitrary bytes; an error message must stay one short printable line.
std::string display_path(std::string_view path) {
  return "'" + printable_path(path, kDisplayMaxBytes) + "'";
}

// Length of the valid UTF-8 sequence starting at s[0] (2-4), or 0 if there is none. Rejects
// overlong forms, surrogates and code points past U+10FFFF so the output is valid UTF-8.
size_t utf8_sequence(std::string_view s) {
  auto byte = [&](size_t i) { return static_cast<unsigned char>(s[i]); };
  const unsigned char b0 = byte(0);
  size_t len;
  unsigned char lo = 0x80, hi = 0xBF;  // bounds for the second byte
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    len = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    len = 3;
    if (b0 == 0xE0) lo = 0xA0;
    if (b0 == 0xED) hi = 0x9F;
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    len = 4;
    if (b0 == 0xF0) lo = 0x90;
    if (b0 == 0xF4) hi = 0x8F;
  } else {
    return 0;
  }
  if (s.size() < len || byte(1) < lo || byte(1) > hi) return 0;
  for (size_t i = 2; i < len; ++i) {
    if (byte(i) < 0x80 || byte(i) > 0xBF) return 0;
  }
  return len;
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

// The escaped form is needed exactly for bytes that would otherwise break the line
// structure (LF), be stripped by CRLF-tolerant readers (CR), or be ambiguous with an
// escape (backslash). Same set as GNU coreutils 9.
bool needs_escape(std::string_view path) {
  return path.find_first_of("\\\n\r") != std::string_view::npos;
}

void append_escaped(std::string& out, std::string_view path) {
  for (char c : path) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        out.push_back(c);
    }
  }
}

io::Error line_error(size_t line_no, std::string_view what) {
  return io::Error::plain("line " + std::to_string(line_no) + ": " + std::string(what));
}

// Why a path is unacceptable, or empty when it is fine.
std::string path_problem(std::string_view path) {
  if (path.empty()) return "empty path";
  if (path.find('\0') != std::string_view::npos) return "NUL byte in path";
  if (path.front() == '/') return "absolute path " + display_path(path) + " (must be relative)";
  size_t start = 0;
  while (true) {
    size_t slash = path.find('/', start);
    std::string_view comp = path.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (comp.empty()) {
      return "empty component ('//' or trailing '/') in path " + display_path(path);
    }
    if (comp == ".") return "'.' component in path " + display_path(path);
    if (comp == "..") return "'..' component in path " + display_path(path);
    if (comp.size() > kManifestMaxComponentBytes) {
      return "component longer than " + std::to_string(kManifestMaxComponentBytes) +
             " bytes in path " + display_path(path);
    }
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return {};
}

// Decodes the name of an escaped line: `\\`, `\n` and `\r` only, as GNU coreutils does;
// anything else is corruption, not a name.
io::Result<std::string> unescape(std::string_view name, size_t line_no) {
  std::string out;
  out.reserve(name.size());
  for (size_t i = 0; i < name.size(); ++i) {
    if (name[i] != '\\') {
      out.push_back(name[i]);
      continue;
    }
    if (i + 1 == name.size()) return line_error(line_no, "bad escape: '\\' at end of line");
    switch (name[++i]) {
      case '\\':
        out.push_back('\\');
        break;
      case 'n':
        out.push_back('\n');
        break;
      case 'r':
        out.push_back('\r');
        break;
      default:
        return line_error(line_no, "bad escape " + display_path(name.substr(i - 1, 2)) +
                                       " (only \\\\, \\n and \\r are defined)");
    }
  }
  return out;
}

io::Status parse_header(std::string_view line, size_t line_no) {
  if (line_no != 1) {
    return line_error(line_no, "'#' line after line 1 (only the header may start with '#')");
  }
  if (line == kManifestHeader) return io::Status::success();
  if (line.ends_with('\r') && line.substr(0, line.size() - 1) == kManifestHeader) {
    return line_error(line_no, "carriage return after the header (CRLF line endings?)");
  }
  if (line.starts_with("# barge-manifest ")) {
    return line_error(line_no, "unsupported manifest header " + display_path(line) +
                                   " (this barge reads " + std::string(kManifestHeader) + ")");
  }
  return line_error(line_no, "unrecognized header " + display_path(line));
}

io::Result<ManifestEntry> parse_entry(std::string_view line, size_t line_no) {
  const bool escaped = line.front() == '\\';
  std::string_view rest = escaped ? line.substr(1) : line;

  size_t digits = 0;
  while (digits < rest.size() && is_hex(rest[digits])) ++digits;
  if (digits != kHexDigits) {
    if ((digits == 8 || digits == 16) && digits < rest.size() && rest[digits] == ' ') {
      return line_error(line_no, std::to_string(digits) +
                                     "-digit hash: an XXH32/XXH64 listing? manifests use "
                                     "XXH3-128 (32 hex digits, xxhsum -H2)");
    }
    if (rest.starts_with("XXH") && rest.find(" (") != std::string_view::npos) {
      return line_error(line_no, "BSD-style (--tag) lines are not supported");
    }
    return line_error(line_no, "expected 32 hex digits at the start of the line, found " +
                                   std::to_string(digits));
  }
  std::optional<Hash128> hash = from_hex(rest.substr(0, kHexDigits));
  if (!hash) return line_error(line_no, "bad hex digits in hash");

  // Two spaces as xxhsum and GNU text mode write them, or " *" as GNU binary mode does.
  if (rest.size() < kHexDigits + 2 || rest[kHexDigits] != ' ' ||
      (rest[kHexDigits + 1] != ' ' && rest[kHexDigits + 1] != '*')) {
    return line_error(line_no, "missing separator (two spaces) after the hash");
  }
  std::string_view name = rest.substr(kHexDigits + 2);
  if (name.empty()) return line_error(line_no, "empty path");

  ManifestEntry entry;
  entry.hash = *hash;
  if (escaped) {
    auto decoded = unescape(name, line_no);
    if (!decoded) return decoded.error();
    entry.path = std::move(decoded).value();
  } else {
    // A raw CR almost always means CRLF line endings, which would silently turn every name
    // into a missing file; names that really contain CR are written escaped.
    if (name.find('\r') != std::string_view::npos) {
      return line_error(line_no,
                        "carriage return in path (CRLF line endings? names holding CR must use "
                        "the escaped form)");
    }
    entry.path = std::string(name);
  }
  std::string problem = path_problem(entry.path);
  if (!problem.empty()) {
    if (entry.path.starts_with("./")) problem += " (strip the leading './')";
    return line_error(line_no, problem);
  }
  return entry;
}

// Reports the earliest line that repeats a path seen before, matching what a sequential
// check with a hash set would say, without holding a second copy of every path.
io::Status check_duplicates(const std::vector<ManifestEntry>& entries,
                            const std::vector<size_t>& lines) {
  std::vector<size_t> order(entries.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    int c = entries[a].path.compare(entries[b].path);
    return c != 0 ? c < 0 : a < b;
  });
  // Within a run of equal paths the indices ascend, so the run's second element is its
  // first repeat; the answer is the run whose first repeat comes earliest.
  size_t best = 0;  // index into `order` of the reported repeat; 0 = none
  for (size_t i = 1; i < order.size(); ++i) {
    const bool run_start = entries[order[i]].path == entries[order[i - 1]].path &&
                           (i < 2 || entries[order[i - 2]].path != entries[order[i]].path);
    if (run_start && (best == 0 || order[i] < order[best])) best = i;
  }
  if (best == 0) return io::Status::success();
  return line_error(lines[order[best]],
                    "duplicate path " + display_path(entries[order[best]].path) +
                        " (first listed on line " + std::to_string(lines[order[best - 1]]) + ")");
}

std::span<std::byte> thread_read_buffer() {
  struct Free {
    void operator()(std::byte* p) const { std::free(p); }
  };
  // One buffer per thread, kept for the thread's life: verify hashes millions of small files
  // and a malloc of 1 MiB per file would dominate them.
  thread_local std::unique_ptr<std::byte, Free> buffer(
      static_cast<std::byte*>(std::aligned_alloc(kReadBufferAlign, kReadBufferBytes)));
  if (!buffer) throw std::bad_alloc();
  return {buffer.get(), kReadBufferBytes};
}

io::Status write_all(int fd, std::string_view bytes, const std::string& what) {
  while (!bytes.empty()) {
    ssize_t n = ::write(fd, bytes.data(), bytes.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return io::Error::from_errno(errno, "write " + what);
    }
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return io::Status::success();
}

// Removes the temporary file unless the rename succeeded.
class TempFileGuard {
 public:
  explicit TempFileGuard(std::string path) : path_(std::move(path)) {}
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;
  ~TempFileGuard() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

}  // namespace

std::string printable_path(std::string_view path, size_t max_bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(std::min(path.size(), max_bytes));
  for (size_t i = 0; i < path.size();) {
    if (out.size() >= max_bytes) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(path[i]);
    if (c >= 0x80) {
      if (size_t len = utf8_sequence(path.substr(i)); len != 0) {
        out.append(path.substr(i, len));
        i += len;
        continue;
      }
    }
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c >= 0x20 && c < 0x7f) {
          out.push_back(static_cast<char>(c));
        } else {
          out += "\\x";
          out.push_back(kDigits[c >> 4]);
          out.push_back(kDigits[c & 0xF]);
        }
    }
    ++i;
  }
  return out;
}

io::Status validate_manifest_path(std::string_view path) {
  std::string problem = path_problem(path);
  if (problem.empty()) return io::Status::success();
  return io::Error{EINVAL, problem};
}

io::Result<std::string> format_manifest(std::vector<ManifestEntry> entries) {
  std::sort(entries.begin(), entries.end(),
            [](const ManifestEntry& a, const ManifestEntry& b) { return a.path < b.path; });
  size_t total = kManifestHeader.size() + 1;
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string& path = entries[i].path;
    if (io::Status st = validate_manifest_path(path); !st) {
      return io::Error{EINVAL, "manifest entry: " + st.error().message};
    }
    if (i > 0 && path == entries[i - 1].path) {
      return io::Error{EINVAL, "manifest entry: duplicate path " + display_path(path)};
    }
    total += path.size() + kHexDigits + 4;
  }

  std::string out;
  out.reserve(total);
  out += kManifestHeader;
  out.push_back('\n');
  for (const ManifestEntry& e : entries) {
    const size_t line_start = out.size();
    const bool escaped = needs_escape(e.path);
    if (escaped) out.push_back('\\');
    out += to_hex(e.hash);
    out += "  ";
    if (escaped) {
      append_escaped(out, e.path);
    } else {
      out += e.path;
    }
    if (out.size() - line_start > kManifestMaxLineBytes) {
      return io::Error{ENAMETOOLONG, "manifest entry: path " + display_path(e.path) +
                                         " makes a line longer than " +
                                         std::to_string(kManifestMaxLineBytes) + " bytes"};
    }
    out.push_back('\n');
  }
  return out;
}

io::Result<std::vector<ManifestEntry>> parse_manifest(std::string_view bytes) {
  if (bytes.empty()) return io::Error::plain("empty manifest (no header and no entries)");
  std::vector<ManifestEntry> entries;
  std::vector<size_t> lines;
  size_t pos = 0;
  size_t line_no = 0;
  while (pos < bytes.size()) {
    ++line_no;
    const size_t nl = bytes.find('\n', pos);
    const size_t end = nl == std::string_view::npos ? bytes.size() : nl;
    std::string_view line = bytes.substr(pos, end - pos);
    if (line.size() > kManifestMaxLineBytes) {
      return line_error(line_no,
                        "line longer than " + std::to_string(kManifestMaxLineBytes) + " bytes");
    }
    if (nl == std::string_view::npos) {
      return line_error(line_no, "no newline at end of file (truncated manifest?)");
    }
    pos = nl + 1;
    if (size_t nul = line.find('\0'); nul != std::string_view::npos) {
      return line_error(line_no, "NUL byte at column " + std::to_string(nul + 1));
    }
    if (line.empty()) return line_error(line_no, "empty line");
    if (line.front() == '#') {
      if (io::Status st = parse_header(line, line_no); !st) return st.error();
      continue;
    }
    auto entry = parse_entry(line, line_no);
    if (!entry) return entry.error();
    entries.push_back(std::move(entry).value());
    lines.push_back(line_no);
  }
  if (io::Status st = check_duplicates(entries, lines); !st) return st.error();
  return entries;
}

io::Result<std::vector<ManifestEntry>> read_manifest(const std::filesystem::path& file) {
  io::UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return io::Error::from_errno(errno, "open manifest " + file.string());
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) {
    return io::Error::from_errno(errno, "stat manifest " + file.string());
  }
  if (!S_ISREG(st.st_mode)) {
    return io::Error{EINVAL, "manifest " + file.string() + ": not a regular file"};
  }
  std::string bytes;
  bytes.reserve(static_cast<size_t>(st.st_size));
  char chunk[64 * 1024];
  while (true) {
    ssize_t n = ::read(fd.get(), chunk, sizeof(chunk));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io::Error::from_errno(errno, "read manifest " + file.string());
    }
    if (n == 0) break;
    bytes.append(chunk, static_cast<size_t>(n));
  }
  auto entries = parse_manifest(bytes);
  if (!entries)
    return io::Error{EINVAL, "manifest " + file.string() + ": " + entries.error().message};
  return entries;
}

namespace detail {

io::Result<FileDigest> hash_fd(int fd, std::string_view path) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return io::Error::from_errno(errno, "stat " + printable_path(path));
  if (S_ISDIR(st.st_mode)) {
    return io::Error{EISDIR,
                     "hash " + printable_path(path) + ": is a directory, not a regular file"};
  }
  if (!S_ISREG(st.st_mode)) {
    return io::Error{EINVAL, "hash " + printable_path(path) + ": not a regular file"};
  }
  // Advice only; a failure changes speed, not the result.
  (void)::posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  std::span<std::byte> buffer = thread_read_buffer();
  StreamHasher hasher;
  uint64_t offset = 0;
  while (true) {
    ssize_t n = ::pread(fd, buffer.data(), buffer.size(), static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return io::Error::from_errno(
          errno, "read " + printable_path(path) + " at offset " + std::to_string(offset));
    }
    if (n == 0) break;
    hasher.update(buffer.first(static_cast<size_t>(n)));
    offset += static_cast<uint64_t>(n);
  }
  return FileDigest{hasher.digest(), offset};
}

}  // namespace detail

io::Result<Hash128> hash_file(int dirfd, const std::string& path) {
  if (path.find('\0') != std::string::npos) {
    return io::Error{EINVAL, "open " + display_path(path) + ": NUL byte in path"};
  }
  // O_NONBLOCK so a FIFO in place of a file fails the type check instead of hanging.
  io::UniqueFd fd(
      ::openat(dirfd, path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY));
  if (!fd.valid()) return io::Error::from_errno(errno, "open " + printable_path(path));
  auto digest = detail::hash_fd(fd.get(), path);
  if (!digest) return digest.error();
  return digest->hash;
}

void ManifestWriter::add(std::string rel_path, Hash128 h) {
  std::lock_guard lock(mutex_);
  entries_.push_back(ManifestEntry{std::move(rel_path), h});
}

void ManifestWriter::add_link(std::string rel_path, std::string leader_path) {
  std::lock_guard lock(mutex_);
  links_.emplace_back(std::move(rel_path), std::move(leader_path));
}

std::vector<std::pair<std::string, std::string>> ManifestWriter::links() const {
  std::lock_guard lock(mutex_);
  return links_;
}

std::vector<ManifestEntry> ManifestWriter::entries() const {
  std::lock_guard lock(mutex_);
  return entries_;
}

size_t ManifestWriter::size() const {
  std::lock_guard lock(mutex_);
  return entries_.size();
}

io::Status ManifestWriter::write_to(const std::filesystem::path& file) const {
  std::vector<ManifestEntry> snapshot;
  {
    std::lock_guard lock(mutex_);
    snapshot = entries_;
    if (!links_.empty()) {
      std::unordered_map<std::string_view, Hash128> by_path;
      for (const ManifestEntry& m : entries_) by_path.emplace(m.path, m.hash);
      for (const auto& [path, leader] : links_) {
        if (auto it = by_path.find(leader); it != by_path.end())
          snapshot.push_back(ManifestEntry{path, it->second});
      }
    }
  }
  auto text = format_manifest(std::move(snapshot));
  if (!text) return io::Error{text.error().errnum, file.string() + ": " + text.error().message};

  std::filesystem::path dir = file.parent_path();
  if (dir.empty()) dir = ".";
  // Unique per process and call, so concurrent writers never share a temporary file.
  static std::atomic<uint64_t> counter{0};
  io::UniqueFd fd;
  std::string tmp;
  for (int attempt = 0; attempt < 16 && !fd.valid(); ++attempt) {
    const auto ticks = std::chrono::steady_clock::now().time_since_epoch().count();
    tmp = (dir / ("." + file.filename().string() + ".tmp-" + std::to_string(::getpid()) + "-" +
                  std::to_string(counter.fetch_add(1)) + "-" + std::to_string(ticks & 0xFFFFFF)))
              .string();
    // 0666 so the umask decides the final mode, as for any file the user creates.
    fd.reset(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
    if (!fd.valid() && errno != EEXIST) {
      return io::Error::from_errno(errno, "create temporary manifest " + tmp);
    }
  }
  if (!fd.valid()) return io::Error::from_errno(EEXIST, "create temporary manifest " + tmp);
  TempFileGuard guard(tmp);

  if (io::Status st = write_all(fd.get(), *text, tmp); !st) return st;
  // Data must be durable before the rename publishes it, or a crash could leave an empty
  // file under the final name.
  if (::fsync(fd.get()) != 0) return io::Error::from_errno(errno, "fsync " + tmp);
  if (io::Status st = fd.close(); !st)
    return io::Error{st.error().errnum, tmp + ": " + st.error().message};
  if (::rename(tmp.c_str(), file.c_str()) != 0) {
    return io::Error::from_errno(errno, "rename " + tmp + " to " + file.string());
  }
  guard.release();

  // Makes the rename itself durable. Some file systems cannot fsync a directory (EINVAL);
  // the manifest is complete either way, so only real I/O errors count.
  io::UniqueFd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd.valid()) return io::Error::from_errno(errno, "open directory " + dir.string());
  if (::fsync(dfd.get()) != 0 && errno != EINVAL && errno != EROFS) {
    return io::Error::from_errno(errno, "fsync directory " + dir.string());
  }
  return io::Status::success();
}

}  // namespace barge::pipeline
