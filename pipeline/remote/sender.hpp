// One attempt of barge send (pipeline/remote/send.cpp; across ranks, send_ranks.cpp): the
// walk, hello/plan/ready on the control stream, the data streams, read → hash → compress →
// net-send, and the receiver's report. Internal to pipeline/remote.
#pragma once

#include <oneapi/tbb/global_control.h>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/engine/graph.hpp"
#include "pipeline/engine/level_tuner.hpp"
#include "pipeline/remote/protocol.hpp"
#include "pipeline/remote/remote.hpp"
#include "pipeline/remote/send_stages.hpp"
#include "pipeline/remote/ssh_start.hpp"
#include "pipeline/remote/streams.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline::remote {

class Sender {
 public:
  // resume: the hello asks the receiver to keep what it holds (--resume, or a retry). `comm`
  // of several ranks: rank 0 walks and holds the control stream; every rank opens its own
  // data streams and reads its share of the units.
  Sender(const SendOptions& opts, bool resume, transport::Comm* comm)
      : opts_(opts), resume_(resume), comm_(comm), t0_(Clock::now()) {}

  RunResult run();

  // What the retry loop needs: the receiver accepted the key (a retry can authenticate),
  // the run failed on the network and not by the receiver's word, and what this run meant
  // to send.
  bool authenticated() const { return authenticated_; }
  bool link_lost() const {
    return (net_failure_ || streams_.lost()) && !refused_ && stop_signal().load() == 0;
  }
  std::optional<uint64_t> planned_bytes() const { return planned_; }

 private:
  bool ranked() const { return comm_ && comm_->size() > 1; }
  bool lead() const { return !comm_ || comm_->rank() == 0; }
  uint32_t rank() const { return comm_ ? static_cast<uint32_t>(comm_->rank()) : 0; }
  uint32_t ranks() const { return comm_ ? static_cast<uint32_t>(comm_->size()) : 1; }
  bool prepare();
  bool refuse(std::string why);
  void set_threads();
  void fail(const std::string& why);
  void refused(const std::string& line);
  void handshake();
  void open_data_streams();
  ConnectOptions data_connect(uint32_t k) const;
  void hash_sources();
  void read_source_xattrs();
  void skip_done_chunks(uint64_t buffer_bytes);
  void transfer();
  std::unique_ptr<LevelTuner> make_tuner();
  static void count_for_tuner(const WorkUnit& u, LevelTuner& tuner);
  void run_with_progress(Assembly& a, io::BufferPool& pool);
  void count_planned(uint64_t buffer_bytes);
  void finish_streams();
  RunResult report();
  io::Status place_target();
  bool stopping();
  void count_sent(const WorkUnit& u);
  void read_control();
  void wait_for_reader(std::thread& reader);
  // send_ranks.cpp
  bool share_session(bool ready);
  std::string session_blob() const;
  void take_session(const std::string& blob);
  bool streams_agreed();
  void merge_ranks(std::string& fatal, std::vector<std::string>& errors, uint64_t& sent,
                   RunResult& shares);

  const SendOptions& opts_;
  const bool resume_;
  transport::Comm* comm_;
  Clock::time_point t0_;
  double busy_seconds_ = 0;  // in the transfer graph
  RunResult result_;
  std::string fatal_;
  ConnectOptions connect_;
  std::vector<RemoteSource> sources_;
  unsigned threads_ = 1;
  std::optional<tbb::global_control> gc_;
  Plan plan_;
  std::vector<Hash128> sums_;  // --checksum
  Hello hello_;
  std::vector<transport::Endpoint> endpoints_;  // the receiver's ranks (welcome)
  std::unique_ptr<FrameStream> control_;
  StreamSet streams_;
  std::vector<uint8_t> include_;
  std::unordered_map<uint32_t, std::unordered_set<uint32_t>> done_chunks_;  // resume
  std::optional<uint64_t> planned_;
  bool authenticated_ = false, net_failure_ = false, refused_ = false;
  LiveStats stats_;
  std::unique_ptr<BackendSet> backends_;
  std::unique_ptr<CopyContext> ctx_;
  CopyOptions copy_opts_;
  std::optional<RemoteRecv> remote_;  // over ssh: the remote barge recv
  std::optional<RunResult> receiver_;
  std::string receiver_error_;
  std::mutex reader_mu_;
  std::condition_variable reader_cv_;
  bool reader_done_ = false;
};

}  // namespace barge::pipeline::remote
