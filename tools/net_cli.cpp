#include "tools/net_cli.hpp"

#include <nlohmann/json.hpp>

#include "io/log.hpp"
#include "tools/cli_common.hpp"

namespace barge::tools {

namespace {

template <class Opts>
void add_common(CLI::App* cmd, Opts& o, std::string& psk, std::string& progress, bool& quiet) {
  cmd->add_option("--psk-file", psk,
                  "pre-shared key: a file of at least 32 bytes (head -c 32 /dev/urandom > key), "
                  "readable by its owner only; the same file at both ends (not with "
                  "host:PATH, where ssh hands over a fresh key)");
  cmd->add_option("--cert", o.cert_file,
                  "certificate authentication instead of a key: this end's PEM certificate "
                  "chain (with --key and --ca)");
  cmd->add_option("--key", o.key_file, "this end's PEM private key (owner-only, like a PSK file)");
  cmd->add_option("--ca", o.ca_file,
                  "PEM CA certificates the other end's certificate must be signed by (the "
                  "receiver's must also name the host send connects to)");
  cmd->add_flag("--insecure-no-encryption", o.plaintext,
                "no TLS: the data crosses in the clear (less CPU), every record still "
                "authenticated (AES-GMAC, with a key from the PSK); needed at both ends");
  cmd->add_option("--report", o.report_path, "write a JSON report to FILE");
  cmd->add_option("--progress", progress, "auto | tty | plain | none")
      ->check(CLI::IsMember({"auto", "tty", "plain", "none"}));
  cmd->add_option("--progress-interval", o.progress_interval_s,
                  "seconds between progress lines (default 0.5 on a terminal, 5 otherwise)")
      ->check(CLI::Range(0.1, 86400.0));
  cmd->add_flag("-q,--quiet", quiet, "no progress and no summary (errors are still printed)");
}

void add_send(CLI::App& app, NetCli& cli, bool& quiet) {
  auto& o = cli.send;
  cli.send_cmd = app.add_subcommand(
      "send", "send files and trees to a barge recv on another host, over TLS 1.3 streams");
  cli.send_cmd->add_option("paths", cli.send_paths, "SRC... HOST:PORT")
      ->required()
      ->expected(2, -1);
  add_common(cli.send_cmd, o, o.psk_file, cli.progress, quiet);
  cli.send_cmd->add_option("--rsh", o.rsh,
                           "host:PATH: the command that starts recv there (default ssh; e.g. "
                           "\"ssh -p 2222 -i KEY\")");
  cli.send_cmd->add_option("--barge-path", o.barge_path,
                           "host:PATH: barge on the remote host (default: barge on its PATH)");
  cli.send_cmd
      ->add_option(
          "--streams", o.streams,
          "data streams (TCP connections; default 8: fills a 1 Gbit/s, 50 ms path, with loss too)")
      ->check(CLI::Range(1, 64));
  cli.send_cmd->add_option("--compress", cli.compress,
                           "auto (zstd level 1 per chunk; a chunk whose first 64 KiB do not shrink "
                           "goes raw) | none | LEVEL (zstd 1-19 on every chunk)");
  add_tune_flags(
      cli.send_cmd, o,
      "tune the zstd level (none, 1, 3, 6 and the one given) on the transfer itself: each level is "
      "timed on the link for a window and kept when 10% faster (bounded: "
      "--tune-seconds); the report says what was tried");
  cli.send_cmd->add_option("--congestion", o.congestion,
                           "TCP congestion control per socket (bbr, cubic, ...; default: the "
                           "system's)");
  cli.send_cmd
      ->add_option("--bwlimit", o.bwlimit_bytes,
                   "at most RATE bytes per second over all streams (K, M, G: binary, as "
                   "--memory; 100M = 100 MiB/s)")
      ->transform(size_validator());
  cli.send_cmd
      ->add_option("--connect-timeout", o.connect_timeout_ms,
                   "milliseconds to wait for each connection (default 10000)")
      ->check(CLI::Range(100, 600000));
  cli.send_cmd->add_flag("--resume", o.resume,
                         "finish a transfer that was stopped (a kill, a signal, a lost link): "
                         "the receiver keeps the files and the large files' chunks it "
                         "committed, and only the rest is sent");
  cli.send_cmd
      ->add_option("--retries", o.retries,
                   "a lost link (or a busy receiver) is retried this many times, after 1, 2, "
                   "4 ... 30 s, each retry resuming (default 5; 0: none)")
      ->check(CLI::Range(0, 1000));
  cli.send_cmd
      ->add_option("--io-timeout", cli.send_io_timeout_s,
                   "seconds a connection may stay silent or leave data unacknowledged before "
                   "it counts as lost (default 30)")
      ->check(CLI::Range(1, 3600));
  cli.send_cmd->add_flag("--sync", o.sync,
                         "make the remote DST a mirror of the one SRC directory's contents (as "
                         "barge sync SRC DST): the receiver compares DST and only what differs "
                         "is sent");
  cli.send_cmd->add_flag("--delete", o.delete_extra,
                         "with --sync: remove what DST holds and SRC lacks (not what --exclude "
                         "covers)");
  cli.send_cmd->add_flag("--checksum", o.checksum,
                         "with --sync: compare regular files by content (XXH3-128 on both "
                         "ends) instead of size and mtime");
  cli.send_cmd->add_flag("--xattrs", o.xattrs,
                         "send extended attributes with the plan (user.*; trusted.* and "
                         "security.* as root at each end)");
  cli.send_cmd->add_option("--exclude", o.excludes, "leave out entries matching this glob");
  cli.send_cmd->add_option("--include", o.includes,
                           "keep entries matching this glob despite an --exclude");
  add_engine_flags(cli.send_cmd, o,
                   "work-unit size; larger files are split (default 4M, at most 64M)");
}

void add_recv(CLI::App& app, NetCli& cli, bool& quiet) {
  auto& o = cli.recv;
  cli.recv_cmd = app.add_subcommand(
      "recv", "receive transfers from barge send into DST (cp -a placement rules)");
  cli.recv_cmd->add_option("dst", o.destination, "DST")->required();
  cli.recv_cmd->add_option("--listen", o.listen, "ADDR:PORT to listen on ([::]:PORT, 0.0.0.0:PORT)")
      ->required();
  add_common(cli.recv_cmd, o, o.psk_file, cli.progress, quiet);
  cli.recv_cmd->add_flag("--once", o.once, "one transfer, then exit with its exit code");
  cli.recv_cmd->add_option("--max-files", o.max_files, "refuse transfers of more files");
  cli.recv_cmd->add_option("--max-bytes", o.max_bytes, "refuse transfers of more bytes")
      ->transform(size_validator());
  cli.recv_cmd->add_flag("--fsync", o.fsync, "fsync each file before renaming it into place");
  cli.recv_cmd->add_flag("--verify", o.verify,
                         "re-read what was written and compare its checksum with the sender's");
  cli.recv_cmd->add_option(
      "--port-file", o.port_file,
      "write the port listened on to FILE, - for stdout (for --listen ADDR:0)");
  cli.recv_cmd
      ->add_option("--io-timeout", cli.recv_io_timeout_s,
                   "seconds a connection may stay silent or leave data unacknowledged before "
                   "it counts as lost: the session stops, keeping what it committed for a "
                   "resume (default 30)")
      ->check(CLI::Range(1, 3600));
  cli.recv_cmd->add_flag("--psk-stdin", o.psk_stdin,
                         "read the key as hex from stdin's first line, and stop when stdin "
                         "ends (how send starts recv over ssh)");
  add_engine_flags(cli.recv_cmd, o, nullptr);
}

int finish(const pipeline::RunResult& r, const char* verb, const std::string& report, bool quiet) {
  print_summary(r, verb, quiet);
  int rc = write_report(report, pipeline::to_json(r, verb));
  return rc ? std::max(rc, r.exit_code) : r.exit_code;
}

}  // namespace

void add_net_commands(CLI::App& app, NetCli& cli, bool& quiet) {
  add_send(app, cli, quiet);
  add_recv(app, cli, quiet);
}

int run_net_commands(NetCli& cli, transport::Comm& comm, bool quiet) {
  if (!*cli.send_cmd && !*cli.recv_cmd) return -1;
  if (*cli.send_cmd) {
    auto& o = cli.send;
    o.target = cli.send_paths.back();
    o.io_timeout_ms = static_cast<int>(cli.send_io_timeout_s * 1000);
    o.sources.assign(cli.send_paths.begin(), cli.send_paths.end() - 1);
    if (cli.compress == "auto") {
      o.compress_level = 1;
    } else if (cli.compress == "none") {
      o.compress_level = 0;
      o.compress_probe = false;
    } else {
      o.compress_probe = false;
      try {
        size_t used = 0;
        o.compress_level = std::stoi(cli.compress, &used);
        if (used != cli.compress.size() || o.compress_level < 1) throw std::invalid_argument("");
      } catch (const std::exception&) {
        io::log_error("--compress " + cli.compress + ": auto, none or a zstd level 1-19");
        return pipeline::kExitFatal;
      }
    }
    o.progress =
        comm.rank() == 0 ? progress_mode(quiet, cli.progress) : pipeline::ProgressMode::kNone;
    pipeline::RunResult r = pipeline::remote::run_send(o, &comm);
    if (comm.rank() != 0) return r.exit_code;  // rank 0 speaks for the job
    return finish(r, "send", o.report_path, quiet);
  }
  auto& o = cli.recv;
  o.progress =
      comm.rank() == 0 ? progress_mode(quiet, cli.progress) : pipeline::ProgressMode::kNone;
  o.io_timeout_ms = static_cast<int>(cli.recv_io_timeout_s * 1000);
  pipeline::RunResult r = pipeline::remote::run_recv(o, &comm);
  if (comm.rank() != 0) return r.exit_code;  // rank 0 speaks for the job
  return finish(std::move(r), "recv", o.report_path, quiet);
}

}  // namespace barge::tools
