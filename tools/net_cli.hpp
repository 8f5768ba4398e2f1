// The site-to-site commands of the CLI: send and recv (pipeline/remote).
#pragma once

#include <CLI/CLI.hpp>
#include <string>
#include <vector>

#include "pipeline/remote/remote.hpp"
#include "transport/comm.hpp"

namespace barge::tools {

struct NetCli {
  pipeline::remote::SendOptions send;
  pipeline::remote::RecvOptions recv;
  std::vector<std::string> send_paths;
  std::string compress = "auto";
  std::string progress = "auto";
  double send_io_timeout_s = 30, recv_io_timeout_s = 30;  // --io-timeout
  CLI::App* send_cmd = nullptr;
  CLI::App* recv_cmd = nullptr;
};

void add_net_commands(CLI::App& app, NetCli& cli, bool& quiet);
// -1 when neither command was chosen; otherwise the exit code.
int run_net_commands(NetCli& cli, transport::Comm& comm, bool quiet);

}  // namespace barge::tools
