// The receiver's half of the graph: the data streams as its source (a unit per frame) and
// net-receive, which reads a unit frame into the unit's buffers after checking its table.
#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <vector>

#include "io/unique_fd.hpp"
#include "pipeline/engine/copy_stages.hpp"
#include "pipeline/remote/protocol.hpp"
#include "transport/net/frame_stream.hpp"

namespace barge::pipeline::remote {

// Which data stream a unit is read from: `claim` (the graph's serial source) takes a stream
// with bytes waiting, net-receive reads one frame from it and releases it. A stream is read
// by one thread at a time, and every stream with data waiting is claimed, so no stream the
// sender is writing to is left unread.
class StreamClaims {
 public:
  StreamClaims(std::vector<std::unique_ptr<transport::FrameStream>>& streams,
               const std::atomic<bool>& stop);
  // A stream with bytes to read; false once every stream has ended or the run stops.
  bool claim(uint32_t& index);
  void release(uint32_t index, bool ended);
  void abort_all();
  // A data stream broke (transport::LinkLost): the session ends resumable.
  void mark_lost() { lost_ = true; }
  bool lost() const { return lost_.load(); }

 private:
  enum : uint8_t { kFree, kClaimed, kEnded };
  std::vector<std::unique_ptr<transport::FrameStream>>& streams_;
  const std::atomic<bool>& stop_;
  std::mutex mu_;
  std::vector<uint8_t> state_;
  io::UniqueFd released_;  // eventfd: a stream came back, claim looks again at once
  std::atomic<bool> lost_{false};
};

class NetReceiveStage {
 public:
  NetReceiveStage(CopyContext& ctx, StreamClaims& claims,
                  std::vector<std::unique_ptr<transport::FrameStream>>& streams,
                  ChunkLedger& ledger, const std::vector<uint32_t>* local = nullptr)
      : ctx_(ctx), claims_(claims), streams_(streams), ledger_(ledger), local_(local) {}
  void operator()(WorkUnit& u) const;
  // The largest unit frame a sender may send with these buffers.
  static uint32_t max_frame(uint64_t buffer_bytes) {
    return static_cast<uint32_t>(4 + kMaxTableBytes + 2 * buffer_bytes);
  }
  static constexpr uint32_t kMaxTableBytes = 1u << 20;

 private:
  void read_unit(transport::FrameStream& s, uint32_t payload_bytes, WorkUnit& u) const;
  CopyContext& ctx_;
  StreamClaims& claims_;
  std::vector<std::unique_ptr<transport::FrameStream>>& streams_;
  ChunkLedger& ledger_;
  const std::vector<uint32_t>* local_;  // the plan's file number → the context's entry
};

}  // namespace barge::pipeline::remote
