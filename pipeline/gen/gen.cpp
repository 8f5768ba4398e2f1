// barge gen, the plan: file sizes per profile, compressibility and modes, the directory
// layout and the mixed profile's extras (gen.hpp). Writing the tree: gen_write.cpp.
#include "pipeline/gen/gen.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>

#include "pipeline/gen/gen_internal.hpp"

namespace barge::pipeline {
namespace detail {

// Pick an octave [2^k, 2^(k+1)) with k uniform in [lo_log2, hi_log2), then a size uniformly
// inside it: roughly log-uniform, integer-only so every platform draws the same sizes.
uint64_t octave_uniform(Xoshiro256& rng, unsigned lo_log2, unsigned hi_log2) {
  const unsigned k = lo_log2 + static_cast<unsigned>(rng.below(hi_log2 - lo_log2));
  const uint64_t base = uint64_t{1} << k;
  return base + rng.below(base);
}

enum class SizeKind { kSmall, kMedium, kLargeMixed, kLargeFixed };

uint64_t draw_size(Xoshiro256& rng, SizeKind kind) {
  switch (kind) {
    case SizeKind::kSmall: {
      const uint64_t pct = rng.below(100);
      if (pct < 2) return 0;                            // 2%: empty files
      if (pct < 10) return octave_uniform(rng, 0, 11);  // 8%: [1 B, 2 KiB)
      return octave_uniform(rng, 11, 15);               // 90%: [2 KiB, 32 KiB)
    }
    case SizeKind::kMedium:
      return octave_uniform(rng, 20, 26);  // [1 MiB, 64 MiB)
    case SizeKind::kLargeMixed:
      return octave_uniform(rng, 28, 31);  // [256 MiB, 2 GiB)
    case SizeKind::kLargeFixed:
      return kLargeFileBytes;
  }
  return 0;
}

struct SizeClass {
  SizeKind kind;
  uint64_t budget_bytes;
  // A last remainder below this joins the previous file, so a class's files stay in range.
  uint64_t absorb_below_bytes;
};

std::vector<SizeClass> size_classes(const GenOptions& opts) {
  const uint64_t total = opts.total_bytes;
  switch (opts.profile) {
    case GenProfile::kSmall:
      return {{SizeKind::kSmall, total, 0}};
    case GenProfile::kLarge:
      return {{SizeKind::kLargeFixed, total, 0}};
    case GenProfile::kMixed: {
      const uint64_t small = total / 5;
      const uint64_t medium = total / 2;
      return {{SizeKind::kSmall, small, 0},
              {SizeKind::kMedium, medium, 1 * kMiB},
              {SizeKind::kLargeMixed, total - small - medium, 256 * kMiB}};
    }
  }
  return {};
}

// Draws until the budget is spent; the last file takes the remainder.
std::vector<uint64_t> natural_sizes(Xoshiro256& rng, const SizeClass& c) {
  std::vector<uint64_t> sizes;
  uint64_t left = c.budget_bytes;
  while (left > 0) {
    uint64_t s = draw_size(rng, c.kind);
    if (s >= left || left - s < c.absorb_below_bytes) s = left;
    sizes.push_back(s);
    left -= s;
  }
  return sizes;
}

// Draws `count` sizes and scales them so they sum exactly to the budget.
std::vector<uint64_t> scaled_sizes(Xoshiro256& rng, const SizeClass& c, uint64_t count) {
  std::vector<uint64_t> sizes(count);
  unsigned __int128 sum = 0;
  for (auto& s : sizes) {
    s = draw_size(rng, c.kind);
    sum += s;
  }
  uint64_t assigned = 0;
  for (auto& s : sizes) {
    s = sum == 0 ? c.budget_bytes / count
                 : static_cast<uint64_t>(static_cast<unsigned __int128>(s) * c.budget_bytes / sum);
    assigned += s;
  }
  // Rounding left fewer than `count` bytes over; one each to the first files.
  for (uint64_t i = 0; assigned < c.budget_bytes; ++i, ++assigned) ++sizes[i];
  return sizes;
}

// Splits `file_count` across classes in proportion to their natural counts (largest remainder),
// at least one per class while there are files to give.
std::vector<uint64_t> apportion(const std::vector<uint64_t>& natural, uint64_t file_count,
                                std::vector<SizeClass>& classes) {
  const size_t k = classes.size();
  std::vector<uint64_t> counts(k, 0);
  uint64_t natural_total = 0;
  for (uint64_t n : natural) natural_total += n;
  uint64_t left = file_count;
  for (size_t i = 0; i < k && left > 0; ++i) {
    if (classes[i].budget_bytes > 0) {
      counts[i] = 1;
      --left;
    }
  }
  if (left > 0 && natural_total > 0) {
    std::vector<std::pair<uint64_t, size_t>> remainders;  // (remainder, class)
    uint64_t given = 0;
    for (size_t i = 0; i < k; ++i) {
      const unsigned __int128 share = static_cast<unsigned __int128>(left) * natural[i];
      const auto whole = static_cast<uint64_t>(share / natural_total);
      counts[i] += whole;
      given += whole;
      remainders.emplace_back(static_cast<uint64_t>(share % natural_total), i);
    }
    std::stable_sort(remainders.begin(), remainders.end(),
                     [](const auto& a, const auto& b) { return a.first > b.first; });
    for (size_t j = 0; given < left; ++j, ++given) ++counts[remainders[j % k].second];
  }
  // Every class with budget got a file unless file_count < classes; then the biggest class
  // that did takes the orphaned budgets.
  size_t heir = k;
  for (size_t i = 0; i < k; ++i) {
    if (counts[i] > 0 && (heir == k || classes[i].budget_bytes > classes[heir].budget_bytes)) {
      heir = i;
    }
  }
  for (size_t i = 0; i < k && heir < k; ++i) {
    if (counts[i] == 0) classes[heir].budget_bytes += std::exchange(classes[i].budget_bytes, 0);
  }
  return counts;
}

// Mixed profile: spread per-file compressibility around R, then pull the byte-weighted mean
// back to R (the few large files would otherwise decide the whole tree's ratio).
void assign_mixed_compressibility(Xoshiro256& rng, double target, std::vector<GenFile>& files) {
  constexpr double kExtremeFraction = 0.2;
  const double jitter = std::min({0.1, target, 1.0 - target});
  std::vector<bool> extreme(files.size());
  for (size_t i = 0; i < files.size(); ++i) {
    if (rng.unit() < kExtremeFraction) {
      extreme[i] = true;
      files[i].compressibility = rng.unit() < target ? 1.0 : 0.0;
    } else {
      files[i].compressibility = target + (2 * rng.unit() - 1) * jitter;
    }
  }
  for (int pass = 0; pass < 4; ++pass) {
    double total = 0, weighted = 0, middle = 0;
    for (size_t i = 0; i < files.size(); ++i) {
      const auto bytes = static_cast<double>(files[i].size_bytes);
      total += bytes;
      weighted += bytes * files[i].compressibility;
      if (!extreme[i] && files[i].compressibility > 0 && files[i].compressibility < 1) {
        middle += bytes;
      }
    }
    if (middle == 0 || total == 0) return;
    const double shift = (target * total - weighted) / middle;
    if (shift > -1e-9 && shift < 1e-9) return;
    for (size_t i = 0; i < files.size(); ++i) {
      double& r = files[i].compressibility;
      if (!extreme[i] && r > 0 && r < 1) r = std::clamp(r + shift, 0.0, 1.0);
    }
  }
}

uint32_t mixed_mode(Xoshiro256& rng) {
  switch (rng.below(10)) {
    case 7:
      return 0600;
    case 8:
      return 0755;
    case 9:
      return 0640;
    default:
      return 0644;
  }
}

std::string format_top(uint64_t top) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "d%03" PRIu64, top);
  return buf;
}

