// barge migrate: plan, run and status of a relocation (pipeline/migrate).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "pipeline/migrate/cutover.hpp"
#include "pipeline/migrate/plan.hpp"
#include "pipeline/migrate/run.hpp"
#include "transport/comm.hpp"

namespace barge::tools {

struct MigrateCli {
  pipeline::migrate::MigratePlanOptions plan;
  pipeline::migrate::MigrateRunOptions run;
  std::vector<std::string> plan_paths;
  bool no_probe = false;
  std::string until_delta;
  std::string progress = "auto";
  pipeline::migrate::CutoverOptions cutover;
  bool run_no_keep = false, cutover_no_keep = false;
  std::string rollback_state;
  unsigned rollback_to = 0;
  std::string status_state, status_json, status_metrics;
  CLI::App* cmd = nullptr;
  CLI::App* plan_cmd = nullptr;
  CLI::App* run_cmd = nullptr;
  CLI::App* status_cmd = nullptr;
  CLI::App* cutover_cmd = nullptr;
  CLI::App* rollback_cmd = nullptr;
};

void add_migrate_commands(CLI::App& app, MigrateCli& cli, bool& quiet);
// -1 when migrate was not chosen; otherwise the exit code.
int run_migrate_commands(MigrateCli& cli, transport::Comm& comm, bool quiet);

}  // namespace barge::tools
