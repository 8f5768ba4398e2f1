// barge bench net across ranks: for each transport and stream count, the streams are set up
// (receivers listen and publish, senders connect, both ends handshake), every rank agrees,
// the timed transfer runs, and rank 0 merges what the receivers measured.
#include <openssl/rand.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <random>
#include <stdexcept>
#include <thread>

#include "io/host_name.hpp"
#include "pipeline/bench/figures.hpp"
#include "pipeline/bench/net.hpp"
#include "pipeline/bench/net_links.hpp"
#include "pipeline/core/stats.hpp"

namespace barge::pipeline::bench {
namespace {

using Clock = std::chrono::steady_clock;
using detail::Link;

constexpr int kTagBase = 0x4e00;              // MPI tags of the streams: kTagBase + stream
constexpr uint32_t kBlockMagic = 0x4b4c4242;  // "BBLK"
constexpr uint32_t kLastBlock = 1;

// What one receiving stream measured.
struct StreamFigures {
  Figures whole;
  std::vector<Figures> intervals;
  std::map<std::string, uint64_t> errors;
};

// The first error of any thread of this rank.
class FirstError {
 public:
  void set(const std::string& e) {
    std::lock_guard lock(mu_);
    if (first_.empty()) first_ = e;
  }
  std::string get() {
    std::lock_guard lock(mu_);
    return first_;
  }

 private:
  std::mutex mu_;
  std::string first_;
};

// Runs fn(i) on n threads and waits for all; an exception becomes the rank's error.
void on_threads(unsigned n, FirstError& err, const std::function<void(unsigned)>& fn) {
  std::vector<std::thread> threads;
  for (unsigned i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      try {
        fn(i);
      } catch (const std::exception& e) {
        err.set(e.what());
      }
    });
  for (auto& t : threads) t.join();
}

struct Header {
  uint32_t magic;
  uint32_t flags;
  uint64_t seq;
};

void send_stream(Link& link, std::vector<std::byte>& block, Clock::time_point deadline,
                 uint64_t blocks) {
  for (uint64_t seq = 0;; ++seq) {
    bool last = seq >= blocks || Clock::now() >= deadline;
    Header h{kBlockMagic, last ? kLastBlock : 0, seq};
    std::memcpy(block.data(), &h, sizeof h);
    link.send(block);
    if (last) return;
  }
}

// `mu` guards `out` against the live rounds reading it (one lock per block).
void receive_stream(Link& link, size_t block_bytes, Clock::time_point start, double interval_s,
                    std::mutex& mu, StreamFigures& out) {
  std::vector<std::byte> block(block_bytes);
  const auto interval = std::chrono::duration<double>(interval_s);
  for (uint64_t expected = 0;;) {
    auto t0 = Clock::now();
    link.recv(block);
    auto t1 = Clock::now();
    Header h;
    std::memcpy(&h, block.data(), sizeof h);
    std::lock_guard lock(mu);
    if (h.magic != kBlockMagic) {  // counted; a TCP stream out of step ends at its close
      ++out.errors["bad block"];
      continue;
    }
    if (h.flags & kLastBlock) return;
    if (h.seq != expected) ++out.errors["out of order"];
    expected = h.seq + 1;
    auto ns = static_cast<uint64_t>(std::chrono::nanoseconds(t1 - t0).count());
    auto index = static_cast<size_t>((t1 - start) / interval);
    if (out.intervals.size() <= index) out.intervals.resize(index + 1);
    for (Figures* f : {&out.whole, &out.intervals[index]}) {
      f->bytes += block_bytes;
      ++f->ops;
      f->latency.record(ns);
    }
    out.whole.seconds = std::chrono::duration<double>(t1 - start).count();
  }
}

// Sender: round trips of a small message, each timed. Receiver: echoes until the last.
void ping_sender(Link& link, const NetBenchOptions& o, LatencyHistogram& rtt) {
  std::vector<std::byte> msg(o.ping_bytes, std::byte{1});
  auto stop = Clock::now() + std::chrono::seconds(2);
  for (unsigned i = 0; i < o.ping_count && Clock::now() < stop; ++i) {
    auto t0 = Clock::now();
    link.send(msg);
    link.recv(msg);
    rtt.record(static_cast<uint64_t>(std::chrono::nanoseconds(Clock::now() - t0).count()));
  }
  msg[0] = std::byte{0};
  link.send(msg);
}

void ping_echo(Link& link, const NetBenchOptions& o) {
  std::vector<std::byte> msg(o.ping_bytes);
  for (;;) {
    link.recv(msg);
    if (msg[0] == std::byte{0}) return;
    link.send(msg);
  }
}

class NetRunner {
 public:
  NetRunner(const NetBenchOptions& o, transport::Comm& comm) : o_(o), comm_(comm) {
    int n = comm.size();
    solo_ = n == 1;
    half_ = solo_ ? 1 : n / 2;
    sender_ = solo_ || comm.rank() < half_;
    receiver_ = solo_ || comm.rank() >= half_;
    peer_ = solo_ ? 0 : (sender_ ? comm.rank() + half_ : comm.rank() - half_);
    // The streams' key, made for this run only (the bench moves no user data).
    std::string key(32, '\0');
    if (comm.rank() == 0 &&
        RAND_bytes(reinterpret_cast<unsigned char*>(key.data()), static_cast<int>(key.size())) != 1)
      for (auto& c : key) c = static_cast<char>(std::random_device{}());
    key_ = comm.broadcast(key, 0);
    block_.resize(o.block_bytes);
    std::mt19937_64 rng(0x9e3779b97f4a7c15ull ^ static_cast<uint64_t>(comm.rank()));
    for (size_t i = 0; i + 8 <= block_.size(); i += 8) {
      uint64_t v = rng();
      std::memcpy(block_.data() + i, &v, 8);
    }
  }

