// `barge verify --manifest`: re-hash every file a checksum manifest lists under a directory
// and report, by path, what differs. The manifest format is in docs/FORMAT.md.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "io/result.hpp"
#include "pipeline/core/engine_options.hpp"

namespace barge::pipeline {

struct VerifyManifestOptions : EngineOptions {
  std::filesystem::path manifest;  // checksum manifest to check against
  std::filesystem::path dir;       // tree root the manifest paths are relative to
  bool report_extra = true;        // walk `dir` for regular files the manifest does not list
};

// Every path list holds raw manifest-relative paths (arbitrary bytes: print them with
// printable_path from pipeline/core/manifest.hpp), sorted bytewise.
struct VerifyManifestResult {
  uint64_t files_checked = 0;  // listed files hashed to the end, matching or not
  uint64_t bytes_checked = 0;  // bytes hashed
  // Content differs, or a symlink or other non-regular, non-directory file stands where a
  // regular file is listed (symlinks are never followed).
  std::vector<std::string> mismatched;
  std::vector<std::string> missing;     // listed, but absent (or a parent is not a directory)
  std::vector<std::string> unreadable;  // open/read failed, a directory stands in for a file,
                                        // or a directory could not be walked for extras
  std::vector<std::string> extra;       // regular files under dir that the manifest omits
  std::vector<std::string> errors;      // errors[i] says why unreadable[i] failed
  double seconds = 0;
  bool ok() const {
    return mismatched.empty() && missing.empty() && unreadable.empty() && extra.empty();
  }
};

// Empty Status when the options can run; otherwise says which option is wrong.
io::Status validate(const VerifyManifestOptions& opts);

// verify --manifest = read → hash → compare on the graph (pipeline/engine/graph.hpp): listed files
// are batched into units, read through the ring into pool buffers (a file larger than the
// room left in its unit is streamed through the unit's buffer in order), hashed, compared. Per-file
// failures land in the result; the Error return is for a manifest that cannot be read or parsed, or
// a `dir` that cannot be opened. The manifest file itself is never reported as extra when it lies
// inside `dir`.
io::Result<VerifyManifestResult> verify_manifest(const VerifyManifestOptions& opts);

namespace detail {
// Opens the manifest path `rel` under `root` one component at a time with O_NOFOLLOW: the
// fallback verify uses when openat2(RESOLVE_NO_SYMLINKS) is unavailable. Returns an fd the
// caller owns, or -1 with errno set (ELOOP for a symlink anywhere on the path).
int open_by_components(int root, std::string_view rel);
}  // namespace detail

}  // namespace barge::pipeline
