// migrate plan's outputs: the JSON (top-level fields `files`, `bytes`,
// `predicted_full_copy_seconds` and, after a pass, `predicted_cutover_seconds`: a contract),
// the human table, and the HTML page with the size histogram as inline SVG.
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "pipeline/migrate/html.hpp"
#include "pipeline/migrate/plan.hpp"

namespace barge::pipeline::migrate {

using nlohmann::json;

namespace {

json tree_json(const TreeFigures& t) {
  json hist = json::array();
  for (const auto& b : t.size_histogram)
    hist.push_back({{"upper_bytes", b.upper_bytes}, {"files", b.files}, {"bytes", b.bytes}});
  json dirs = json::array();
  for (const auto& d : t.largest_dirs) dirs.push_back({{"path", d.path}, {"entries", d.entries}});
  return json{{"files", t.files},
              {"dirs", t.dirs},
              {"symlinks", t.symlinks},
              {"specials", t.specials},
              {"bytes", t.bytes},
              {"allocated_bytes", t.allocated_bytes},
              {"hardlinked_files", t.hardlinked_files},
              {"hardlink_groups", t.hardlink_groups},
              {"sparse_files", t.sparse_files},
              {"largest_file_bytes", t.largest_file_bytes},
              {"max_entries_per_dir", t.max_entries_per_dir},
              {"mean_entries_per_dir", t.mean_entries_per_dir},
              {"small_files", t.small_files},
              {"small_bytes", t.small_bytes},
              {"large_files", t.large_files},
              {"large_bytes", t.large_bytes},
              {"size_histogram", hist},
              {"largest_dirs", dirs},
              {"walk_seconds", t.walk_seconds},
              {"walk_errors", t.walk_errors},
              {"error_samples", t.error_samples}};
}

json rates_json(const RateFigures& r) {
  return json{{"probed", r.probed},
              {"note", r.note},
              {"sample_files", r.sample_files},
              {"sample_bytes", r.sample_bytes},
              {"sample_seconds", r.sample_seconds},
              {"seconds_per_file", r.seconds_per_file()},
              {"region_bytes", r.region_bytes},
              {"region_seconds", r.region_seconds},
              {"large_file_bytes_per_second", r.large_rate()},
              {"writeback_bytes", r.writeback_bytes},
              {"writeback_seconds", r.writeback_seconds},
              {"writeback_bytes_per_second", r.writeback_rate()},
              {"read_bytes", r.read_bytes},
              {"read_seconds", r.read_seconds},
              {"read_bytes_per_second", r.read_rate()},
              {"read_files", r.read_files},
              {"read_files_bytes", r.read_files_bytes},
              {"read_files_seconds", r.read_files_seconds},
              {"seconds", r.seconds}};
}

template <class T>
json opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

}  // namespace

json to_json(const PlanResult& r) {
  const Prediction& p = r.prediction;
  json j{{"src", r.src},
         {"dst", r.dst},
         {"files", r.tree.files},
         {"bytes", r.tree.bytes},
         {"predicted_full_copy_seconds", p.full_copy_seconds},
         {"tree", tree_json(r.tree)},
         {"rates", rates_json(r.rates)},
         {"prediction",
          {{"full_copy_seconds", p.full_copy_seconds},
           {"scan_seconds", opt(p.scan_seconds)},
           {"catch_up_seconds", opt(p.catch_up_seconds)},
           {"cutover_seconds", opt(p.cutover_seconds)},
           {"verify_seconds", opt(p.verify_seconds)},
           {"change_bytes_per_second", opt(p.change_bytes_per_second)},
           {"change_files_per_second", opt(p.change_files_per_second)},
           {"basis", p.basis}}},
         {"passes", r.passes.size()},
         {"exit_code", r.exit_code}};
  if (p.cutover_seconds) j["predicted_cutover_seconds"] = *p.cutover_seconds;
  if (r.delta) j["delta"] = to_json(*r.delta);
  return j;
}

PlanResult plan_from_json(const json& j) {
  PlanResult r;
  r.src = j.value("src", "");
  r.dst = j.value("dst", "");
  const json& t = j.value("tree", json::object());
  r.tree.files = t.value("files", uint64_t{0});
  r.tree.dirs = t.value("dirs", uint64_t{0});
  r.tree.bytes = t.value("bytes", uint64_t{0});
  r.tree.small_files = t.value("small_files", uint64_t{0});
  r.tree.small_bytes = t.value("small_bytes", uint64_t{0});
  r.tree.large_files = t.value("large_files", uint64_t{0});
  r.tree.large_bytes = t.value("large_bytes", uint64_t{0});
  r.tree.walk_seconds = t.value("walk_seconds", 0.0);
  for (const auto& b : t.value("size_histogram", json::array()))
    r.tree.size_histogram.push_back({b.value("upper_bytes", uint64_t{0}),
                                     b.value("files", uint64_t{0}), b.value("bytes", uint64_t{0})});
  const json& rt = j.value("rates", json::object());
  r.rates.probed = rt.value("probed", false);
  r.rates.note = rt.value("note", "");
  r.rates.sample_files = rt.value("sample_files", uint64_t{0});
  r.rates.sample_bytes = rt.value("sample_bytes", uint64_t{0});
  r.rates.sample_seconds = rt.value("sample_seconds", 0.0);
  r.rates.region_bytes = rt.value("region_bytes", uint64_t{0});
  r.rates.region_seconds = rt.value("region_seconds", 0.0);
  r.rates.writeback_bytes = rt.value("writeback_bytes", uint64_t{0});
  r.rates.writeback_seconds = rt.value("writeback_seconds", 0.0);
  r.rates.read_bytes = rt.value("read_bytes", uint64_t{0});
  r.rates.read_seconds = rt.value("read_seconds", 0.0);
  r.rates.read_files = rt.value("read_files", uint64_t{0});
  r.rates.read_files_bytes = rt.value("read_files_bytes", uint64_t{0});
  r.rates.read_files_seconds = rt.value("read_files_seconds", 0.0);
  r.prediction.full_copy_seconds = j.value("predicted_full_copy_seconds", 0.0);
  return r;
}

std::string human_plan(const PlanResult& r) {
  const TreeFigures& t = r.tree;
  const Prediction& p = r.prediction;
  std::string out = "migrate plan: " + r.src + " -> " + r.dst + "\n";
  out += "  files        " + std::to_string(t.files) + " (" + human_bytes(t.bytes) + "; " +
         std::to_string(t.large_files) + " of 64 MiB or more hold " + human_bytes(t.large_bytes) +
         ")\n";
  out += "  directories  " + std::to_string(t.dirs) + " (up to " +
         std::to_string(t.max_entries_per_dir) + " entries in one; " +
         fixed(t.mean_entries_per_dir, 1) + " on average)\n";
  out += "  also         " + std::to_string(t.symlinks) + " symlinks, " +
         std::to_string(t.specials) + " special files, " + std::to_string(t.hardlinked_files) +
         " hard-linked files (" + std::to_string(t.hardlink_groups) + " inodes), " +
         std::to_string(t.sparse_files) + " sparse files\n";
  out += "  walk         " + fixed(t.walk_seconds, 2) + " s" +
         (t.walk_errors ? ", " + std::to_string(t.walk_errors) + " errors" : std::string()) + "\n";
  const RateFigures& rt = r.rates;
  if (rt.probed) {
    out += "  probe        " + fixed(rt.seconds, 2) + " s: " + std::to_string(rt.sample_files) +
           " sampled files at " + fixed(rt.seconds_per_file() * 1e3, 3) + " ms each";
    if (rt.region_bytes)
      out += ", large files at " + human_bytes(static_cast<uint64_t>(rt.large_rate())) + "/s";
    if (rt.writeback_bytes)
      out += ", with write-back " + human_bytes(static_cast<uint64_t>(rt.writeback_rate())) + "/s";
    if (rt.read_bytes)
      out += ", read+hash " + human_bytes(static_cast<uint64_t>(rt.read_rate())) + "/s";
    out += " (" + rt.note + ")\n";
  } else {
    out += "  probe        none" + (rt.note.empty() ? "" : ": " + rt.note) + "\n";
  }
  out += "  full copy    " + duration_text(p.full_copy_seconds) + " predicted\n";
  if (r.delta)
    out += "  changed      " + std::to_string(r.delta->files_changed) + " files (" +
           human_bytes(r.delta->bytes_changed) + ") since pass " + std::to_string(r.passes.size()) +
           " began\n";
  if (p.change_bytes_per_second)
    out += "  change rate  " + human_bytes(static_cast<uint64_t>(*p.change_bytes_per_second)) +
           "/s, " + fixed(*p.change_files_per_second, 2) + " files/s\n";
  if (p.catch_up_seconds)
    out += "  catch-up     " + duration_text(*p.catch_up_seconds) + " per pass predicted\n";
  if (p.cutover_seconds)
    out += "  cutover      " + duration_text(*p.cutover_seconds) +
           " predicted downtime (final pass and verification, if frozen now)\n";
  return out;
}

std::string html_plan(const PlanResult& r) {
  HtmlPage page("barge migrate plan: " + r.src);
  page.heading("Migration plan");
  page.table({{"source", r.src},
              {"destination", r.dst},
              {"files", std::to_string(r.tree.files)},
              {"bytes", human_bytes(r.tree.bytes)},
              {"directories", std::to_string(r.tree.dirs)},
              {"predicted full copy", duration_text(r.prediction.full_copy_seconds)},
              {"predicted cutover", r.prediction.cutover_seconds
                                        ? duration_text(*r.prediction.cutover_seconds)
                                        : "after the first pass"}});
  std::vector<Bar> files, bytes;
  for (const auto& b : r.tree.size_histogram) {
    std::string label = "<" + human_bytes(b.upper_bytes);
    files.push_back({label, static_cast<double>(b.files)});
    bytes.push_back({label, static_cast<double>(b.bytes)});
  }
  page.heading("Files by size");
  page.bar_chart("size-files", "files per size class", files);
  page.heading("Bytes by size");
  page.bar_chart("size-bytes", "bytes per size class", bytes);
  std::vector<std::pair<std::string, std::string>> dirs;
  for (const auto& d : r.tree.largest_dirs) dirs.push_back({d.path, std::to_string(d.entries)});
  page.heading("Largest directories (entries)");
  page.table(dirs);
  return page.finish();
}

}  // namespace barge::pipeline::migrate
