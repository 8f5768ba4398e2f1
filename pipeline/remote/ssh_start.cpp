#include "pipeline/remote/ssh_start.hpp"

#include <algorithm>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <chrono>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "pipeline/remote/protocol.hpp"

extern char** environ;

namespace barge::pipeline::remote {

namespace {

// One word for a POSIX shell (ssh hands the remote command to the login shell).
std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (c == '\'')
      out += "'\\''";
    else
      out.push_back(c);
  }
  return out + "'";
}

std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

// The first line the child prints, within `timeout_ms`; "" when it ends first.
std::string read_line(int fd, int timeout_ms) {
  std::string line;
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (line.find('\n') == std::string::npos) {
    int left = static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                    until - std::chrono::steady_clock::now())
                                    .count());
    pollfd p{fd, POLLIN, 0};
    if (left <= 0 || ::poll(&p, 1, left) <= 0) return "";
    char buf[256];
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) return "";
    line.append(buf, static_cast<size_t>(n));
  }
  return line.substr(0, line.find('\n'));
}

}  // namespace

std::optional<SshTarget> parse_ssh_target(const std::string& target) {
  SshTarget t;
  size_t colon;
  std::string hostpart;
  size_t at = target.find('@');
  size_t host_begin = at == std::string::npos ? 0 : at + 1;
  if (target.compare(host_begin, 1, "[") == 0) {
    size_t close = target.find("]:", host_begin);
    if (close == std::string::npos) return std::nullopt;
    t.host = target.substr(host_begin + 1, close - host_begin - 1);
    colon = close + 1;
  } else {
    colon = target.find(':', host_begin);
    if (colon == std::string::npos) return std::nullopt;
    t.host = target.substr(host_begin, colon - host_begin);
  }
  t.path = target.substr(colon + 1);
  if (t.host.empty() || t.path.empty()) return std::nullopt;
  if (std::all_of(t.path.begin(), t.path.end(), [](char c) { return std::isdigit(c) != 0; }))
    return std::nullopt;  // HOST:PORT
  t.login = target.substr(0, host_begin) + t.host;
  return t;
}

io::Result<RemoteRecv> start_remote_recv(const SshTarget& t, const SshStart& how,
                                         const std::string& key) {
  std::vector<std::string> argv = split_words(how.rsh);
  if (argv.empty()) return io::Error::plain("--rsh: empty command");
  std::string remote =
      shell_quote(how.barge_path) + " recv --once --listen 0.0.0.0:0 --psk-stdin --port-file - -q";
  if (how.plaintext) remote += " --insecure-no-encryption";
  remote += " -- " + shell_quote(t.path);
  argv.push_back(t.login);
  argv.push_back(remote);
  int in[2], out[2];
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0)
    return io::Error::from_errno(errno, "pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  std::vector<char*> cargv;
  for (std::string& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  RemoteRecv r;
  int rc = ::posix_spawnp(&r.pid, cargv[0], &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  r.to_child.reset(in[1]);
  r.from_child.reset(out[0]);
  if (rc != 0) return io::Error::from_errno(rc, "--rsh " + argv[0]);
  std::string line = to_hex(key) + "\n";
  if (::write(r.to_child.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    return io::Error::plain(t.login + ": the remote barge recv did not start (" + argv[0] +
                            " failed)");
  std::string port = read_line(r.from_child.get(), how.timeout_ms);
  char* end = nullptr;
  unsigned long p = std::strtoul(port.c_str(), &end, 10);
  if (port.empty() || *end != '\0' || p == 0 || p > 65535) {
    int code = finish_remote_recv(r, 2000);
    return io::Error::plain(t.login + ": the remote barge recv did not start (exit " +
                            std::to_string(code) + "; is " + how.barge_path +
                            " installed there? --barge-path names it)");
  }
  r.port = static_cast<uint16_t>(p);
  return r;
}

int finish_remote_recv(RemoteRecv& r, int timeout_ms) {
  r.to_child.reset();
  if (r.pid <= 0) return -1;
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  int status = 0;
  for (;;) {
    pid_t got = ::waitpid(r.pid, &status, WNOHANG);
    if (got == r.pid) break;
    if (got < 0) return -1;
    if (std::chrono::steady_clock::now() > until) {
      ::kill(r.pid, SIGTERM);
      ::waitpid(r.pid, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  r.pid = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

}  // namespace barge::pipeline::remote
