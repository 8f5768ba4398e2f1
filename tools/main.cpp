// barge CLI: parses arguments into option structs, calls one library entry point per
// subcommand and maps the result to an exit code (0 ok, 1 some entries failed, 2 usage or
// fatal error). Nothing else lives here.
#include <malloc.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>

#include "io/log.hpp"
#include "pipeline/check/verify_manifest.hpp"
#include "pipeline/copy/copy.hpp"
#include "pipeline/copy/sync.hpp"
#include "pipeline/core/manifest.hpp"
#include "pipeline/gen/gen.hpp"
#include "tools/cli_common.hpp"
#include "tools/repo_cli.hpp"
#include "tools/size_parse.hpp"
#include "transport/comm.hpp"

namespace {

using namespace barge;
using tools::print_summary;
using tools::progress_mode;
using tools::size_validator;
using tools::write_report;

// SIGTERM, SIGUSR1 (what Slurm sends before the time limit with --signal) and SIGINT stop a
// run cleanly: no new work, in-flight work finished, journal flushed, exit 75. A second
// signal of the same kind kills as usual.
void on_stop_signal(int sig) { pipeline::stop_signal().store(sig); }

void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESETHAND;
  for (int sig : {SIGTERM, SIGUSR1, SIGINT}) ::sigaction(sig, &sa, nullptr);
}

// Flags shared by the commands that run the engine (copy, sync).
struct EngineCli {
  bool quiet = false;
  std::string progress = "auto";
};

void add_engine_options(CLI::App* cmd, pipeline::CopyOptions& o, EngineCli& cli) {
  cmd->add_flag("--verify", o.verify,
                "re-read what was written and compare per-chunk XXH3-128 checksums");
  cmd->add_option("--checksum-manifest", o.manifest_path,
                  "write the XXH3-128 of each file copied to FILE (check later with barge "
                  "verify --manifest)");
  cmd->add_option("--report", o.report_path, "write a JSON report to FILE");
  tools::add_engine_flags(cmd, o, "work-unit size; larger files are split (default 4M)");
  cmd->add_flag(
      "--direct", [&o](int64_t) { o.direct_read = o.direct_write = true; },
      "O_DIRECT reads and writes (bypass the page cache)");
  cmd->add_flag("--direct-read", o.direct_read, "O_DIRECT reads only");
  cmd->add_flag("--direct-write", o.direct_write, "O_DIRECT writes only");
  cmd->add_flag("--fsync", o.fsync, "fsync each file before renaming it into place");
  cmd->add_flag("--xattrs", o.xattrs,
                "copy extended attributes (user.*; trusted.* and security.* as root)");
  cmd->add_option("--exclude", o.excludes,
                  "leave out entries matching this glob (repeatable); sync --delete keeps "
                  "excluded names in DST");
  cmd->add_option("--include", o.includes, "keep entries matching this glob despite an --exclude");
  cmd->add_option("--progress", cli.progress, "auto | tty | plain | none")
      ->check(CLI::IsMember({"auto", "tty", "plain", "none"}));
  cmd->add_option("--progress-interval", o.progress_interval_s,
                  "seconds between progress lines (default 0.5 on a terminal, 5 otherwise)")
      ->check(CLI::Range(0.1, 86400.0));
  cmd->add_flag("-q,--quiet", cli.quiet, "no progress and no summary (errors are still printed)");
}

}  // namespace

