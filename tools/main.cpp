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
#include <optional>

#include "io/log.hpp"
#include "pipeline/check/verify_manifest.hpp"
#include "pipeline/copy/copy.hpp"
#include "pipeline/copy/sync.hpp"
#include "pipeline/core/manifest.hpp"
#include "pipeline/gen/gen.hpp"
#include "tools/bench_cli.hpp"
#include "tools/cli_common.hpp"
#include "tools/migrate_cli.hpp"
#include "tools/net_cli.hpp"
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

// Every rank must have been given the same command line: compare with rank 0's. False (after
// saying so) when they differ.
bool same_arguments_on_every_rank(transport::Comm& comm, int argc, char** argv) {
  const bool rank0 = comm.rank() == 0;
  std::string args;
  for (int i = 1; i < argc; ++i) args.append(argv[i]).push_back('\0');
  bool same = comm.broadcast(args, 0) == args;
  if (!comm.agree(same)) {
    if (rank0 || !same) {
      std::fprintf(stderr, "barge: error: rank %d was given different arguments than rank 0\n",
                   comm.rank());
    }
    return false;
  }
  return true;
}

// Flags shared by the commands that run the engine (copy, sync).
struct EngineCli {
  bool quiet = false;
  std::string progress = "auto";
};

struct CopyCli {
  pipeline::CopyOptions opts;
  std::vector<std::string> paths;
  CLI::App* cmd = nullptr;
};

struct SyncCli {
  pipeline::SyncOptions opts;
  std::vector<std::string> paths;
  CLI::App* cmd = nullptr;
};

struct GenCli {
  pipeline::GenOptions opts;
  std::string dir, profile = "mixed";
  CLI::App* cmd = nullptr;
};

// verify --manifest; verify of a repository parses into RepoCli::verify, and the flags both
// forms share land in one place or the other (run_command moves them across).
struct VerifyCli {
  pipeline::VerifyManifestOptions opts;
  std::string manifest_path, dir, report;
  CLI::App* cmd = nullptr;
};

