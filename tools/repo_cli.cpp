#include "tools/repo_cli.hpp"

#include <cstdio>

#include "io/log.hpp"
#include "tools/cli_common.hpp"

namespace barge::tools {
namespace {

double mib(uint64_t b) { return static_cast<double>(b) / 1048576.0; }

std::string local_time(int64_t ns) {
  time_t secs = static_cast<time_t>(ns / 1000000000);
  struct tm tm;
  localtime_r(&secs, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

nlohmann::json snapshot_json(const pipeline::repo::Snapshot& s) {
  return {{"id", s.id},
          {"kind", pipeline::repo::kind_name(s.kind)},
          {"parent", s.parent},
          {"base_full", s.base_full},
          {"time_ns", s.time_ns},
          {"host", s.host},
          {"source", s.source},
          {"tag", s.tag},
          {"level", s.level},
          {"files", s.files},
          {"bytes_raw", s.bytes_raw},
          {"bytes_stored_new", s.bytes_stored_new},
          {"bytes_stored", s.bytes_stored},
          {"incomplete", s.unreadable != 0},
          {"unreadable", s.unreadable}};
}

// The table's STATUS column: a damaged snapshot cannot be read; an incomplete one lacks what
// could not be read when it was taken.
const char* status_of(const pipeline::SnapshotListing& l) {
  if (!l.damage.empty()) return "DAMAGED";
  return l.summary.unreadable != 0 ? "incomplete" : "ok";
}

// --report, --progress, --progress-interval and -q, as backup and restore take them.
void add_report_and_progress(CLI::App* cmd, RepoCli& cli, std::string& report, double& interval,
                             bool& quiet) {
  cmd->add_option("--report", report, "write a JSON report to FILE");
  cmd->add_option("--progress", cli.progress, "auto | tty | plain | none")
      ->check(CLI::IsMember({"auto", "tty", "plain", "none"}));
  cmd->add_option("--progress-interval", interval,
                  "seconds between progress lines (default 0.5 on a terminal, 5 otherwise)")
      ->check(CLI::Range(0.1, 86400.0));
  cmd->add_flag("-q,--quiet", quiet, "no progress and no summary (errors are still printed)");
}

void add_backup_command(CLI::App& app, RepoCli& cli, bool& quiet) {
  pipeline::BackupOptions& b = cli.backup;
  cli.backup_cmd = app.add_subcommand(
      "backup", "store a snapshot of SRC in the repository REPO (created on first use)");
  cli.backup_cmd->add_option("source", b.source, "directory to back up")->required();
  cli.backup_cmd->add_option("repo", b.repo, "repository directory")->required();
  cli.backup_cmd
      ->add_option("--mode", cli.mode,
                   "full | incremental (changed since the latest snapshot) | differential "
                   "(changed since the latest full); default: incremental, full the first time")
      ->check(CLI::IsMember({"auto", "full", "incremental", "differential"}));
  cli.backup_cmd->add_option("--level", b.level, "zstd level (default 3)")
      ->check(CLI::Range(1, 19));
  add_tune_flags(cli.backup_cmd, b,
                 "tune the zstd level (1, 3, 6 and the one given) on the backup itself: each level "
                 "is timed for a "
                 "window and kept when 10% faster (bounded: --tune-seconds); the report says "
                 "what was tried");
  cli.backup_cmd->add_option("--tag", b.tag, "a label stored with the snapshot");
  cli.backup_cmd->add_flag("--checksum", b.checksum,
                           "read every file and compare content, not size/mtime/ctime/inode");
  cli.backup_cmd->add_flag("--xattrs", b.xattrs, "store extended attributes too");
  cli.backup_cmd->add_option("--exclude", b.excludes, "leave out entries matching this glob");
  cli.backup_cmd->add_option("--include", b.includes,
                             "keep entries matching this glob despite an --exclude");
  add_engine_flags(cli.backup_cmd, b,
                   "chunk size of a new repository (default 4M; an existing one keeps its own)");
  add_report_and_progress(cli.backup_cmd, cli, cli.backup_report, b.progress_interval_s, quiet);
}

void add_restore_command(CLI::App& app, RepoCli& cli, bool& quiet) {
  pipeline::RestoreOptions& r = cli.restore;
  cli.restore_cmd = app.add_subcommand(
      "restore", "rebuild in DST the tree a snapshot holds (DST/x is what SRC/x was)");
  cli.restore_cmd->add_option("repo", r.repo, "repository directory")->required();
  cli.restore_cmd
      ->add_option("destination", r.destination,
                   "directory to restore into (a symlink is followed only when named DST/)")
      ->required();
  cli.restore_cmd->add_option(
      "--snapshot", r.snapshot,
      "latest (default), a snapshot id, or a unique prefix of the id or of its short id");
  cli.restore_cmd->add_option("--path", r.paths,
                              "restore only this path of the snapshot and what is below it "
                              "(repeatable)");
  cli.restore_cmd->add_flag(
      "--no-xattrs", [&r](int64_t) { r.xattrs = false; }, "do not restore extended attributes");
  add_engine_flags(cli.restore_cmd, r, nullptr);  // chunks are the snapshot's
  add_report_and_progress(cli.restore_cmd, cli, cli.restore_report, r.progress_interval_s, quiet);
}

void add_snapshots_command(CLI::App& app, RepoCli& cli) {
  cli.snapshots_cmd = app.add_subcommand("snapshots", "list the snapshots of a repository");
  cli.snapshots_cmd->add_option("repo", cli.snapshots_repo, "repository directory")->required();
  cli.snapshots_cmd->add_flag("--json", cli.json, "one JSON array instead of a table");
}

void add_forget_command(CLI::App& app, RepoCli& cli, bool& quiet) {
  pipeline::ForgetOptions& f = cli.forget;
  cli.forget_cmd = app.add_subcommand(
      "forget", "remove all but the newest snapshots, then the packs nothing references");
  cli.forget_cmd->add_option("repo", f.repo, "repository directory")->required();
  cli.forget_cmd->add_option("--keep-last", f.keep_last, "snapshots to keep")
      ->required()
      ->check(CLI::Range(1u, 1000000u));
  cli.forget_cmd->add_flag("-n,--dry-run", f.dry_run, "only list what would be removed");
  cli.forget_cmd->add_flag("-q,--quiet", quiet, "no summary");
}

void add_repair_command(CLI::App& app, RepoCli& cli, bool& quiet) {
  pipeline::RepairOptions& p = cli.repair;
  cli.repair_cmd = app.add_subcommand(
      "repair", "rebuild a missing or damaged config (from config.bak, or from the snapshots)");
  cli.repair_cmd->add_option("repo", p.repo, "repository directory")->required();
  cli.repair_cmd
      ->add_option("--chunk-size", p.chunk_bytes,
                   "the repository's chunk size, when neither config.bak nor the snapshots "
                   "tell it")
      ->transform(size_validator());
  cli.repair_cmd->add_flag("-q,--quiet", quiet, "no summary");
}

pipeline::BackupMode backup_mode(const std::string& mode) {
  return mode == "full"           ? pipeline::BackupMode::kFull
         : mode == "incremental"  ? pipeline::BackupMode::kIncremental
         : mode == "differential" ? pipeline::BackupMode::kDifferential
                                  : pipeline::BackupMode::kAuto;
}

// The one line a backup ends with (unless -q).
void print_backup_line(const pipeline::BackupResult& r) {
  const auto& s = r.snapshot;
  if (s.id.empty()) {
    std::fprintf(stderr, "barge: backup: no snapshot written\n");
    return;
  }
  std::fprintf(stderr,
               "barge: backup: snapshot %s (%s%s%s): %llu files, %.1f MiB; read %.1f MiB, "
               "stored %.1f MiB new in %.2f s (%.1f MiB/s)%s\n",
               s.id.c_str(), pipeline::repo::kind_name(s.kind), s.parent.empty() ? "" : " of ",
               s.parent.c_str(), static_cast<unsigned long long>(s.files), mib(s.bytes_raw),
               mib(r.bytes_read), mib(s.bytes_stored_new), r.run.seconds,
               mib(r.bytes_read) / std::max(r.run.seconds, 1e-9),
               r.run.errors.empty()
                   ? ""
                   : (", " + std::to_string(r.run.errors.size()) + " errors, INCOMPLETE").c_str());
}

int run_backup_command(RepoCli& cli, transport::Comm& comm, bool quiet) {
  const bool rank0 = comm.rank() == 0;
  pipeline::BackupOptions& b = cli.backup;
  b.mode = backup_mode(cli.mode);
  b.progress = rank0 ? progress_mode(quiet, cli.progress) : pipeline::ProgressMode::kNone;
  pipeline::BackupResult r = pipeline::run_backup(b, comm);
  if (!rank0) return r.run.exit_code;
  print_summary(r.run, "backup", true);
  const auto& s = r.snapshot;
  if (!s.id.empty() && s.unreadable != 0) {
    // Said even with -q: this snapshot is not a complete image of SRC.
    io::log_warn("snapshot " + s.id + " is incomplete: " + std::to_string(s.unreadable) +
                 " entries could not be read (named above)");
  }
  if (!quiet && r.run.started) {
    print_backup_line(r);
    print_tune(r.run);
  }
  nlohmann::json j = pipeline::to_json(r.run, "backup");
  if (!r.snapshot.id.empty()) j["snapshot"] = snapshot_json(r.snapshot);
  j["bytes_read"] = r.bytes_read;
  int rc = write_report(cli.backup_report, j);
  return rc ? std::max(rc, r.run.exit_code) : r.run.exit_code;
}

int run_restore_command(RepoCli& cli, transport::Comm& comm, bool quiet) {
  const bool rank0 = comm.rank() == 0;
  cli.restore.progress = rank0 ? progress_mode(quiet, cli.progress) : pipeline::ProgressMode::kNone;
  pipeline::RestoreResult r = pipeline::run_restore(cli.restore, comm);
  if (!rank0) return r.run.exit_code;
  std::string verb = "restore of " + (r.snapshot_id.empty() ? cli.restore.snapshot : r.snapshot_id);
  print_summary(r.run, verb.c_str(), quiet);
  nlohmann::json j = pipeline::to_json(r.run, "restore");
  j["snapshot"] = r.snapshot_id;
  int rc = write_report(cli.restore_report, j);
  return rc ? std::max(rc, r.run.exit_code) : r.run.exit_code;
}

void print_snapshots_json(const std::vector<pipeline::SnapshotListing>& list) {
  nlohmann::json a = nlohmann::json::array();
  for (const auto& l : list) {
    if (l.damage.empty()) {
      nlohmann::json j = snapshot_json(l.summary);
      j["damaged"] = false;
      a.push_back(std::move(j));
    } else {
      a.push_back({{"id", l.id}, {"damaged", true}, {"error", l.damage}});
    }
  }
  std::printf("%s\n", a.dump(2).c_str());
}

void print_snapshots_table(const std::vector<pipeline::SnapshotListing>& list) {
  std::printf("%-29s  %-12s  %-8s  %-19s  %10s  %12s  %12s  %-10s  %s\n", "ID", "KIND", "PARENT",
              "TIME", "FILES", "RAW MiB", "STORED MiB", "STATUS", "TAG");
  for (const auto& l : list) {
    const auto& s = l.summary;
    if (!l.damage.empty()) {
      std::printf("%-29s  %-12s  %-8s  %-19s  %10s  %12s  %12s  %-10s  %s\n", l.id.c_str(), "?",
                  "?", "?", "?", "?", "?", status_of(l), "");
      continue;
    }
    std::printf("%-29s  %-12s  %-8s  %-19s  %10llu  %12.1f  %12.1f  %-10s  %s\n", s.id.c_str(),
                pipeline::repo::kind_name(s.kind),
                s.parent.empty() ? "-" : s.parent.substr(21).c_str(), local_time(s.time_ns).c_str(),
                static_cast<unsigned long long>(s.files), mib(s.bytes_raw), mib(s.bytes_stored_new),
                status_of(l), s.tag.c_str());
  }
}

int run_snapshots_command(RepoCli& cli, transport::Comm& comm) {
  if (comm.rank() != 0) return pipeline::kExitOk;
  auto list = pipeline::list_snapshots(cli.snapshots_repo);
  if (!list) {
    io::log_error(list.error().message);
    return pipeline::kExitFatal;
  }
  // A damaged snapshot is listed (marked) and named on stderr; the listing then exits 1.
  size_t damaged = 0;
  for (const auto& l : *list) {
    if (l.damage.empty()) continue;
    ++damaged;
    io::log_error("snapshot " + l.id + " is damaged: " + l.damage);
  }
  if (cli.json) {
    print_snapshots_json(*list);
  } else {
    print_snapshots_table(*list);
  }
  std::fflush(stdout);
  return damaged ? pipeline::kExitPartial : pipeline::kExitOk;
}

int run_forget_command(RepoCli& cli, transport::Comm& comm, bool quiet) {
  if (comm.rank() != 0) return pipeline::kExitOk;
  pipeline::ForgetResult r = pipeline::run_forget(cli.forget);
  if (!r.fatal.empty()) {
    io::log_error(r.fatal);
    return r.exit_code;
  }
  for (const auto& id : r.removed_snapshots)
    std::printf("%s %s\n", cli.forget.dry_run ? "would remove" : "removed", id.c_str());
  if (!quiet) {
    std::fprintf(stderr, "barge: forget: %zu snapshots, %llu packs (%.1f MiB) %s\n",
                 r.removed_snapshots.size(), static_cast<unsigned long long>(r.packs_removed),
                 mib(r.bytes_freed), cli.forget.dry_run ? "would be removed" : "removed");
  }
  return r.exit_code;
}

int run_repair_command(RepoCli& cli, transport::Comm& comm, bool quiet) {
  if (comm.rank() != 0) return pipeline::kExitOk;
  pipeline::RepairResult r = pipeline::run_repair(cli.repair);
  if (!r.fatal.empty()) {
    io::log_error(r.fatal);
    return r.exit_code;
  }
  if (!quiet) {
    if (r.actions.empty())
      std::fprintf(stderr, "barge: repair: %s: config and config.bak intact, nothing to do\n",
                   cli.repair.repo.c_str());
    for (const auto& a : r.actions) std::fprintf(stderr, "barge: repair: %s\n", a.c_str());
  }
  return r.exit_code;
}

}  // namespace

void add_repo_commands(CLI::App& app, RepoCli& cli, bool& quiet) {
  add_backup_command(app, cli, quiet);
  add_restore_command(app, cli, quiet);
  add_snapshots_command(app, cli);
  add_forget_command(app, cli, quiet);
  add_repair_command(app, cli, quiet);
}

int run_repo_commands(RepoCli& cli, transport::Comm& comm, bool quiet) {
  if (*cli.backup_cmd) return run_backup_command(cli, comm, quiet);
  if (*cli.restore_cmd) return run_restore_command(cli, comm, quiet);
  if (*cli.snapshots_cmd) return run_snapshots_command(cli, comm);
  if (*cli.forget_cmd) return run_forget_command(cli, comm, quiet);
  if (*cli.repair_cmd) return run_repair_command(cli, comm, quiet);
  return -1;
}

int run_repo_verify_command(RepoCli& cli, transport::Comm& comm, bool quiet) {
  pipeline::RepoVerifyResult r = pipeline::run_repo_verify(cli.verify, comm);
  if (comm.rank() != 0) return r.run.exit_code;
  print_summary(r.run, "verify", true);
  if (!quiet && r.run.started) {
    std::fprintf(
        stderr, "barge: verify: %llu snapshots, %llu blobs (%.1f MiB) checked in %.2f s: %s\n",
        static_cast<unsigned long long>(r.snapshots_checked),
        static_cast<unsigned long long>(r.blobs_checked), mib(r.run.bytes_verified), r.run.seconds,
        r.run.errors.empty() ? "all intact"
                             : (std::to_string(r.blobs_damaged) + " damaged blobs, " +
                                std::to_string(r.run.errors.size()) + " problems")
                                   .c_str());
  }
  nlohmann::json j = pipeline::to_json(r.run, "verify");
  j["snapshots_checked"] = r.snapshots_checked;
  j["blobs_checked"] = r.blobs_checked;
  j["blobs_damaged"] = r.blobs_damaged;
  int rc = write_report(cli.verify_report, j);
  return rc ? std::max(rc, r.run.exit_code) : r.run.exit_code;
}

}  // namespace barge::tools
