#include "pipeline/migrate/cutover.hpp"

#include <sys/wait.h>
#include <tbb/global_control.h>

#include <chrono>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>

#include "pipeline/core/stats.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/migrate/keep.hpp"
#include "pipeline/migrate/pass.hpp"
#include "pipeline/migrate/plan.hpp"

namespace barge::pipeline::migrate {

using nlohmann::json;

namespace {

// /bin/sh -c CMD; "" when it exits 0, else what happened.
std::string run_shell(const std::string& flag, const std::string& cmd) {
  int rc = std::system(cmd.c_str());
  if (rc == 0) return "";
  if (rc == -1) return flag + ": cannot run /bin/sh";
  if (WIFEXITED(rc)) return flag + " failed (exit " + std::to_string(WEXITSTATUS(rc)) + ")";
  return flag + " was killed (signal " + std::to_string(WTERMSIG(rc)) + ")";
}

// Everything a walk sees of the tree's entries, for "has it stopped changing".
std::string fingerprint(const std::string& src, unsigned threads) {
  Plan p = walk_roots({Root{src, src, ""}}, threads);
  std::string out;
  for (const Entry& e : p.entries) {
    const io::FileMeta& m = e.meta;
    out += e.rel + '\0' + std::to_string(m.size_bytes) + '.' + std::to_string(m.mtime.tv_sec) +
           '.' + std::to_string(m.mtime.tv_nsec) + '.' + std::to_string(m.ctime.tv_sec) + '.' +
           std::to_string(m.ctime.tv_nsec) + '.' + std::to_string(m.inode) + '\n';
  }
  return out;
}

std::optional<double> predicted_downtime(const State& s) {
  auto bytes = read_file(s.dir + "/plan.json");
  if (!bytes) return std::nullopt;
  json j = json::parse(bytes.value(), nullptr, false);
  if (j.is_discarded() || !j.is_object()) return std::nullopt;
  PlanResult plan = plan_from_json(j);
  return predict(plan.tree, plan.rates, s.passes, std::nullopt, now_unix()).cutover_seconds;
}

json result_json(const CutoverResult& r) {
  const VerifyFigures& v = r.verify;
  return json{{"exit_code", r.exit_code},
              {"fatal", r.fatal},
              {"pass", to_json(r.pass)},
              {"downtime_seconds", r.downtime_seconds},
              {"predicted_downtime_seconds",
               r.predicted_downtime_seconds ? json(*r.predicted_downtime_seconds) : json(nullptr)},
              {"freeze_seconds", r.freeze_seconds},
              {"verify",
               {{"ok", v.ok()},
                {"files", v.files},
                {"bytes", v.bytes},
                {"entries", v.entries},
                {"from_manifest", v.from_manifest},
                {"rehashed_source", v.rehashed_source},
                {"problem_count", v.problem_count},
                {"problems", v.problems},
                {"seconds", v.seconds}}}};
}

// Freeze, or check that SRC stands still. "" when the source may be cut over.
std::string freeze(const CutoverOptions& o, const State& s, unsigned threads) {
  if (!o.freeze_cmd.empty()) {
    std::string e = run_shell("--freeze-cmd", o.freeze_cmd);
    return e.empty() ? "" : e + "; nothing changed";
  }
  std::string before = fingerprint(s.src, threads);
  std::this_thread::sleep_for(std::chrono::duration<double>(o.quiesce_seconds));
  if (fingerprint(s.src, threads) != before)
    return "SRC " + s.src +
           " is still changing: stop its writers or give --freeze-cmd; nothing "
           "changed";
  return "";
}

}  // namespace

CutoverResult run_cutover(const CutoverOptions& o, transport::Comm& comm) {
  CutoverResult r;
  const bool lead = comm.rank() == 0;
  const unsigned threads = o.copy.threads ? o.copy.threads : default_threads();
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  auto loaded = load_state(o.state_dir);
  std::string error;
  if (!loaded) {
    error = loaded.error().message;
  } else if (loaded.value().passes.empty() || loaded.value().pass_running) {
    error = "--state " + o.state_dir + ": the passes have not finished (run barge migrate run)";
  } else if (loaded.value().phase == kPhaseDone) {
    error = "--state " + o.state_dir + ": the migration is cut over already";
  }
  const auto t0 = std::chrono::steady_clock::now();
  if (error.empty() && lead) {
    r.predicted_downtime_seconds = predicted_downtime(loaded.value());
    error = freeze(o, loaded.value(), threads);
  }
  r.freeze_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (!comm.agree(error.empty())) {
    r.exit_code = kExitFatal;
    r.fatal = "migrate cutover: " + (error.empty() ? "rank 0 refused" : error);
    return r;
  }
  State s = std::move(loaded).value();
  PassSpec spec{static_cast<unsigned>(s.passes.back().pass + 1),
                "cutover",
                false,
                true,
                false,
                s.dir + "/pass-" + std::to_string(s.passes.back().pass + 1) + ".manifest"};
  double keep_s = 0;
  if (lead)
    if (auto st = start_pass(s, spec, kPhaseCutover, o.keep, threads, &keep_s); !st)
      error = st.error().message;
  if (comm.agree(error.empty())) {
    PassRun p = run_pass(s, o.copy, spec, comm);
    r.pass = p.record;
    if (!p.fatal.empty()) error = "the final pass: " + p.fatal;
  }
  if (lead && error.empty()) {
    if (auto st = finish_pass(s, spec, o.keep, keep_s, r.pass); !st) error = st.error().message;
    if (error.empty()) r.verify = verify_tree(s, o.full_verify, threads);
  }
  r.downtime_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (lead && !o.unfreeze_cmd.empty()) {
    std::string e = run_shell("--unfreeze-cmd", o.unfreeze_cmd);
    r.unfroze = e.empty();
    if (!e.empty() && error.empty()) error = e;
  }
  if (lead) {
    if (!error.empty()) {
      r.fatal = "migrate cutover: " + error;
      r.exit_code = kExitFatal;
    } else if (!r.verify.ok() || r.pass.errors || r.pass.files_retried) {
      r.exit_code = kExitPartial;  // DST is not SRC: the phase stays at the cutover
    } else {
      s.phase = kPhaseDone;
      if (auto st = save_state(s); !st) r.exit_code = kExitFatal, r.fatal = st.error().message;
    }
    (void)write_file_atomic(s.dir + "/cutover.json",
                            result_json(r).dump(2, ' ', false, json::error_handler_t::replace));
  }
  std::string code = comm.broadcast(std::to_string(r.exit_code), 0);
  r.exit_code = std::atoi(code.c_str());
  return r;
}

}  // namespace barge::pipeline::migrate