  int pairs() const { return half_; }
  NetRun run(const std::string& transport, unsigned streams);
  NetPing ping(const std::string& transport);

 private:
  struct Links {
    std::vector<std::unique_ptr<Link>> out, in;  // this rank's sending and receiving ends
  };
  Links open(const std::string& transport, unsigned streams);
  void agree_or_throw(const std::string& error, const std::string& what);
  std::string rank_summary(const std::vector<StreamFigures>& got, double cpu);
  void merge(const std::vector<std::string>& all, NetRun& out);
  void live_rounds(Clock::time_point start, const std::vector<StreamFigures>& got, std::mutex& mu,
                   const std::atomic<bool>& done, const std::string& label);

  const NetBenchOptions& o_;
  transport::Comm& comm_;
  bool solo_ = true, sender_ = true, receiver_ = true;
  int half_ = 1, peer_ = 0;
  uint32_t run_id_ = 0;
  std::string key_;
  std::vector<std::byte> block_;
};

// Every rank: true, or every rank throws with the first failing rank's error.
void NetRunner::agree_or_throw(const std::string& error, const std::string& what) {
  if (comm_.agree(error.empty())) return;
  std::vector<std::string> all = comm_.allgather(error);
  for (size_t rank = 0; rank < all.size(); ++rank)
    if (!all[rank].empty())
      throw std::runtime_error(what + ": rank " + std::to_string(rank) + ": " + all[rank]);
  throw std::runtime_error(what + " failed");
}

NetRunner::Links NetRunner::open(const std::string& transport, unsigned streams) {
  Links links;
  links.out.resize(sender_ ? streams : 0);
  links.in.resize(receiver_ ? streams : 0);
  ++run_id_;
  FirstError err;
  if (transport == "mpi") {
    for (unsigned i = 0; i < links.out.size(); ++i)
      links.out[i] = detail::mpi_link(comm_, peer_, kTagBase + static_cast<int>(i));
    for (unsigned i = 0; i < links.in.size(); ++i)
      links.in[i] = detail::mpi_link(comm_, peer_, kTagBase + static_cast<int>(i));
    return links;
  }
  std::optional<detail::Listener> listener;
  if (receiver_) {
    auto l = detail::listen_for_streams(o_.net);
    if (l) listener = std::move(*l);
    if (!l) err.set(l.error().message);
  }
  agree_or_throw(err.get(), "bench net: listen");
  std::vector<std::string> where = comm_.allgather(listener ? listener->info.encode() : "");
  detail::StreamSetup setup{transport, key_, static_cast<uint32_t>(sender_ ? comm_.rank() : peer_),
                            run_id_, o_.timeout_ms};
  // The sending and the receiving ends of every stream at once (both are here when solo).
  on_threads(static_cast<unsigned>(links.out.size() + links.in.size()), err, [&](unsigned i) {
    if (i < links.out.size()) {
      links.out[i] = detail::connect_stream(
          detail::ListenInfo::decode(where[static_cast<size_t>(peer_)]), setup);
    } else {
      links.in[i - links.out.size()] = detail::accept_stream(listener->fd.get(), setup);
    }
  });
  agree_or_throw(err.get(), "bench net: " + transport + " streams");
  return links;
}

std::string NetRunner::rank_summary(const std::vector<StreamFigures>& got, double cpu) {
  WireWriter w;
  w.str(io::host_name());
  w.u8(receiver_ ? 1 : 0);
  Figures whole;
  std::vector<Figures> intervals;
  std::map<std::string, uint64_t> errors;
  for (const auto& s : got) {
    detail::add(whole, s.whole);
    if (intervals.size() < s.intervals.size()) intervals.resize(s.intervals.size());
    for (size_t i = 0; i < s.intervals.size(); ++i) detail::add(intervals[i], s.intervals[i]);
    for (const auto& [k, n] : s.errors) errors[k] += n;
  }
  detail::write_figures(w, whole);
  w.u32(static_cast<uint32_t>(intervals.size()));
  for (const auto& f : intervals) detail::write_figures(w, f);
  w.u32(static_cast<uint32_t>(errors.size()));
  for (const auto& [k, n] : errors) {
    w.str(k);
    w.u64(n);
  }
  w.i64(static_cast<int64_t>(cpu * 1e9));
  return w.take();
}

void NetRunner::merge(const std::vector<std::string>& all, NetRun& out) {
  for (size_t rank = 0; rank < all.size(); ++rank) {
    WireReader r(all[rank]);
    RankFigures rf;
    rf.rank = static_cast<int>(rank);
    rf.host = r.str();
    bool receiving = r.u8() != 0;
    rf.whole = detail::read_figures(r);
    uint32_t n = r.u32();
    if (out.intervals.size() < n) out.intervals.resize(n);
    for (size_t i = 0; i < n; ++i) detail::add(out.intervals[i], detail::read_figures(r));
    for (uint32_t k = r.u32(); k > 0; --k) {
      std::string kind = r.str();
      out.errors[kind] += r.u64();
    }
    out.cpu_seconds += static_cast<double>(r.i64()) / 1e9;
    if (!receiving) continue;
    detail::add(out.whole, rf.whole);
    out.pairs.push_back(rf);
  }
  for (size_t i = 0; i < out.intervals.size(); ++i) {
    double start = o_.interval_s * static_cast<double>(i);
    out.intervals[i].seconds = std::min(o_.interval_s, std::max(1e-9, out.whole.seconds - start));
  }
}

// --interval while the transfer runs: at each boundary every rank hands rank 0 what its
// receivers measured in that interval (not cumulative), and rank 0 prints the merged line.
// The rounds go on while any rank is transferring; a rank whose transfer just ended goes to
// its round at once, and a finished one sleeps to the boundary rather than spin in MPI.
void NetRunner::live_rounds(Clock::time_point start, const std::vector<StreamFigures>& got,
                            std::mutex& mu, const std::atomic<bool>& done,
                            const std::string& label) {
  const auto interval =
      std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o_.interval_s));
  const auto grace = std::chrono::milliseconds(20);  // lets the receivers file the interval
  bool was_done = false;
  for (uint64_t index = 0;; ++index) {
    const auto due = start + interval * static_cast<Clock::rep>(index + 1) + grace;
    while (Clock::now() < due && !(done && !was_done))
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    was_done = done;
    WireWriter w;
    w.u8(was_done ? 0 : 1);
    Figures mine;
    {
      std::lock_guard lock(mu);
      for (const auto& s : got)
        if (index < s.intervals.size()) detail::add(mine, s.intervals[index]);
    }
    detail::write_figures(w, mine);
    std::vector<std::string> all = comm_.gather(w.take(), 0);
    WireWriter decision;
    if (comm_.rank() == 0) {
      uint8_t busy = 0;
      Figures merged;
      for (const auto& part : all) {
        WireReader r(part);
        busy |= r.u8();
        detail::add(merged, detail::read_figures(r));
      }
      double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
      merged.seconds =
          std::clamp(elapsed - o_.interval_s * static_cast<double>(index), 1e-9, o_.interval_s);
      if (merged.ops)
        std::fprintf(stderr, "bench net: %s %s\n", label.c_str(),
                     detail::interval_text(index, o_.interval_s, merged).c_str());
      decision.u8(busy);
    }
    std::string decided = comm_.broadcast(decision.take(), 0);
    if (WireReader(decided).u8() == 0) return;
  }
}