int main(int argc, char** argv) {
  // Under mpirun/srun every rank runs this same main; launched alone there is no MPI at all.
  std::unique_ptr<transport::Comm> comm;
  try {
    comm = transport::make_comm(&argc, &argv);
  } catch (const std::exception& ex) {
    std::fprintf(stderr, "barge: error: %s\n", ex.what());
    return pipeline::kExitFatal;
  }
  const bool rank0 = comm->rank() == 0;
  install_stop_handlers();
  if (comm->size() > 1) {
    // Every rank must have been given the same command line: compare with rank 0's.
    std::string args;
    for (int i = 1; i < argc; ++i) args.append(argv[i]).push_back('\0');
    bool same = comm->broadcast(args, 0) == args;
    if (!comm->agree(same)) {
      if (rank0 || !same) {
        std::fprintf(stderr, "barge: error: rank %d was given different arguments than rank 0\n",
                     comm->rank());
      }
      return pipeline::kExitFatal;
    }
    if (!rank0) io::set_log_level(io::LogLevel::kError);
  }
  CLI::App app{"barge: parallel bulk data transfer for HPC clusters"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "barge 0.1.0");
  EngineCli cli;
  bool& quiet = cli.quiet;
  app.add_flag("-q,--quiet", quiet, "no progress and no summary (errors are still printed)");

  // barge copy
  pipeline::CopyOptions copy;
  std::vector<std::string> copy_paths;
  auto* copy_cmd = app.add_subcommand(
      "copy", "copy files and trees, verified end to end (cp -a placement rules)");
  copy_cmd->add_option("paths", copy_paths, "SRC... DST")->required()->expected(2, -1);
  add_engine_options(copy_cmd, copy, cli);
  copy_cmd->add_flag(
      "--resume", copy.resume,
      "continue a stopped or killed run: skip files in place and chunks the journal lists");

  // barge sync
  pipeline::SyncOptions sync;
  std::vector<std::string> sync_paths;
  auto* sync_cmd =
      app.add_subcommand("sync", "make DST a mirror of SRC's contents (rsync -a SRC/ DST/)");
  sync_cmd->add_option("paths", sync_paths, "SRC DST")->required()->expected(2, 2);
  sync_cmd->add_flag("--checksum", sync.checksum,
                     "compare content (both sides hashed) instead of size and mtime");
  sync_cmd->add_flag("--delete", sync.delete_extra, "remove entries DST has and SRC lacks");
  sync_cmd->add_flag("-n,--dry-run", sync.dry_run, "change nothing; list what would change");
  sync_cmd->add_flag("-i,--itemize", sync.itemize,
                     "print one line per change (rsync --itemize-changes style)");
  add_engine_options(sync_cmd, sync.copy, cli);

  // barge gen
  pipeline::GenOptions gen;
  std::string gen_dir, gen_profile = "mixed";
  auto* gen_cmd = app.add_subcommand("gen", "generate a deterministic synthetic dataset");
  gen_cmd->add_option("dir", gen_dir, "directory to create (must be absent or empty)")->required();
  gen_cmd->add_option("--profile", gen_profile, "small | large | mixed")
      ->check(CLI::IsMember({"small", "large", "mixed"}));
  gen_cmd->add_option("--size", gen.total_bytes, "total bytes of file data, e.g. 1G")
      ->required()
      ->transform(size_validator());
  gen_cmd->add_option("--seed", gen.seed, "same seed, same bytes (default 1)");
  gen_cmd
      ->add_option("--compressibility", gen.compressibility,
                   "0..1, fraction zstd -3 removes (default 0)")
      ->check(CLI::Range(0.0, 1.0));
  gen_cmd->add_option("--files", gen.file_count, "number of files (default: from the profile)");
  gen_cmd->add_flag("--dedupable", gen.dedupable, "repeat blocks across files (default: never)");
  gen_cmd->add_option("--threads", gen.threads, "writer threads (default: all cores)")
      ->check(CLI::Range(1, 1024));
  gen_cmd->add_flag("-q,--quiet", quiet, "no summary line");

  // barge backup, restore, snapshots, forget, repair
  tools::RepoCli repo_cli;
  tools::add_repo_commands(app, repo_cli, quiet);

  // barge verify --manifest
  pipeline::VerifyManifestOptions verify;
  std::string verify_manifest_path, verify_dir, verify_report;
  auto* verify_cmd = app.add_subcommand(
      "verify", "check a backup repository's blobs, or a tree against a checksum manifest");
  verify_cmd->add_option("--manifest", verify_manifest_path,
                         "check the tree DIR against this manifest (written by copy "
                         "--checksum-manifest); without it, DIR is a backup repository");
  verify_cmd
      ->add_option("dir", verify_dir,
                   "tree whose files the manifest lists, or the repository to check")
      ->required();
  verify_cmd->add_option("--snapshot", repo_cli.verify.snapshot,
                         "repository: check only this snapshot (id, unique prefix or short "
                         "id; default: all)");
  verify_cmd->add_option("--threads", verify.threads, "worker threads (default max(4, 2 x cores))")
      ->check(CLI::Range(1, 1024));
  verify_cmd->add_flag(
      "--no-extra", [&](int64_t) { verify.report_extra = false; },
      "do not report files the manifest does not list");
  verify_cmd
      ->add_option("--memory", repo_cli.verify.memory_bytes,
                   "bound on payload buffers per rank (default 256M)")
      ->transform(tools::size_validator());
  verify_cmd
      ->add_option("--queue-depth", repo_cli.verify.queue_depth,
                   "io_uring queue depth per thread (default 64)")
      ->check(CLI::Range(1, 4096));
  verify_cmd->add_option("--report", verify_report, "write a JSON report to FILE");
  verify_cmd->add_flag("-q,--quiet", quiet, "only the problems, no summary");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::string what = e.what();
    std::replace(what.begin(), what.end(), '\n', ' ');
    if (rank0) std::fprintf(stderr, "barge: error: %s (see barge --help)\n", what.c_str());
    return pipeline::kExitFatal;
  }
  if (quiet) io::set_log_level(io::LogLevel::kWarn);

  try {
    if (*copy_cmd) {
      // A copy keeps an entry per file, built from per-directory listings that are large and
      // short-lived: a fixed mmap threshold gives each back to the system when it is freed
      // (glibc would raise the threshold and keep them in the heap), so peak memory follows
      // the file list alone. Not for sync, which keeps only what changed and whose many
      // listings would each pay for fresh pages.
      ::mallopt(M_MMAP_THRESHOLD, 128 * 1024);
      copy.destination = copy_paths.back();
      copy.sources.assign(copy_paths.begin(), copy_paths.end() - 1);
      copy.progress = progress_mode(quiet, cli.progress);
      if (!rank0) copy.progress = pipeline::ProgressMode::kNone;
      pipeline::RunResult r = pipeline::run_copy_ranks(copy, *comm);
      if (!rank0) return r.exit_code;  // rank 0 speaks for the job
      print_summary(r, "copy", quiet);
      int rc = write_report(copy.report_path, pipeline::to_json(r, "copy"));
      return rc ? std::max(rc, r.exit_code) : r.exit_code;
    }
    if (*sync_cmd) {
      sync.copy.destination = sync_paths.back();
      sync.copy.sources.assign(sync_paths.begin(), sync_paths.end() - 1);
      sync.copy.progress =
          rank0 ? progress_mode(quiet, cli.progress) : pipeline::ProgressMode::kNone;
      pipeline::SyncResult r = pipeline::run_sync(sync, *comm);
      if (!rank0) return r.run.exit_code;
      if (sync.itemize || sync.dry_run) {
        for (const auto& line : r.changes)
          std::printf("%s\n", pipeline::printable_path(line).c_str());
        std::fflush(stdout);
      }
      print_summary(r.run, sync.dry_run ? "sync (dry run)" : "sync", quiet);
      nlohmann::json j = pipeline::to_json(r.run, "sync");
      j["changes"] = r.changes.size();
      int rc = write_report(sync.copy.report_path, j);
      return rc ? std::max(rc, r.run.exit_code) : r.run.exit_code;
    }
    if (int rc = tools::run_repo_commands(repo_cli, *comm, quiet); rc >= 0) return rc;
    if (*verify_cmd && verify_manifest_path.empty()) {
      repo_cli.verify.repo = verify_dir;
      repo_cli.verify_report = verify_report;
      repo_cli.verify.threads = verify.threads;
      return tools::run_repo_verify_command(repo_cli, *comm, quiet);
    }
    if (!rank0) return pipeline::kExitOk;  // one rank is enough for gen and verify --manifest
    if (*gen_cmd) {
      gen.dir = gen_dir;
      gen.profile = *pipeline::parse_gen_profile(gen_profile);
      if (auto st = pipeline::validate_gen_options(gen); !st) {
        io::log_error(st.error().message);
        return pipeline::kExitFatal;
      }
      auto r = pipeline::run_gen(gen);
      if (!r) {
        io::log_error(r.error().message);
        return pipeline::kExitFatal;
      }
      if (!quiet) {
        std::fprintf(
            stderr,
            "barge: gen: %llu files, %llu dirs, %llu symlinks, %.1f MiB in %.2f s (%.0f MiB/s)\n",
            static_cast<unsigned long long>(r->files), static_cast<unsigned long long>(r->dirs),
            static_cast<unsigned long long>(r->symlinks), static_cast<double>(r->bytes) / 1048576.0,
            r->seconds, static_cast<double>(r->bytes) / 1048576.0 / std::max(r->seconds, 1e-9));
      }
      return pipeline::kExitOk;
    }
    if (*verify_cmd) {
      verify.manifest = verify_manifest_path;
      verify.dir = verify_dir;
      if (auto st = pipeline::validate(verify); !st) {
        io::log_error(st.error().message);
        return pipeline::kExitFatal;
      }
      verify.memory_bytes = repo_cli.verify.memory_bytes;
      verify.queue_depth = repo_cli.verify.queue_depth;
      auto r = pipeline::verify_manifest(verify);
      if (!r) {
        io::log_error(r.error().message);
        return pipeline::kExitFatal;
      }
      auto name_all = [](const std::vector<std::string>& paths, const char* what) {
        for (const auto& p : paths)
          io::log_error(std::string(what) + ": " + pipeline::printable_path(p));
      };
      name_all(r->mismatched, "checksum mismatch");
      name_all(r->missing, "missing");
      for (size_t i = 0; i < r->unreadable.size(); ++i) {
        io::log_error("unreadable: " + pipeline::printable_path(r->unreadable[i]) +
                      (i < r->errors.size() ? " (" + r->errors[i] + ")" : ""));
      }
      name_all(r->extra, "not in manifest");
      if (!quiet) {
        std::fprintf(stderr, "barge: verify: %llu files, %.1f MiB checked in %.2f s: %s\n",
                     static_cast<unsigned long long>(r->files_checked),
                     static_cast<double>(r->bytes_checked) / 1048576.0, r->seconds,
                     r->ok() ? "all match" : "PROBLEMS FOUND");
      }
      if (!verify_report.empty()) {
        nlohmann::json j{{"command", "verify"},
                         {"files_checked", r->files_checked},
                         {"bytes_checked", r->bytes_checked},
                         {"seconds", r->seconds},
                         {"ok", r->ok()},
                         {"mismatched", r->mismatched.size()},
                         {"missing", r->missing.size()},
                         {"unreadable", r->unreadable.size()},
                         {"extra", r->extra.size()}};
        if (int rc = write_report(verify_report, j)) return rc;
      }
      return r->ok() ? pipeline::kExitOk : pipeline::kExitPartial;
    }
  } catch (const std::exception& ex) {
    if (comm->size() > 1) {
      // The other ranks are waiting in the next agreement, which this rank will never reach.
      char host[256] = {};
      ::gethostname(host, sizeof host - 1);
      std::fprintf(stderr, "barge: error: rank %d (%s): %s; stopping every rank of the job\n",
                   comm->rank(), host, ex.what());
      std::fflush(stderr);
      comm->abort_job(pipeline::kExitFatal);
    }
    io::log_error(ex.what());
    return pipeline::kExitFatal;
  }
  return pipeline::kExitFatal;
}
