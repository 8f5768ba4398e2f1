// Deterministic synthetic dataset generator behind `barge gen`: builds a tree of files whose
// names, sizes, contents, modes and mtimes are a pure function of GenOptions (seed included),
// so two runs, or two machines, produce byte-identical trees to benchmark and verify against.
//
// Profiles (sizes are drawn "octave-uniform": pick a power-of-two octave [2^k, 2^(k+1))
// uniformly, then a size uniformly inside it; integer-only, so identical on every libm):
//   small  2% empty files, 8% in [1 B, 2 KiB), 90% in [2 KiB, 32 KiB); mean ~10.1 KiB, so
//          1 GiB is ~100k files. Files sit in d<top>/d<mid>/ leaves of <= 1000 files each.
//   large  2 GiB files, the last one takes the remainder (one file if total < 2 GiB). Files
//          sit directly in the root (two-level leaves only past 1000 files).
//   mixed  by bytes: 20% small files (as above), 50% medium in [1 MiB, 64 MiB), 30% large in
//          [256 MiB, 2 GiB); shuffled across the same two-level layout. Adds one relative
//          symlink per 1000 files (2..100, each to a regular file in the tree), two empty
//          directories, file modes 0644 (70%), 0600, 0755, 0640 (10% each), and per-file
//          compressibility around R: 20% of files are extremes (fully random with probability
//          1-R, fully text with probability R), the rest get R +- min(0.1, R, 1-R), then
//          shifted so the byte-weighted mean is R. Directories are 0755 in every profile.
// The last file of a class takes what is left of its byte budget (in medium and large, a draw
// that would leave less than the class minimum takes the rest), so sizes sum exactly to
// total_bytes. file_count != 0 keeps each class's byte budget, splits the count across
// classes in proportion to the natural plan (at least one per class), and scales the drawn
// sizes so they still sum exactly to total_bytes.
//
// Contents: each file is a sequence of 64 KiB blocks (the last may be short). A block is a
// pure function of (seed, file index, block index): its first R fraction is text (a phrase of
// dictionary words drawn per block, repeated, with an 8-byte random tag at every 4 KiB
// boundary so no 4 KiB block repeats), the rest is xoshiro256** output. zstd -3 compresses a
// file to about (1-R) of its size. With dedupable, half of the blocks are instead cut from a
// shared pool of total/8 blocks (made at the requested R), so about 3/8 of the bytes are
// duplicate 64 KiB blocks across and within files.
//
// Thread-safety: run_gen and plan_gen are reentrant; run_gen uses its own oneTBB arena.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "io/result.hpp"

namespace barge::pipeline {

enum class GenProfile { kSmall, kLarge, kMixed };

// "small" | "large" | "mixed"; nullopt otherwise.
std::optional<GenProfile> parse_gen_profile(std::string_view name);
std::string_view to_string(GenProfile profile);

struct GenOptions {
  std::filesystem::path dir;  // created if missing; must be empty if it exists
  GenProfile profile = GenProfile::kMixed;
  uint64_t total_bytes = 0;  // sum of file sizes to generate (> 0)
  uint64_t seed = 1;
  double compressibility = 0.0;  // 0..1: fraction of bytes zstd -3 can squeeze out
  uint64_t file_count = 0;       // 0: derived from profile and total_bytes
  bool dedupable = false;        // false: no 4 KiB block repeats across files
  unsigned threads = 0;          // 0: all cores
};

// Checks values only (no I/O): dir given, total_bytes > 0, compressibility in [0, 1].
io::Status validate_gen_options(const GenOptions& opts);

struct GenResult {
  uint64_t files = 0, dirs = 0, symlinks = 0, bytes = 0;  // dirs excludes the root
  double seconds = 0;
};

// Generates the tree. Writes go to the page cache (no fsync). The root's mtime is stamped
// too; its mode is left as the caller made it. On error the tree is left partial; the Error
// names the path and reason ("open /d/f000012: No space left on device").
io::Result<GenResult> run_gen(const GenOptions& opts);

// The tree run_gen writes, before any I/O. Exposed for tests and dry runs.
struct GenFile {
  uint64_t size_bytes = 0;
  double compressibility = 0;  // fraction of each 64 KiB block that is low-entropy text
  uint32_t mode = 0644;
};

struct GenSymlink {
  std::string rel_path;  // relative to the root
  std::string target;    // relative to the link's own directory
};

struct GenPlan {
  std::vector<GenFile> files;     // file i lives at file_path(i)
  std::vector<std::string> dirs;  // relative to the root, parents before children
  std::vector<GenSymlink> symlinks;
  uint64_t files_per_leaf = 0;  // 0: files sit in the root
  uint64_t leaves_per_top = 1;

  std::string file_path(uint64_t file_index) const;  // relative to the root
};

// Pure function of opts (dir is not used); opts must pass validate_gen_options.
GenPlan plan_gen(const GenOptions& opts);

}  // namespace barge::pipeline