std::string format_dir(uint64_t top, uint64_t mid) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "/d%02" PRIu64, mid);
  return format_top(top) + buf;
}

std::string leaf_dir(const GenPlan& plan, uint64_t file_index) {
  const uint64_t leaf = file_index / plan.files_per_leaf;
  return format_dir(leaf / plan.leaves_per_top, leaf % plan.leaves_per_top);
}

void plan_layout(const GenOptions& opts, GenPlan& plan) {
  const uint64_t n = plan.files.size();
  if (n == 0 || (opts.profile == GenProfile::kLarge && n <= kMaxFilesPerDir)) return;
  const uint64_t leaves = (n + kMaxFilesPerDir - 1) / kMaxFilesPerDir;
  plan.files_per_leaf = (n + leaves - 1) / leaves;  // even fill, not 1000 + a runt
  const uint64_t used_leaves = (n + plan.files_per_leaf - 1) / plan.files_per_leaf;
  const uint64_t tops = (used_leaves + kMaxLeavesPerTop - 1) / kMaxLeavesPerTop;
  plan.leaves_per_top = (used_leaves + tops - 1) / tops;
  for (uint64_t leaf = 0; leaf < used_leaves; ++leaf) {
    const uint64_t top = leaf / plan.leaves_per_top, mid = leaf % plan.leaves_per_top;
    if (mid == 0) plan.dirs.push_back(format_top(top));
    plan.dirs.push_back(format_dir(top, mid));
  }
}

