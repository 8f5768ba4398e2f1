// send's ssh start-up (`barge send SRC... [user@]host:PATH`): ssh runs `barge recv --once`
// on the remote host, a fresh random key goes to it over the ssh channel (its stdin), it
// answers with the port it listens on (its stdout), and the data then moves over barge's
// own TLS streams straight to that port, not through ssh (as bbcp and mscp do).
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "io/result.hpp"
#include "io/unique_fd.hpp"

namespace barge::pipeline::remote {

struct SshTarget {
  std::string login;  // "user@host" or "host", as ssh takes it
  std::string host;   // where the streams connect
  std::string path;   // DST on the remote host
};

// "[user@]host:PATH" → its parts; nullopt for "HOST:PORT" (all digits after the colon) or a
// target without a colon. "[v6]:PATH" works as with scp.
std::optional<SshTarget> parse_ssh_target(const std::string& target);

struct RemoteRecv {
  pid_t pid = -1;
  io::UniqueFd to_child;    // its stdin: the key, then held open (EOF stops it)
  io::UniqueFd from_child;  // its stdout: the port line
  uint16_t port = 0;
};

struct SshStart {
  std::string rsh = "ssh";           // --rsh: split at spaces, as rsync does
  std::string barge_path = "barge";  // --barge-path: barge on the remote host
  int timeout_ms = 30000;
  bool plaintext = false;  // --insecure-no-encryption on both ends
};

// Starts the remote receiver and reads its port. The key's bytes go over as hex.
io::Result<RemoteRecv> start_remote_recv(const SshTarget& t, const SshStart& how,
                                         const std::string& key);
// Ends the ssh session (stdin closed) and waits for it (killed after `timeout_ms`); the
// remote command's exit code, or -1.
int finish_remote_recv(RemoteRecv& r, int timeout_ms);

}  // namespace barge::pipeline::remote
