// barge send / barge recv: a copy between hosts that share no file system, over TLS 1.3
// streams (docs/PROTOCOL.md). The sender walks and reads (read → hash → compress → network);
// the receiver places the sources in DST by copy's rules and writes (network →
// decompress+check → write → commit), with copy's create, hard-link and metadata phases.
#pragma once

#include <string>
#include <vector>

#include "pipeline/core/stats.hpp"
#include "pipeline/engine/copy_options.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline::remote {

// sources, the engine's options, --report, --progress and --exclude/--include are copy's;
// destination is unused (the receiver has it).
struct SendOptions : CopyOptions {
  std::string target;    // HOST:PORT, or [user@]host:PATH (started over ssh)
  std::string psk_file;  // --psk-file (HOST:PORT only; over ssh a fresh key is made)
  std::string cert_file, key_file, ca_file;  // --cert/--key/--ca instead of a PSK
  std::string rsh = "ssh";                   // --rsh CMD
  std::string barge_path = "barge";          // --barge-path: barge on the remote host (ssh)
  unsigned streams = 8;                      // data streams (TCP connections)
  int compress_level = 1;      // zstd level for --compress auto|LEVEL; 0: --compress none
  bool compress_probe = true;  // auto: a chunk whose first 64 KiB do not compress goes raw
  std::string congestion;      // --congestion: TCP_CONGESTION per socket
  uint64_t bwlimit_bytes = 0;  // --bwlimit: bytes per second over all streams (0: none)
  int connect_timeout_ms = 10000;
  int io_timeout_ms = 30000;  // --io-timeout: a link silent this long is lost
  // --insecure-no-encryption: no TLS, the data in the clear, every record still
  // authenticated with a key from the PSK (or ssh's fresh key); both ends must say so.
  bool plaintext = false;
  // A lost link (or a busy receiver) is retried this many times, after 1, 2, 4 ... 30 s; the
  // retry resumes (--retries).
  unsigned retries = 5;
  // resume (copy's --resume): the receiver keeps what it already holds (files in place,
  // journaled chunks of large files) and only the rest is sent.
  // --sync: DST becomes a mirror of the one source directory's contents (as barge sync;
  // only what differs is sent); --delete, --checksum as sync's.
  bool sync = false;
  bool delete_extra = false;
  bool checksum = false;
};

struct RecvOptions : CopyOptions {  // destination, the engine's options, --report
  std::string listen;               // ADDR:PORT
  std::string psk_file;
  std::string cert_file, key_file, ca_file;  // --cert/--key/--ca instead of a PSK
  bool psk_stdin = false;  // the key as hex on stdin's first line; stdin's end stops recv (ssh)
  bool once = false;       // one transfer, then exit with its code
  uint64_t max_files = 0;  // refuse a transfer of more files (0: no limit)
  uint64_t max_bytes = 0;  // ... or more bytes
  int handshake_timeout_ms = 10000;
  int io_timeout_ms = 30000;  // --io-timeout
  bool plaintext = false;     // --insecure-no-encryption: only such senders are accepted
  // After listening, the bound port is written here (for --listen HOST:0; "-": stdout).
  std::string port_file;
};

io::Status validate(const SendOptions& opts);
io::Status validate(const RecvOptions& opts);

// The whole transfer; the result merges the receiver's report (files, bytes, its errors)
// with what the sender saw (unreadable files). Exit codes as copy's.
// Under mpirun/srun (`comm` of several ranks) rank 0 walks and holds the control stream,
// every rank opens --streams data streams and reads its share; rank 0's result is the job's.
RunResult run_send(const SendOptions& opts, transport::Comm* comm = nullptr);

// Serves transfers into DST until a stop signal (or, with --once, after one); one at a time:
// a sender arriving during a transfer is told so and may retry. Returns the last transfer's
// result (with --once, the exit code of that transfer).
// Under mpirun/srun (`comm` of several ranks) every rank listens, on PORT + rank, and the
// sender's data streams are spread over them; rank 0 takes the control stream and speaks for
// the job (docs/PROTOCOL.md, "Ranks").
RunResult run_recv(const RecvOptions& opts, transport::Comm* comm = nullptr);

}  // namespace barge::pipeline::remote
