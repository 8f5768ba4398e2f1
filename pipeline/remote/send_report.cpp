// barge send's end: the report (the receiver's, with what this side saw, across ranks
// merged on rank 0) and the retry loop around each attempt.
#include <algorithm>
#include <chrono>
#include <thread>

#include "io/log.hpp"
#include "pipeline/core/wire.hpp"
#include "pipeline/remote/sender.hpp"

namespace barge::pipeline::remote {

RunResult Sender::report() {
  if (remote_) {
    // recv --once ends after its transfer; a stopped transfer ends it with stdin.
    const int code = finish_remote_recv(*remote_, 30000);
    if (!receiver_ && code > 0 && fatal_.empty() && receiver_error_.empty())
      receiver_error_ = "the remote barge recv exited with " + std::to_string(code);
  }
  std::string fatal = fatal_;
  if (fatal.empty() && !receiver_error_.empty()) fatal = "receiver: " + receiver_error_;
  if (fatal.empty() && ctx_) fatal = ctx_->fatal();
  std::vector<std::string> errors;
  if (ctx_) errors = ctx_->errors.take();
  uint64_t sent = stats_.bytes_done.load();
  RunResult shares;
  if (ranked()) {
    merge_ranks(fatal, errors, sent, shares);
    if (!lead()) {
      RunResult r;  // rank 0 speaks for the job; the others return its exit code
      r.exit_code = static_cast<int>(WireReader(comm_->broadcast("", 0)).u32());
      return r;
    }
  }
  RunResult r = receiver_ ? *receiver_ : RunResult{};
  if (!result_.started) {
    r = std::move(result_);
  } else {
    r.started = true;
    r.errors.insert(r.errors.begin(), errors.begin(), errors.end());
    if (fatal.empty()) fatal = r.fatal;
    r.fatal = fatal;
    r.walk_seconds = result_.walk_seconds;
    r.seconds = std::chrono::duration<double>(Clock::now() - t0_).count();
    r.bytes_transferred = sent;
    for (int s = 0; s < kStageCount; ++s)
      r.stage_busy_ns[s] = ranked() ? shares.stage_busy_ns[s] : stats_.stage_busy_ns[s].load();
    if (backends_) r.io_backend = backends_->name();
    r.peak_rss_bytes = std::max(peak_rss_bytes(), shares.peak_rss_bytes);
    r.send_ranks = std::move(shares.ranks);
    r.tune = result_.tune;
    // A transfer stopped by a signal or a lost link can be finished with --resume. A first
    // run whose link was lost before the receiver authenticated it was refused (a TLS peer
    // that rejects our certificate may just reset the connection): nothing to resume.
    r.resumable = !r.fatal.empty() &&
                  ((link_lost() && (authenticated_ || resume_)) || stop_signal().load() != 0);
    if (r.resumable) r.fatal += "; rerun with --resume to finish";
    const int mine = exit_code_for(r.resumable, !r.fatal.empty(), !r.errors.empty());
    r.exit_code = receiver_ ? std::max(mine, r.exit_code) : mine;
    if (!r.fatal.empty()) r.exit_code = r.resumable ? kExitResumable : kExitFatal;
  }
  if (ranked()) {
    WireWriter w;
    w.u32(static_cast<uint32_t>(r.exit_code));
    comm_->broadcast(w.take(), 0);
  }
  return r;
}

// A lost link is retried after 1, 2, 4 ... 30 s, up to --retries times, each retry resuming:
// the receiver keeps what it committed, so only the rest crosses again.
RunResult run_send(const SendOptions& opts, transport::Comm* comm) {
  const bool ranked = comm && comm->size() > 1;
  uint64_t sent = 0;
  std::optional<uint64_t> first_planned;
  bool authenticated = false;
  for (unsigned attempt = 0;; ++attempt) {
    Sender sender(opts, opts.resume || attempt > 0, comm);
    RunResult r = sender.run();
    sent += r.bytes_transferred;
    if (!first_planned) first_planned = sender.planned_bytes();
    authenticated = authenticated || sender.authenticated();
    bool again = r.exit_code == kExitResumable && sender.link_lost() && authenticated &&
                 attempt < opts.retries;
    if (ranked) again = comm->broadcast(again ? "1" : "", 0) == "1";  // rank 0 decides
    if (!again) {
      r.bytes_transferred = sent;
      r.bytes_resent = first_planned && sent > *first_planned ? sent - *first_planned : 0;
      return r;
    }
    const int wait_s = std::min(30, 1 << std::min(attempt, 5u));
    if (!ranked || comm->rank() == 0)
      io::log_warn("send: " + r.fatal.substr(0, r.fatal.find("; rerun")) + "; retry " +
                   std::to_string(attempt + 1) + " of " + std::to_string(opts.retries) + " in " +
                   std::to_string(wait_s) + " s, resuming");
    for (int k = 0; k < wait_s * 10 && stop_signal().load() == 0; ++k)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
}

}  // namespace barge::pipeline::remote
