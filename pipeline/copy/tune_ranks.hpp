// copy --tune across ranks (pipeline/copy/tune.cpp): every rank runs the same probe at once
// and sees the same figures. Internal to pipeline/copy.
#pragma once

#include <functional>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>

#include "pipeline/core/stats.hpp"
#include "pipeline/core/wire.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline::tune_detail {

using Runner = std::function<std::optional<TuneProbe>(const TuneSetting&)>;

// The ranks' side of the probe; in one process everything is local.
class Ranks {
 public:
  explicit Ranks(transport::Comm* c) : comm_(c && c->size() > 1 ? c : nullptr) {}
  int size() const { return comm_ ? comm_->size() : 1; }
  uint64_t sum(uint64_t v) {
    if (comm_) comm_->allreduce_sum(std::span<uint64_t>(&v, 1));
    return v;
  }
  bool any(bool b) {
    uint64_t v = b ? 1 : 0;
    if (comm_) comm_->allreduce_max(std::span<uint64_t>(&v, 1));
    return v != 0;
  }
  // Every rank's run of the same setting, at the same time: bytes and files summed over the
  // slowest rank's time. A failure on any rank throws on every rank.
  std::optional<TuneProbe> combine(const Runner& local, const TuneSetting& s) {
    std::optional<TuneProbe> mine;
    std::string error;
    try {
      mine = local(s);
    } catch (const std::exception& e) {
      error = *e.what() ? e.what() : "probe failed";
    }
    if (!comm_) {
      if (!error.empty()) throw std::runtime_error(error);
      return mine;
    }
    if (any(!error.empty()))
      throw std::runtime_error(error.empty() ? "a probe failed on another rank" : error);
    uint64_t v[3] = {mine ? 1u : 0u, mine ? mine->bytes : 0, mine ? mine->files : 0};
    comm_->allreduce_sum(v);
    uint64_t ns = mine ? static_cast<uint64_t>(mine->seconds * 1e9) : 0;
    comm_->allreduce_max(std::span<uint64_t>(&ns, 1));
    if (v[0] == 0) return std::nullopt;
    TuneProbe p;
    p.setting = s;
    p.change = mine ? mine->change : "";
    p.bytes = v[1];
    p.files = v[2];
    p.seconds = static_cast<double>(ns) / 1e9;
    return p;
  }
  // Rank 0's choice, on every rank.
  TuneSetting from_rank0(TuneSetting s) {
    if (!comm_) return s;
    WireWriter w;
    w.u64(s.chunk_bytes);
    w.u32(s.queue_depth);
    w.u32(s.threads);
    w.u8(s.direct ? 1 : 0);
    const std::string blob = comm_->broadcast(comm_->rank() == 0 ? w.take() : std::string(), 0);
    WireReader r(blob);
    s.chunk_bytes = r.u64();
    s.queue_depth = r.u32();
    s.threads = r.u32();
    s.direct = r.u8() != 0;
    return s;
  }

 private:
  transport::Comm* comm_;
};

}  // namespace barge::pipeline::tune_detail