// Every command's options. CLI11 keeps references into it: it must not move once the
// commands are added.
struct Cli {
  EngineCli engine;  // engine.quiet is the one -q of every command
  CopyCli copy;
  SyncCli sync;
  GenCli gen;
  tools::RepoCli repo;
  VerifyCli verify;
  tools::NetCli net;
  tools::BenchCli bench;
  tools::MigrateCli migrate;
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
  const std::map<std::string, pipeline::Reflink> reflink{{"auto", pipeline::Reflink::kAuto},
                                                         {"never", pipeline::Reflink::kNever},
                                                         {"always", pipeline::Reflink::kAlways}};
  cmd->add_option("--reflink", o.reflink,
                  "auto | never | always: clone the source's extents instead of writing its "
                  "bytes where the file system can (XFS, btrfs; checksums still computed; "
                  "default auto)")
      ->transform(CLI::CheckedTransformer(reflink, CLI::ignore_case));
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

void add_copy_command(CLI::App& app, CopyCli& copy, EngineCli& engine) {
  copy.cmd = app.add_subcommand(
      "copy", "copy files and trees, verified end to end (cp -a placement rules)");
  copy.cmd->add_option("paths", copy.paths, "SRC... DST")->required()->expected(2, -1);
  add_engine_options(copy.cmd, copy.opts, engine);
  tools::add_tune_flags(
      copy.cmd, copy.opts,
      "probe the source and destination first (bounded: --tune-seconds), then pick "
      "the chunk size, queue depth, threads and O_DIRECT; the report says what was "
      "tried");
  copy.cmd->add_flag(
      "--resume", copy.opts.resume,
      "continue a stopped or killed run: skip files in place and chunks the journal lists");
}

void add_sync_command(CLI::App& app, SyncCli& sync, EngineCli& engine) {
  pipeline::SyncOptions& o = sync.opts;
  sync.cmd = app.add_subcommand("sync", "make DST a mirror of SRC's contents (rsync -a SRC/ DST/)");
  sync.cmd->add_option("paths", sync.paths, "SRC DST")->required()->expected(2, 2);
  sync.cmd->add_flag("--checksum", o.checksum,
                     "compare content (both sides hashed) instead of size and mtime");
  sync.cmd->add_flag("--delete", o.delete_extra, "remove entries DST has and SRC lacks");
  sync.cmd->add_flag("-n,--dry-run", o.dry_run, "change nothing; list what would change");
  sync.cmd->add_flag("-i,--itemize", o.itemize,
                     "print one line per change (rsync --itemize-changes style)");
  add_engine_options(sync.cmd, o.copy, engine);
}

void add_gen_command(CLI::App& app, GenCli& gen, bool& quiet) {
  pipeline::GenOptions& o = gen.opts;
  gen.cmd = app.add_subcommand("gen", "generate a deterministic synthetic dataset");
  gen.cmd->add_option("dir", gen.dir, "directory to create (must be absent or empty)")->required();
  gen.cmd->add_option("--profile", gen.profile, "small | large | mixed")
      ->check(CLI::IsMember({"small", "large", "mixed"}));
  gen.cmd->add_option("--size", o.total_bytes, "total bytes of file data, e.g. 1G")
      ->required()
      ->transform(size_validator());
  gen.cmd->add_option("--seed", o.seed, "same seed, same bytes (default 1)");
  gen.cmd
      ->add_option("--compressibility", o.compressibility,
                   "0..1, fraction zstd -3 removes (default 0)")
      ->check(CLI::Range(0.0, 1.0));
  gen.cmd->add_option("--files", o.file_count, "number of files (default: from the profile)");
  gen.cmd->add_flag("--dedupable", o.dedupable, "repeat blocks across files (default: never)");
  gen.cmd->add_option("--threads", o.threads, "writer threads (default: all cores)")
      ->check(CLI::Range(1, 1024));
  gen.cmd->add_flag("-q,--quiet", quiet, "no summary line");
}

// One command for both forms: --manifest checks a tree, its absence a repository.
void add_verify_command(CLI::App& app, VerifyCli& verify, tools::RepoCli& repo, bool& quiet) {
  pipeline::VerifyManifestOptions& o = verify.opts;
  verify.cmd = app.add_subcommand(
      "verify", "check a backup repository's blobs, or a tree against a checksum manifest");
  verify.cmd->add_option("--manifest", verify.manifest_path,
                         "check the tree DIR against this manifest (written by copy "
                         "--checksum-manifest); without it, DIR is a backup repository");
  verify.cmd
      ->add_option("dir", verify.dir,
                   "tree whose files the manifest lists, or the repository to check")
      ->required();
  verify.cmd->add_option("--snapshot", repo.verify.snapshot,
                         "repository: check only this snapshot (id, unique prefix or short "
                         "id; default: all)");
  verify.cmd->add_option("--threads", o.threads, "worker threads (default max(4, 2 x cores))")
      ->check(CLI::Range(1, 1024));
  verify.cmd->add_flag(
      "--no-extra", [&o](int64_t) { o.report_extra = false; },
      "do not report files the manifest does not list");
  verify.cmd
      ->add_option("--memory", repo.verify.memory_bytes,
                   "bound on payload buffers per rank (default 256M)")
      ->transform(tools::size_validator());
  verify.cmd
      ->add_option("--queue-depth", repo.verify.queue_depth,
                   "io_uring queue depth per thread (default 64)")
      ->check(CLI::Range(1, 4096));
  verify.cmd->add_option("--report", verify.report, "write a JSON report to FILE");
  verify.cmd->add_flag("-q,--quiet", quiet, "only the problems, no summary");
}

// The order of the commands here is the order --help lists them in.
void add_commands(CLI::App& app, Cli& cli) {
  app.require_subcommand(1);
  app.set_version_flag("--version", "barge 0.1.0");
  bool& quiet = cli.engine.quiet;
  app.add_flag("-q,--quiet", quiet, "no progress and no summary (errors are still printed)");
  add_copy_command(app, cli.copy, cli.engine);
  add_sync_command(app, cli.sync, cli.engine);
  add_gen_command(app, cli.gen, quiet);
  tools::add_repo_commands(app, cli.repo, quiet);  // backup, restore, snapshots, forget, repair
  add_verify_command(app, cli.verify, cli.repo, quiet);
  tools::add_net_commands(app, cli.net, quiet);  // send, recv
  tools::add_bench_commands(app, cli.bench, quiet);
  tools::add_migrate_commands(app, cli.migrate, quiet);
}

// An exit code when the command line does not lead to a run (help, version, usage error).
std::optional<int> parse_command_line(CLI::App& app, int argc, char** argv, bool rank0) {
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
  return std::nullopt;
}

int run_copy_command(CopyCli& copy, const EngineCli& engine, transport::Comm& comm) {
  const bool rank0 = comm.rank() == 0;
  pipeline::CopyOptions& o = copy.opts;
  // A copy keeps an entry per file, built from per-directory listings that are large and
  // short-lived: a fixed mmap threshold gives each back to the system when it is freed
  // (glibc would raise the threshold and keep them in the heap), so peak memory follows
  // the file list alone. Not for sync, which keeps only what changed and whose many
  // listings would each pay for fresh pages.
  ::mallopt(M_MMAP_THRESHOLD, 128 * 1024);
  o.destination = copy.paths.back();
  o.sources.assign(copy.paths.begin(), copy.paths.end() - 1);
  o.progress = progress_mode(engine.quiet, engine.progress);
  if (!rank0) o.progress = pipeline::ProgressMode::kNone;
  pipeline::RunResult r = pipeline::run_copy_ranks(o, comm);
  if (!rank0) return r.exit_code;  // rank 0 speaks for the job
  print_summary(r, "copy", engine.quiet);
  int rc = write_report(o.report_path, pipeline::to_json(r, "copy"));
  return rc ? std::max(rc, r.exit_code) : r.exit_code;
}

int run_sync_command(SyncCli& sync, const EngineCli& engine, transport::Comm& comm) {
  const bool rank0 = comm.rank() == 0;
  pipeline::SyncOptions& o = sync.opts;
  o.copy.destination = sync.paths.back();
  o.copy.sources.assign(sync.paths.begin(), sync.paths.end() - 1);
  o.copy.progress =
      rank0 ? progress_mode(engine.quiet, engine.progress) : pipeline::ProgressMode::kNone;
  pipeline::SyncResult r = pipeline::run_sync(o, comm);
  if (!rank0) return r.run.exit_code;
  if (o.itemize || o.dry_run) {
    for (const auto& line : r.changes) std::printf("%s\n", pipeline::printable_path(line).c_str());
    std::fflush(stdout);
  }
  print_summary(r.run, o.dry_run ? "sync (dry run)" : "sync", engine.quiet);
  nlohmann::json j = pipeline::to_json(r.run, "sync");
  j["changes"] = r.changes.size();
  int rc = write_report(o.copy.report_path, j);
  return rc ? std::max(rc, r.run.exit_code) : r.run.exit_code;
}

int run_gen_command(GenCli& gen, bool quiet) {
  pipeline::GenOptions& o = gen.opts;
  o.dir = gen.dir;
  o.profile = *pipeline::parse_gen_profile(gen.profile);
  if (auto st = pipeline::validate_gen_options(o); !st) {
    io::log_error(st.error().message);
    return pipeline::kExitFatal;
  }
  auto r = pipeline::run_gen(o);
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

// One error line per file that does not match the manifest.
void log_manifest_problems(const pipeline::VerifyManifestResult& r) {
  auto name_all = [](const std::vector<std::string>& paths, const char* what) {
    for (const auto& p : paths)
      io::log_error(std::string(what) + ": " + pipeline::printable_path(p));
  };
  name_all(r.mismatched, "checksum mismatch");
  name_all(r.missing, "missing");
  for (size_t i = 0; i < r.unreadable.size(); ++i) {
    io::log_error("unreadable: " + pipeline::printable_path(r.unreadable[i]) +
                  (i < r.errors.size() ? " (" + r.errors[i] + ")" : ""));
  }
  name_all(r.extra, "not in manifest");
}

int write_manifest_report(const std::string& path, const pipeline::VerifyManifestResult& r) {
  if (path.empty()) return 0;
  nlohmann::json j{{"command", "verify"},
                   {"files_checked", r.files_checked},
                   {"bytes_checked", r.bytes_checked},
                   {"seconds", r.seconds},
                   {"ok", r.ok()},
                   {"mismatched", r.mismatched.size()},
                   {"missing", r.missing.size()},
                   {"unreadable", r.unreadable.size()},
                   {"extra", r.extra.size()}};
  return write_report(path, j);
}

// barge verify --manifest FILE DIR; --memory and --queue-depth were parsed into the
// repository's options.
int run_verify_manifest_command(VerifyCli& verify, const tools::RepoCli& repo, bool quiet) {
  pipeline::VerifyManifestOptions& o = verify.opts;
  o.manifest = verify.manifest_path;
  o.dir = verify.dir;
  if (auto st = pipeline::validate(o); !st) {
    io::log_error(st.error().message);
    return pipeline::kExitFatal;
  }
  o.memory_bytes = repo.verify.memory_bytes;
  o.queue_depth = repo.verify.queue_depth;
  auto r = pipeline::verify_manifest(o);
  if (!r) {
    io::log_error(r.error().message);
    return pipeline::kExitFatal;
  }
  log_manifest_problems(*r);
  if (!quiet) {
    std::fprintf(stderr, "barge: verify: %llu files, %.1f MiB checked in %.2f s: %s\n",
                 static_cast<unsigned long long>(r->files_checked),
                 static_cast<double>(r->bytes_checked) / 1048576.0, r->seconds,
                 r->ok() ? "all match" : "PROBLEMS FOUND");
  }
  if (int rc = write_manifest_report(verify.report, *r)) return rc;
  return r->ok() ? pipeline::kExitOk : pipeline::kExitPartial;
}

// barge verify REPO: the flags it shares with verify --manifest were parsed into VerifyCli.
int run_verify_repo_command(Cli& cli, transport::Comm& comm) {
  cli.repo.verify.repo = cli.verify.dir;
  cli.repo.verify_report = cli.verify.report;
  cli.repo.verify.threads = cli.verify.opts.threads;
  return tools::run_repo_verify_command(cli.repo, comm, cli.engine.quiet);
}

// The chosen command's exit code, on every rank.
int run_command(Cli& cli, transport::Comm& comm) {
  const bool quiet = cli.engine.quiet;
  if (*cli.copy.cmd) return run_copy_command(cli.copy, cli.engine, comm);
  if (*cli.sync.cmd) return run_sync_command(cli.sync, cli.engine, comm);
  if (int rc = tools::run_repo_commands(cli.repo, comm, quiet); rc >= 0) return rc;
  if (int rc = tools::run_net_commands(cli.net, comm, quiet); rc >= 0) return rc;
  if (int rc = tools::run_bench_commands(cli.bench, comm, quiet); rc >= 0) return rc;
  if (int rc = tools::run_migrate_commands(cli.migrate, comm, quiet); rc >= 0) return rc;
  if (*cli.verify.cmd && cli.verify.manifest_path.empty())
    return run_verify_repo_command(cli, comm);
  // One rank is enough for gen and verify --manifest.
  if (comm.rank() != 0) return pipeline::kExitOk;
  if (*cli.gen.cmd) return run_gen_command(cli.gen, quiet);
  if (*cli.verify.cmd) return run_verify_manifest_command(cli.verify, cli.repo, quiet);
  return pipeline::kExitFatal;
}

int fail_on_exception(transport::Comm& comm, const std::exception& ex) {
  if (comm.size() > 1) {
    // The other ranks are waiting in the next agreement, which this rank will never reach.
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    std::fprintf(stderr, "barge: error: rank %d (%s): %s; stopping every rank of the job\n",
                 comm.rank(), host, ex.what());
    std::fflush(stderr);
    comm.abort_job(pipeline::kExitFatal);
  }
  io::log_error(ex.what());
  return pipeline::kExitFatal;
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
    if (!same_arguments_on_every_rank(*comm, argc, argv)) return pipeline::kExitFatal;
    if (!rank0) io::set_log_level(io::LogLevel::kError);
  }
  CLI::App app{"barge: parallel bulk data transfer for HPC clusters"};
  Cli cli;
  add_commands(app, cli);
  if (auto rc = parse_command_line(app, argc, argv, rank0)) return *rc;
  if (cli.engine.quiet) io::set_log_level(io::LogLevel::kWarn);
  try {
    return run_command(cli, *comm);
  } catch (const std::exception& ex) {
    return fail_on_exception(*comm, ex);
  }
}
