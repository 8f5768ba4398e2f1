// Comm: the ranks of one barge run and the few collective and point-to-point operations the
// engine needs. Two implementations: SoloComm (one process, no MPI at all, so a plain
// `barge copy` pays no MPI start-up) and MpiComm (under mpirun or srun). Only transport/
// includes mpi.h.
//
// Thread-safety: collectives must be called by one thread per rank, in the same order on
// every rank. send()/recv() may be called from any thread (MPI_THREAD_MULTIPLE).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "transport/launcher.hpp"

namespace barge::transport {

// An element-wise sum over all ranks that a background thread advances without blocking
// (MPI_Iallreduce on a communicator of its own, so it never meets the main thread's
// collectives). Every rank runs the same number of rounds: start(), then test() until true.
class AsyncSum {
 public:
  virtual ~AsyncSum() = default;
  virtual void start(std::span<const uint64_t> values) = 0;
  // True once the round started last is complete; `out` (same length) then holds the sums.
  virtual bool test(std::span<uint64_t> out) = 0;
};

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual bool is_mpi() const = 0;

  virtual void barrier() = 0;
  // Element-wise reductions over all ranks, in place.
  virtual void allreduce_sum(std::span<uint64_t> values) = 0;
  virtual void allreduce_max(std::span<uint64_t> values) = 0;
  virtual void allreduce_min(std::span<uint64_t> values) = 0;
  // Every rank's bytes, indexed by rank.
  virtual std::vector<std::string> allgather(const std::string& mine) = 0;
  // Every rank's bytes on `root` (indexed by rank); other ranks get an empty vector.
  virtual std::vector<std::string> gather(const std::string& mine, int root) = 0;
  // Rank `root`'s bytes on every rank.
  virtual std::string broadcast(const std::string& bytes, int root) = 0;

  // Tagged point-to-point messages (coordinator protocols). recv blocks for a message with
  // `tag` from any rank and reports its source.
  virtual void send(int dest, int tag, const std::string& bytes) = 0;
  virtual std::string recv(int tag, int* source) = 0;
  // Raw bytes without a copy into a string, for bench net: blocking send to `dest`, and a
  // receive of exactly into.size() bytes from `source` with `tag`. Only under MPI (the solo
  // Comm throws std::logic_error: one process has no peer rank).
  virtual void send_bytes(int dest, int tag, std::span<const std::byte> bytes);
  virtual void recv_bytes(int source, int tag, std::span<std::byte> into);

  // Collective: call on the main thread of every rank at the same point. One AsyncSum may
  // be in use at a time; the result must not outlive the Comm.
  virtual std::unique_ptr<AsyncSum> make_async_sum() = 0;

  // Ends every rank of the job now with `exit_code` (MPI_Abort). The last resort for a rank
  // that cannot reach the next agreement (an exception that escaped its phase): returning
  // from main instead would leave the other ranks waiting in a collective forever.
  [[noreturn]] virtual void abort_job(int exit_code) = 0;

  // The agreement that ends every phase: true on every rank iff `ok` on every rank.
  bool agree(bool ok) {
    uint64_t v = ok ? 1 : 0;
    allreduce_min(std::span<uint64_t>(&v, 1));
    return v == 1;
  }
  uint64_t sum(uint64_t v) {
    allreduce_sum(std::span<uint64_t>(&v, 1));
    return v;
  }
};

// MPI when the process was started by mpirun/srun (detect_launcher), SoloComm otherwise.
// Throws std::runtime_error when MPI initialisation fails.
std::unique_ptr<Comm> make_comm(int* argc, char*** argv);
std::unique_ptr<Comm> make_solo_comm();

}  // namespace barge::transport
