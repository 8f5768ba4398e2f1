#include "tools/migrate_cli.hpp"

#include <cstdio>
#include <fstream>

#include "pipeline/migrate/html.hpp"
#include "pipeline/migrate/keep.hpp"
#include "pipeline/migrate/status.hpp"
#include "tools/cli_common.hpp"
#include "tools/size_parse.hpp"

namespace barge::tools {

namespace mg = pipeline::migrate;

namespace {

void add_plan(CLI::App* m, MigrateCli& cli) {
  auto* c = cli.plan_cmd = m->add_subcommand(
      "plan", "measure SRC, probe the rates and predict the copy and the cutover");
  c->add_option("paths", cli.plan_paths, "SRC DST")->required()->expected(2, 2);
  c->add_option("--state", cli.plan.state_dir, "the migration's state directory")->required();
  c->add_option("--json", cli.plan.json_path, "write the plan as JSON to FILE");
  c->add_option("--html", cli.plan.html_path, "write the plan as an HTML page to FILE");
  c->add_option("--probe-seconds", cli.plan.probe_seconds,
                "how long the rate probe may take (default 4)")
      ->check(CLI::Range(0.5, 600.0));
  c->add_flag("--no-probe", cli.no_probe, "no rate probe (keep the previous plan's rates)");
  add_engine_flags(c, cli.plan.copy, "work-unit size of the probe's copies (default 4M)");
}

void add_run(CLI::App* m, MigrateCli& cli) {
  auto* c = cli.run_cmd = m->add_subcommand(
      "run", "the full copy, then catch-up passes until the delta is small or stops shrinking");
  c->add_option("--state", cli.run.state_dir, "the migration's state directory")->required();
  c->add_option("--until-delta", cli.until_delta,
                "stop when a catch-up pass moves at most this much: BYTES (10G), FILES "
                "(500files) or SECONDS (30s)");
  c->add_option("--max-passes", cli.run.max_passes, "passes at most, the full one included (10)")
      ->check(CLI::Range(1, 1000));
  c->add_option("--metrics", cli.run.metrics_path,
                "keep Prometheus text-format metrics in FILE (node_exporter textfile collector)");
  c->add_option("--metrics-interval", cli.run.metrics_interval_s,
                "seconds between metrics updates (default 5)")
      ->check(CLI::Range(0.1, 3600.0));
  c->add_option("--progress", cli.progress, "auto | tty | plain | none")
      ->check(CLI::IsMember({"auto", "tty", "plain", "none"}));
  c->add_flag("--no-keep", cli.run_no_keep,
              "keep nothing a pass replaces or deletes (saves space; no rollback past it)");
  add_engine_flags(c, cli.run.copy, "work-unit size; larger files are split (default 4M)");
}

void add_cutover(CLI::App* m, MigrateCli& cli) {
  auto* c = cli.cutover_cmd = m->add_subcommand(
      "cutover", "freeze SRC, make the final pass with deletions, verify DST, report the downtime");
  c->add_option("--state", cli.cutover.state_dir, "the migration's state directory")->required();
  c->add_option("--freeze-cmd", cli.cutover.freeze_cmd,
                "shell command that stops SRC's writers (fails: nothing changes)");
  c->add_option("--unfreeze-cmd", cli.cutover.unfreeze_cmd,
                "shell command run at the end, whatever the outcome, once the freeze succeeded");
  c->add_option("--quiesce-seconds", cli.cutover.quiesce_seconds,
                "without --freeze-cmd: SRC must not change for this long (default 2)")
      ->check(CLI::Range(0.0, 3600.0));
  c->add_flag("--full-verify", cli.cutover.full_verify,
              "re-read every SRC file for the verification (default: the passes' checksums)");
  c->add_flag("--no-keep", cli.cutover_no_keep, "keep nothing the final pass replaces or deletes");
  c->add_option("--progress", cli.progress, "auto | tty | plain | none")
      ->check(CLI::IsMember({"auto", "tty", "plain", "none"}));
  add_engine_flags(c, cli.cutover.copy, "work-unit size; larger files are split (default 4M)");
}

void add_rollback(CLI::App* m, MigrateCli& cli) {
  auto* c = cli.rollback_cmd = m->add_subcommand(
      "rollback", "put DST back as it was after a pass (default: before the last one)");
  c->add_option("--state", cli.rollback_state, "the migration's state directory")->required();
  c->add_option("--to-pass", cli.rollback_to, "the pass whose DST to go back to")
      ->check(CLI::PositiveNumber);
}

void add_status(CLI::App* m, MigrateCli& cli) {
  auto* c = cli.status_cmd = m->add_subcommand("status", "where the migration stands");
  c->add_option("--state", cli.status_state, "the migration's state directory")->required();
  c->add_option("--json", cli.status_json, "write the status as JSON to FILE (- : stdout)");
  c->add_option("--metrics", cli.status_metrics, "write Prometheus text-format metrics to FILE");
}

// "10G", "500files", "30s".
std::optional<mg::Delta> parse_delta(const std::string& t) {
  auto ends = [&](const std::string& suffix) {
    return t.size() > suffix.size() &&
           t.compare(t.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  auto number = [](const std::string& s) -> std::optional<double> {
    char* end = nullptr;
    double v = std::strtod(s.c_str(), &end);
    if (s.empty() || end != s.c_str() + s.size() || !(v >= 0)) return std::nullopt;
    return v;
  };
  if (ends("files")) {
    auto v = number(t.substr(0, t.size() - 5));
    if (v) return mg::Delta{mg::Delta::kFiles, *v};
    return std::nullopt;
  }
  if (ends("s") && !ends("B")) {
    if (auto v = number(t.substr(0, t.size() - 1))) return mg::Delta{mg::Delta::kSeconds, *v};
  }
  if (t == "0") return mg::Delta{mg::Delta::kBytes, 0};
  if (auto b = parse_size(t)) return mg::Delta{mg::Delta::kBytes, static_cast<double>(*b)};
  return std::nullopt;
}

int usage(const std::string& line) {
  std::fprintf(stderr, "barge: %s\n", line.c_str());
  return pipeline::kExitFatal;
}

int run_plan_command(MigrateCli& cli, bool quiet) {
  cli.plan.copy.sources = {cli.plan_paths[0]};
  cli.plan.copy.destination = cli.plan_paths[1];
  cli.plan.probe = !cli.no_probe;
  cli.plan.copy.progress = pipeline::ProgressMode::kNone;
  mg::PlanResult r = mg::run_plan(cli.plan);
  if (!r.fatal.empty()) return usage(r.fatal);
  for (const auto& e : r.tree.error_samples) std::fprintf(stderr, "barge: %s\n", e.c_str());
  if (!quiet) std::fputs(mg::human_plan(r).c_str(), stdout);
  return r.exit_code;
}

int run_run_command(MigrateCli& cli, transport::Comm& comm, bool quiet) {
  if (!cli.until_delta.empty()) {
    cli.run.until = parse_delta(cli.until_delta);
    if (!cli.run.until)
      return usage("migrate run: --until-delta " + cli.until_delta +
                   ": not a size (10G), a file count (500files) or seconds (30s)");
  }
  cli.run.quiet = quiet;
  cli.run.keep = !cli.run_no_keep;
  cli.run.copy.progress =
      comm.rank() == 0 ? progress_mode(quiet, cli.progress) : pipeline::ProgressMode::kNone;
  mg::MigrateRunResult r = mg::run_migrate(cli.run, comm);
  if (comm.rank() != 0) return r.exit_code;
  for (const auto& p : r.passes) {
    for (const auto& e : p.error_samples) std::fprintf(stderr, "barge: %s\n", e.c_str());
    if (!quiet)
      std::printf(
          "migrate: pass %u (%s): %llu files (%s) in %s, %llu changed while read (next "
          "pass), %llu errors\n",
          p.pass, p.kind.c_str(), static_cast<unsigned long long>(p.files_changed),
          mg::human_bytes(p.bytes_changed).c_str(), mg::duration_text(p.seconds).c_str(),
          static_cast<unsigned long long>(p.files_retried),
          static_cast<unsigned long long>(p.errors));
  }
  if (!r.fatal.empty()) {
    std::fprintf(stderr, "barge: %s\n", r.fatal.c_str());
  } else if (!quiet) {
    std::printf("migrate: %s: %s; next: barge migrate cutover --state %s\n", r.phase.c_str(),
                r.stop_reason.c_str(), cli.run.state_dir.c_str());
  }
  return r.exit_code;
}

int run_status_command(MigrateCli& cli, bool quiet) {
  auto st = mg::load_status(cli.status_state, mg::now_unix());
  if (!st) return usage("migrate status: " + st.error().message);
  if (!cli.status_metrics.empty())
    if (auto w = mg::write_metrics(cli.status_metrics, st.value()); !w)
      return usage("migrate status: --metrics " + cli.status_metrics + ": " + w.error().message);
  if (cli.status_json == "-") {
    std::printf("%s\n", mg::to_json(st.value())
                            .dump(2, ' ', false, nlohmann::json::error_handler_t::replace)
                            .c_str());
    return 0;
  }
  if (!cli.status_json.empty())
    if (int rc = write_report(cli.status_json, mg::to_json(st.value()))) return rc;
  if (!quiet) std::fputs(mg::human_status(st.value()).c_str(), stdout);
  return 0;
}

int run_cutover_command(MigrateCli& cli, transport::Comm& comm, bool quiet) {
  cli.cutover.keep = !cli.cutover_no_keep;
  cli.cutover.copy.progress =
      comm.rank() == 0 ? progress_mode(quiet, cli.progress) : pipeline::ProgressMode::kNone;
  mg::CutoverResult r = mg::run_cutover(cli.cutover, comm);
  if (comm.rank() != 0) return r.exit_code;
  if (!r.fatal.empty()) {
    std::fprintf(stderr, "barge: %s\n", r.fatal.c_str());
    return r.exit_code;
  }
  for (const auto& p : r.verify.problems) std::fprintf(stderr, "barge: verify: %s\n", p.c_str());
  for (const auto& e : r.pass.error_samples) std::fprintf(stderr, "barge: %s\n", e.c_str());
  if (r.pass.files_retried)
    std::fprintf(stderr,
                 "barge: migrate cutover: %llu files changed during the final pass: SRC "
                 "was not frozen\n",
                 static_cast<unsigned long long>(r.pass.files_retried));
  if (!quiet) {
    std::printf("migrate cutover: final pass %llu files (%s), %llu deleted, in %s\n",
                static_cast<unsigned long long>(r.pass.files_changed),
                mg::human_bytes(r.pass.bytes_changed).c_str(),
                static_cast<unsigned long long>(r.pass.entries_deleted),
                mg::duration_text(r.pass.seconds).c_str());
    std::printf("migrate cutover: verified %llu entries, %llu files (%s) in %s: %s\n",
                static_cast<unsigned long long>(r.verify.entries),
                static_cast<unsigned long long>(r.verify.files),
                mg::human_bytes(r.verify.bytes).c_str(),
                mg::duration_text(r.verify.seconds).c_str(),
                r.verify.ok() ? "DST equals SRC"
                              : (std::to_string(r.verify.problem_count) + " problems").c_str());
    std::printf("migrate cutover: downtime %s (predicted %s)\n",
                mg::duration_text(r.downtime_seconds).c_str(),
                r.predicted_downtime_seconds
                    ? mg::duration_text(*r.predicted_downtime_seconds).c_str()
                    : "none");
  }
  return r.exit_code;
}

int run_rollback_command(MigrateCli& cli, bool quiet) {
  auto s = mg::load_state(cli.rollback_state);
  if (!s) return usage("migrate rollback: " + s.error().message);
  auto r = mg::rollback(
      s.value(), cli.rollback_to ? std::optional<unsigned>(cli.rollback_to) : std::nullopt, 4);
  if (!r) return usage(r.error().message);
  if (!quiet) {
    std::string undone;
    for (unsigned p : r.value().undone) undone += " " + std::to_string(p);
    std::printf(
        "migrate rollback: DST is as after pass %u (undid pass%s%s; %llu entries "
        "removed, %llu restored)\n",
        r.value().to_pass, r.value().undone.size() > 1 ? "es" : "", undone.c_str(),
        static_cast<unsigned long long>(r.value().removed),
        static_cast<unsigned long long>(r.value().restored));
  }
  return 0;
}

}  // namespace

void add_migrate_commands(CLI::App& app, MigrateCli& cli, bool& quiet) {
  cli.cmd = app.add_subcommand("migrate", "relocate a live file system: plan, run, status");
  cli.cmd->require_subcommand(1);
  cli.cmd->add_flag("-q,--quiet", quiet, "no progress and no summary (errors are still printed)");
  add_plan(cli.cmd, cli);
  add_run(cli.cmd, cli);
  add_status(cli.cmd, cli);
  add_cutover(cli.cmd, cli);
  add_rollback(cli.cmd, cli);
  for (CLI::App* c : {cli.plan_cmd, cli.run_cmd, cli.status_cmd, cli.cutover_cmd, cli.rollback_cmd})
    c->add_flag("-q,--quiet", quiet, "no progress and no summary (errors are still printed)");
}

int run_migrate_commands(MigrateCli& cli, transport::Comm& comm, bool quiet) {
  if (!*cli.cmd) return -1;
  if (*cli.run_cmd) return run_run_command(cli, comm, quiet);
  if (*cli.cutover_cmd) return run_cutover_command(cli, comm, quiet);
  // plan and status are one process's work (the plan's walk is threaded).
  if (comm.rank() != 0) return pipeline::kExitOk;
  if (*cli.plan_cmd) return run_plan_command(cli, quiet);
  if (*cli.rollback_cmd) return run_rollback_command(cli, quiet);
  return run_status_command(cli, quiet);
}

}  // namespace barge::tools
