// One transfer into DST on the receiver: placement, the plan, then copy's phases with the
// bytes coming from the data streams (network → decompress+check → write → commit).
#pragma once

#include <chrono>
#include <condition_variable>
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
#include "transport/net/frame_stream.hpp"

namespace barge::pipeline::remote {

class RecvSession {
 public:
  RecvSession(const RecvOptions& opts, std::unique_ptr<transport::FrameStream> control, Hello hello)
      : opts_(opts), control_(std::move(control)), hello_(std::move(hello)) {}
  const std::string& id() const { return hello_.session; }
  // Runs the transfer to its end (the report sent to the sender); never throws.
  RunResult run();
  // A data stream of this session, after its hello; false when it is not wanted (a number
  // out of range or already connected, or the session no longer waits for streams).
  bool add_stream(std::unique_ptr<transport::FrameStream> s, uint32_t number);

 private:
  io::Status admit();
  io::Result<std::vector<Root>> place();
  io::Status receive_plan();
  Ready resume_state(CopyContext& ctx, std::vector<uint8_t>& wanted, uint64_t buffer_bytes);
  RunResult copy(RunResult result, std::chrono::steady_clock::time_point t0);
  void transfer(CopyContext& ctx, io::BufferPool& pool, unsigned threads,
                const std::vector<uint8_t>& include);
  bool wait_for_streams();
  void send_error(const std::string& line);

  const RecvOptions& opts_;
  std::unique_ptr<transport::FrameStream> control_;
  Hello hello_;
  Plan plan_;
  std::vector<Hash128> sums_;                       // sync --checksum: the plan's file checksums
  SyncVerdicts verdicts_;                           // sync: what differs
  uint64_t skipped_files_ = 0, skipped_bytes_ = 0;  // resume: what DST held already
  JournalState journal_state_;                      // resume: the journaled chunks
  CopyOptions copy_opts_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool accepting_ = true;
  std::vector<std::unique_ptr<transport::FrameStream>> streams_;  // index = number - 1
};

}  // namespace barge::pipeline::remote