void plan_mixed_extras(Xoshiro256& rng, GenPlan& plan) {
  plan.dirs.push_back("empty0");
  plan.dirs.push_back(plan.files_per_leaf > 0 ? plan.dirs.front() + "/empty1" : "empty1");
  const uint64_t n = plan.files.size();
  if (n == 0) return;
  const uint64_t links = std::clamp<uint64_t>(n / 1000, 2, 100);
  for (uint64_t i = 0; i < links; ++i) {
    const uint64_t target = rng.below(n), host = rng.below(n);
    const std::string dir = plan.files_per_leaf > 0 ? leaf_dir(plan, host) : std::string();
    char name[32];
    std::snprintf(name, sizeof name, "link%03" PRIu64, i);
    const std::filesystem::path link_dir = dir.empty() ? "." : dir;
    plan.symlinks.push_back(
        {dir.empty() ? name : dir + "/" + name,
         std::filesystem::path(plan.file_path(target)).lexically_relative(link_dir).string()});
  }
}

}  // namespace detail

std::optional<GenProfile> parse_gen_profile(std::string_view name) {
  if (name == "small") return GenProfile::kSmall;
  if (name == "large") return GenProfile::kLarge;
  if (name == "mixed") return GenProfile::kMixed;
  return std::nullopt;
}

std::string_view to_string(GenProfile profile) {
  switch (profile) {
    case GenProfile::kSmall:
      return "small";
    case GenProfile::kLarge:
      return "large";
    case GenProfile::kMixed:
      return "mixed";
  }
  return "?";
}

io::Status validate_gen_options(const GenOptions& opts) {
  if (opts.dir.empty()) return io::Error::plain("gen: no output directory given");
  if (opts.total_bytes == 0)
    return io::Error::plain("gen " + opts.dir.string() + ": size must be > 0");
  if (!(opts.compressibility >= 0.0 && opts.compressibility <= 1.0)) {
    return io::Error::plain("gen " + opts.dir.string() + ": compressibility must be in [0, 1]");
  }
  return io::Status::success();
}

std::string GenPlan::file_path(uint64_t file_index) const {
  char name[32];
  std::snprintf(name, sizeof name, "f%06" PRIu64, file_index);
  if (files_per_leaf == 0) return name;
  return detail::leaf_dir(*this, file_index) + "/" + name;
}

GenPlan plan_gen(const GenOptions& opts) {
  using namespace detail;
  Xoshiro256 rng(combine(opts.seed, kDomainPlan));
  std::vector<SizeClass> classes = size_classes(opts);
  std::vector<std::vector<uint64_t>> sizes;
  for (const auto& c : classes) sizes.push_back(natural_sizes(rng, c));
  if (opts.file_count != 0) {
    std::vector<uint64_t> natural;
    for (const auto& s : sizes) natural.push_back(s.size());
    const std::vector<uint64_t> counts = apportion(natural, opts.file_count, classes);
    for (size_t i = 0; i < classes.size(); ++i) {
      sizes[i] =
          counts[i] == 0 ? std::vector<uint64_t>{} : scaled_sizes(rng, classes[i], counts[i]);
    }
  }

  GenPlan plan;
  for (const auto& class_sizes : sizes) {
    for (uint64_t s : class_sizes) plan.files.push_back({s, opts.compressibility, 0644});
  }
  if (opts.profile == GenProfile::kMixed) {
    // Fisher-Yates, so small, medium and large files share directories as in real trees.
    for (size_t i = plan.files.size(); i > 1; --i) {
      std::swap(plan.files[i - 1], plan.files[rng.below(i)]);
    }
    assign_mixed_compressibility(rng, opts.compressibility, plan.files);
    for (auto& f : plan.files) f.mode = mixed_mode(rng);
  }
  plan_layout(opts, plan);
  if (opts.profile == GenProfile::kMixed) plan_mixed_extras(rng, plan);
  return plan;
}

}  // namespace barge::pipeline
