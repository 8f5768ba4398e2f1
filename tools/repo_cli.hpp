// The repository commands of the CLI: backup, restore, snapshots, forget, repair, and verify of a
// repository (verify of a tree against a checksum manifest stays in main.cpp).
#pragma once

#include <CLI/CLI.hpp>
#include <string>

#include "pipeline/repo/backup.hpp"
#include "transport/comm.hpp"

namespace barge::tools {

struct RepoCli {
  pipeline::BackupOptions backup;
  pipeline::RestoreOptions restore;
  pipeline::ForgetOptions forget;
  pipeline::RepoVerifyOptions verify;
  pipeline::RepairOptions repair;
  std::string mode = "auto";
  std::string backup_report, restore_report, verify_report;
  std::string progress = "auto";
  bool json = false;
  std::string snapshots_repo;
  CLI::App* backup_cmd = nullptr;
  CLI::App* restore_cmd = nullptr;
  CLI::App* snapshots_cmd = nullptr;
  CLI::App* forget_cmd = nullptr;
  CLI::App* repair_cmd = nullptr;
};

void add_repo_commands(CLI::App& app, RepoCli& cli, bool& quiet);
// -1 when none of these commands was chosen; otherwise the exit code (every rank).
int run_repo_commands(RepoCli& cli, transport::Comm& comm, bool quiet);
// barge verify REPO [--snapshot ID]
int run_repo_verify_command(RepoCli& cli, transport::Comm& comm, bool quiet);

}  // namespace barge::tools