NetRun NetRunner::run(const std::string& transport, unsigned streams) {
  Links links = open(transport, streams);
  std::vector<StreamFigures> got(links.in.size());
  FirstError err;
  comm_.barrier();
  const auto start = Clock::now();
  const double cpu0 = process_cpu_seconds();
  const auto deadline = o_.size_bytes ? Clock::time_point::max()
                                      : start + std::chrono::duration_cast<Clock::duration>(
                                                    std::chrono::duration<double>(o_.runtime_s));
  const uint64_t blocks =
      o_.size_bytes ? (o_.size_bytes / o_.block_bytes + streams - 1) / streams : UINT64_MAX;
  std::mutex figures_mu;
  std::atomic<bool> done{false};
  auto transfer = [&] {
    on_threads(static_cast<unsigned>(links.out.size() + links.in.size()), err, [&](unsigned i) {
      Link& link = i < links.out.size() ? *links.out[i] : *links.in[i - links.out.size()];
      try {
        if (i < links.out.size()) {
          std::vector<std::byte> block = block_;
          send_stream(link, block, deadline, blocks);
        } else {
          receive_stream(link, o_.block_bytes, start, o_.interval_s, figures_mu,
                         got[i - links.out.size()]);
        }
      } catch (...) {
        link.abort();  // the other end must not wait for this one
        throw;
      }
    });
    done = true;
  };
  if (o_.print_intervals && !o_.quiet) {
    std::thread t(transfer);
    live_rounds(start, got, figures_mu, done, transport + " x" + std::to_string(streams));
    t.join();
  } else {
    transfer();
  }
  const double cpu = process_cpu_seconds() - cpu0;
  agree_or_throw(err.get(), "bench net: " + transport + " with " + std::to_string(streams) +
                                (streams == 1 ? " stream" : " streams"));
  std::vector<std::string> all = comm_.gather(rank_summary(got, cpu), 0);
  NetRun out;
  out.transport = transport;
  out.streams = streams;
  if (comm_.rank() != 0) return out;
  try {
    merge(all, out);
  } catch (const std::exception& e) {  // a rank's summary is malformed: the others go on
    std::fprintf(stderr, "barge: bench net: rank summary: %s\n", e.what());
    comm_.abort_job(kExitFatal);
  }
  return out;
}

