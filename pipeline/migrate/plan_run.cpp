// migrate plan, the command: state, walk, measurements, probe, the dry run after a pass, the
// predictions, and the plan written where status and the report read it.
#include <sys/stat.h>
#include <tbb/global_control.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/migrate/pass.hpp"
#include "pipeline/migrate/plan.hpp"

namespace barge::pipeline::migrate {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

io::Status write_text(const std::string& path, const std::string& text, const char* flag) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  out.flush();
  if (!out) return io::Error::plain(std::string(flag) + " " + path + ": cannot write");
  return io::Status::success();
}

PlanResult fail(PlanResult r, std::string why) {
  r.exit_code = 2;
  r.fatal = std::move(why);
  return r;
}

// The previous plan's probe, for a plan run with --no-probe after a pass.
RateFigures previous_rates(const std::string& dir) {
  auto bytes = read_file(dir + "/plan.json");
  if (!bytes) return {};
  auto j = nlohmann::json::parse(bytes.value(), nullptr, false);
  if (j.is_discarded()) return {};
  return plan_from_json(j).rates;
}

}  // namespace

PlanResult run_plan(const MigratePlanOptions& opts) {
  PlanResult r;
  const std::string& src = opts.copy.sources.at(0);
  struct stat st;
  if (::stat(src.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return fail(r, "migrate plan: SRC " + src + ": not a directory");
  if (auto v = validate(opts.copy); !v) return fail(r, v.error().message);
  std::error_code ec;
  fs::create_directories(opts.copy.destination, ec);
  if (ec) return fail(r, "migrate plan: DST " + opts.copy.destination + ": " + ec.message());
  auto state = create_state(opts.state_dir, src, opts.copy.destination);
  if (!state) return fail(r, "migrate plan: " + state.error().message);
  State& s = state.value();
  if (is_inside(s.dst, s.src) || is_inside(s.src, s.dst))
    return fail(r, "migrate plan: DST " + s.dst + " and SRC " + s.src + " overlap");
  r.src = s.src;
  r.dst = s.dst;
  r.passes = s.passes;
  const unsigned threads = opts.copy.threads ? opts.copy.threads : default_threads();
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  const auto t0 = Clock::now();
  Plan plan = walk_roots({Root{s.src, s.dst, ""}}, threads);
  r.tree = measure_tree(plan);
  r.tree.walk_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  CopyOptions copy = opts.copy;
  copy.sources = {s.src};
  copy.destination = s.dst;
  if (opts.probe)
    r.rates = probe_rates(copy, plan, r.tree, opts.probe_seconds);
  else
    r.rates = previous_rates(s.dir);
  if (!s.passes.empty()) {  // what changed since the last pass began: a dry run finds it
    auto solo = transport::make_solo_comm();
    copy.progress = ProgressMode::kNone;
    PassSpec spec{static_cast<unsigned>(s.passes.size() + 1), "dry-run", true, false, false, ""};
    PassRun d = run_pass(s, copy, spec, *solo);
    if (!d.fatal.empty()) return fail(r, "migrate plan: the dry run: " + d.fatal);
    r.delta = d.record;
  }
  r.prediction = predict(r.tree, r.rates, s.passes, r.delta, now_unix());
  const std::string j =
      to_json(r).dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  if (auto w = write_file_atomic(s.dir + "/plan.json", j); !w)
    return fail(r, "migrate plan: " + w.error().message);
  if (!opts.json_path.empty())
    if (auto w = write_text(opts.json_path, j, "--json"); !w)
      return fail(r, "migrate plan: " + w.error().message);
  if (!opts.html_path.empty())
    if (auto w = write_text(opts.html_path, html_plan(r), "--html"); !w)
      return fail(r, "migrate plan: " + w.error().message);
  if (r.tree.walk_errors) r.exit_code = 1;
  return r;
}

}  // namespace barge::pipeline::migrate
