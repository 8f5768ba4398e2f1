// barge migrate: plan, run and status of a relocation (pipeline/migrate).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

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
  std::string status_state, status_json, status_metrics;
  CLI::App* cmd = nullptr;
  CLI::App* plan_cmd = nullptr;
  CLI::App* run_cmd = nullptr;
  CLI::App* status_cmd = nullptr;
};

void add_migrate_commands(CLI::App& app, MigrateCli& cli, bool& quiet);
// -1 when migrate was not chosen; otherwise the exit code.
int run_migrate_commands(MigrateCli& cli, transport::Comm& comm, bool quiet);

}  // namespace barge::tools
