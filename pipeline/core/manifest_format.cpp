// The checksum manifest's text format (manifest.hpp, docs/FORMAT.md "Checksum manifest"):
// printable paths, the path rules, format_manifest and parse_manifest. Files, hashing and
// ManifestWriter: manifest.cpp.
#include "pipeline/core/manifest.hpp"

#include <algorithm>
#include <cerrno>
#include <string_view>
#include <utility>

#include "pipeline/core/manifest_internal.hpp"

namespace barge::pipeline {
namespace detail {

namespace {
constexpr size_t kDisplayMaxBytes = 256;
}  // namespace

std::string display_path(std::string_view path) {
  return "'" + printable_path(path, kDisplayMaxBytes) + "'";
}

}  // namespace detail

namespace {

using detail::display_path;

constexpr size_t kHexDigits = 32;

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
      case '\n':
      case '\r':
        append_escaped(out, path.substr(i, 1));  // as in an escaped manifest line
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

}  // namespace barge::pipeline
