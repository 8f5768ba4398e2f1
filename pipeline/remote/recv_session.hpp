// One transfer into DST on the receiver: placement, the plan, then copy's phases with the
// bytes coming from the data streams (network → decompress+check → write → commit).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "io/buffer_pool.hpp"
#include "pipeline/core/stats.hpp"
#include "pipeline/engine/copy_stages.hpp"
#include "pipeline/remote/protocol.hpp"
#include "pipeline/remote/recv_sync.hpp"
#include "pipeline/remote/remote.hpp"
#include "transport/comm.hpp"
#include "transport/net/frame_stream.hpp"

namespace barge::pipeline {
struct SharedFiles;  // pipeline/dist/dist_internal.hpp
}

namespace barge::pipeline::remote {

// Where a receiver rank listens: its --listen host (a wildcard is resolved toward each
// sender) and port.
struct RankListener {
  std::string host;
  uint16_t port = 0;
};

class RecvSession {
 public:
  // The session of a sender's control stream (rank 0, or the only rank). With `comm` of
  // several ranks, every rank receives data streams of its own (pipeline/remote/recv_ranks.cpp).
  RecvSession(const RecvOptions& opts, std::unique_ptr<transport::FrameStream> control, Hello hello,
              transport::Comm* comm = nullptr, RankListener listener = {})
      : opts_(opts),
        control_(std::move(control)),
        hello_(std::move(hello)),
        comm_(comm),
        listener_(std::move(listener)) {}
  // Ranks > 0: the session rank 0 announced (its plan accepted); nullptr if the announcement
  // does not parse.
  static std::shared_ptr<RecvSession> follow(const RecvOptions& opts, transport::Comm& comm,
                                             std::string_view announcement);
  const std::string& id() const { return hello_.session; }
  // Runs the transfer to its end (the report sent to the sender); never throws.
  RunResult run();
  // Ranks > 0: this rank's part of the session rank 0 runs; never throws.
  RunResult run_follower();
  // A data stream of this session, after its hello; false when it is not wanted (a number
  // out of range, for another rank, or already connected, or the session no longer waits).
  bool add_stream(std::unique_ptr<transport::FrameStream> s, uint32_t number);

 private:
  RecvSession(const RecvOptions& opts, transport::Comm& comm) : opts_(opts), comm_(&comm) {}
  bool ranked() const { return comm_ && comm_->size() > 1; }
  io::Status admit();
  void set_copy_options();
  void size_streams();
  io::Result<std::vector<Root>> place();
  io::Status receive_plan();
  Ready resume_state(CopyContext& ctx, std::vector<uint8_t>& wanted, uint64_t buffer_bytes);
  RunResult copy(RunResult result, std::chrono::steady_clock::time_point t0);
  void transfer(CopyContext& ctx, io::BufferPool& pool, unsigned threads,
                const std::vector<uint8_t>& include);
  // network → decompress+check → write → commit over this rank's streams; `local` maps the
  // plan's file numbers to the context's entries (ranks: shared large files), null: the same.
  void receive(CopyContext& ctx, io::BufferPool& pool, unsigned threads, ChunkLedger& ledger,
               const std::vector<uint32_t>* local);
  bool wait_for_streams();
  void send_error(const std::string& line);
  void send_welcome();
  // recv_ranks.cpp: the session across ranks.
  std::vector<std::string> rank_endpoints();
  std::string announcement() const;
  RunResult copy_ranked(std::chrono::steady_clock::time_point t0);
  void transfer_ranked(CopyContext& ctx, io::BufferPool& pool, unsigned threads,
                       const SharedFiles& shared);
  std::string ready_for_ranks(const SharedFiles& shared, std::vector<uint32_t>& local);
  void check_arrivals(CopyContext& ctx, const ChunkLedger& mine, const std::vector<uint8_t>& wanted,
                      const std::vector<uint32_t>& local, uint64_t buffer_bytes);

  const RecvOptions& opts_;
  std::unique_ptr<transport::FrameStream> control_;  // null on ranks > 0
  Hello hello_;
  transport::Comm* comm_ = nullptr;
  RankListener listener_;
  bool announced_ = false;      // ranks: the others take part (an escaping error ends the job)
  std::vector<uint8_t> flags_;  // ranks, on rank 0: what the copy's phases do with each entry
  Plan plan_;
  std::vector<Hash128> sums_;                       // sync --checksum: the plan's file checksums
  SyncVerdicts verdicts_;                           // sync: what differs
  uint64_t skipped_files_ = 0, skipped_bytes_ = 0;  // resume: what DST held already
  JournalState journal_state_;                      // resume: the journaled chunks
  CopyOptions copy_opts_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool accepting_ = true;
  std::vector<std::unique_ptr<transport::FrameStream>> streams_;  // this rank's, in order
};

// Ranks > 0 of a receiver under mpirun/srun: serves rank 0's announcements (where this rank
// listens for a sender, a session to take part in) until rank 0 says stop. `server` takes
// the data streams; `attach` hands it the running session (null: none).
RunResult follow_rank0(const RecvOptions& opts, transport::Comm& comm, const RankListener& me,
                       const std::function<void(std::shared_ptr<RecvSession>)>& attach);
// Rank 0: tells the other ranks the receiver stops.
void stop_ranks(transport::Comm& comm);
// "HOST:PORT" a sender at `toward` reaches this rank at: the listen host, or for a wildcard
// (0.0.0.0, ::) the local address of the route toward the sender.
std::string rank_endpoint(const RankListener& me, const std::string& toward);

}  // namespace barge::pipeline::remote