NetPing NetRunner::ping(const std::string& transport) {
  Links links = open(transport, 1);
  LatencyHistogram rtt;
  FirstError err;
  comm_.barrier();
  on_threads(static_cast<unsigned>(links.out.size() + links.in.size()), err, [&](unsigned i) {
    Link& link = i < links.out.size() ? *links.out[i] : *links.in[i - links.out.size()];
    try {
      if (i < links.out.size()) {
        ping_sender(link, o_, rtt);
      } else {
        ping_echo(link, o_);
      }
    } catch (...) {
      link.abort();
      throw;
    }
  });
  agree_or_throw(err.get(), "bench net: " + transport + " round trips");
  std::vector<std::string> all = comm_.gather(sender_ ? rtt.serialize() : std::string(), 0);
  NetPing out;
  out.transport = transport;
  if (comm_.rank() == 0)
    for (const auto& part : all)
      if (!part.empty()) out.round_trip.merge(LatencyHistogram::deserialize(part));
  return out;
}

}  // namespace

NetBenchResult run_net_bench(const NetBenchOptions& o, transport::Comm& comm) {
  NetBenchResult r;
  r.options = o;
  if (r.options.transports.empty()) r.options.transports = default_transports(comm.size());
  r.rank_count = comm.size();
  try {
    NetRunner runner(r.options, comm);
    r.pair_count = runner.pairs();
    for (const auto& t : r.options.transports) {
      if (o.ping_count > 0) r.pings.push_back(runner.ping(t));
      for (unsigned s : r.options.streams) {
        r.runs.push_back(runner.run(t, s));
      }
    }
  } catch (const std::exception& e) {
    r.failure = e.what();
    r.exit_code = kExitPartial;
  }
  for (size_t i = 0; i < r.runs.size(); ++i)
    if (!r.best || r.runs[i].whole.bandwidth() > r.runs[*r.best].whole.bandwidth()) r.best = i;
  for (const auto& run : r.runs)
    if (!run.errors.empty()) r.exit_code = std::max(r.exit_code, kExitPartial);
  return r;
}

}  // namespace barge::pipeline::bench
