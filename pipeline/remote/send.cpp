// barge send: walk → hello/plan on the control stream → read → hash → compress → net-send over
// the data streams → the receiver's report.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/parallel_for.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "io/log.hpp"
#include "io/path_ops.hpp"
#include "pipeline/core/manifest.hpp"
#include "pipeline/core/wire.hpp"
#include "pipeline/engine/codec_stages.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/engine/graph.hpp"
#include "pipeline/remote/protocol.hpp"
#include "pipeline/remote/remote.hpp"
#include "pipeline/remote/send_args.hpp"
#include "pipeline/remote/send_stages.hpp"
#include "pipeline/remote/sender.hpp"
#include "pipeline/remote/ssh_start.hpp"
#include "pipeline/remote/streams.hpp"
#include "transport/net/endpoint.hpp"
#include "transport/net/key_file.hpp"

namespace barge::pipeline::remote {

RunResult Sender::run() {
  connect_.congestion = opts_.congestion;
  connect_.timeout_ms = opts_.connect_timeout_ms;
  connect_.io_timeout_ms = opts_.io_timeout_ms;
  bool ready = false;
  try {
    if (lead() && prepare()) {
      handshake();
      ready = true;
    }
  } catch (const transport::PeerRefusal& ex) {
    refused(ex.what());
    fail(ex.what());
  } catch (const transport::LinkLost& ex) {
    net_failure_ = true;
    fail(ex.what());
  } catch (const std::exception& ex) {
    fail(ex.what());
  }
  if (ranked()) ready = share_session(ready);
  if (ready) {
    try {
      if (fatal_.empty()) open_data_streams();
    } catch (const std::exception& ex) {
      fail(ex.what());
    }
    if (ranked() ? streams_agreed() : fatal_.empty()) {
      try {
        transfer();
      } catch (const std::exception& ex) {
        fail(ex.what());
      }
    }
  }
  return report();
}

bool Sender::refuse(std::string why) {
  result_.exit_code = kExitFatal;
  result_.fatal = std::move(why);
  return false;
}

// Every stream can be written at once (net-send blocks on a slow link), besides the reads.
void Sender::set_threads() {
  threads_ = std::max(opts_.threads ? opts_.threads : engine_threads(0, static_cast<int>(ranks())),
                      opts_.streams + 2);
  gc_.emplace(tbb::global_control::max_allowed_parallelism, threads_);
}

// Usage checks, the key, the walk. False: result_ says why (nothing was sent).
bool Sender::prepare() {
  if (auto st = validate(opts_); !st) return refuse(st.error().message);
  if (auto st = place_target(); !st) return refuse(st.error().message);
  std::vector<Root> roots;
  for (const std::string& raw : opts_.sources) {
    RemoteSource as;
    auto r = local_root(raw, as);
    if (!r) return refuse(r.error().message);
    roots.push_back(std::move(*r));
    sources_.push_back(std::move(as));
  }
  raise_fd_limit();
  set_threads();
  if (opts_.sync && (sources_.size() != 1 || !sources_[0].is_dir))
    return refuse("send --sync: need exactly one SRC directory");
  plan_ = walk_roots(std::move(roots), threads_, PathFilter(opts_.excludes, opts_.includes));
  if (opts_.checksum) hash_sources();
  if (opts_.xattrs) read_source_xattrs();
  result_.walk_seconds = std::chrono::duration<double>(Clock::now() - t0_).count();
  result_.started = true;
  return true;
}

void Sender::fail(const std::string& why) {
  if (ctx_)
    ctx_->set_fatal(why);
  else if (fatal_.empty())
    fatal_ = why;
}

// An error line from the receiver: final, except "busy" (another session is running,
// perhaps the one a lost link left behind: worth a retry).
void Sender::refused(const std::string& line) {
  authenticated_ = true;  // the line came over an authenticated stream
  if (line.find("busy: ") == std::string::npos)
    refused_ = true;
  else
    net_failure_ = true;  // perhaps the session a lost link left behind, still ending
}

// hello → welcome, the plan, ready (the files the receiver does not want back).
void Sender::handshake() {
  hello_.resume = resume_;
  hello_.session = new_session_id();
  hello_.streams = opts_.streams * ranks();
  hello_.capabilities = capabilities();
  hello_.chunk_bytes = opts_.chunk_bytes;
  hello_.files_per_unit = opts_.max_files_per_unit;
  hello_.sources = sources_;
  hello_.entries = plan_.entries.size();
  hello_.files = plan_.files.size();
  hello_.bytes = plan_.total_file_bytes;
  hello_.sync =
      SyncRequest{opts_.sync, opts_.delete_extra, opts_.checksum, opts_.excludes, opts_.includes};
  hello_.xattrs = opts_.xattrs;
  Welcome welcome;
  control_ = open_stream(connect_, hello_, welcome);
  authenticated_ = true;
  endpoints_.clear();
  for (const std::string& e : welcome.endpoints)
    endpoints_.push_back(transport::parse_endpoint(e, "endpoint").value());  // decode checked
  if (opts_.sync && std::find(welcome.capabilities.begin(), welcome.capabilities.end(), "sync") ==
                        welcome.capabilities.end())
    throw std::runtime_error("the receiver's barge does not know send --sync (update it)");
  if (opts_.xattrs && std::find(welcome.capabilities.begin(), welcome.capabilities.end(),
                                "xattrs") == welcome.capabilities.end())
    throw std::runtime_error("the receiver's barge does not know send --xattrs (update it)");
  for (size_t next = 0; next < plan_.entries.size();)
    control_->send(FrameType::kPlan,
                   encode_entries(plan_, next, kPlanBatchBytes, opts_.checksum ? &sums_ : nullptr,
                                  opts_.xattrs));
  auto ready = decode_ready(control_->expect(FrameType::kReady, kMaxControlPayload), plan_,
                            opts_.chunk_bytes, opts_.chunk_bytes);
  if (!ready) throw std::runtime_error(ready.error().message);
  include_.assign(plan_.entries.size(), 0);
  for (uint32_t f : plan_.files) include_[f] = 1;
  for (uint32_t f : ready->unwanted) include_[f] = 0;
  for (const auto& [f, c] : ready->done) done_chunks_[f].insert(c);
}

// All at once: each costs three round trips (TCP, TLS, hello), 1.2 s for eight streams
// one after the other on a 50 ms path. Rank r opens streams r * N + 1 ... r * N + N.
void Sender::open_data_streams() {
  std::vector<std::unique_ptr<FrameStream>> opened(opts_.streams);
  std::vector<std::string> errors(opts_.streams);
  std::vector<std::thread> openers;
  for (uint32_t j = 0; j < opts_.streams; ++j) {
    openers.emplace_back([&, j] {
      Hello h;
      h.session = hello_.session;
      h.stream = rank() * opts_.streams + j + 1;
      h.streams = hello_.streams;
      Welcome w;
      try {
        opened[j] = open_stream(data_connect(h.stream), h, w);
      } catch (const std::exception& ex) {
        errors[j] = ex.what();
      }
    });
  }
  for (auto& t : openers) t.join();
  for (const std::string& e : errors)
    if (!e.empty()) throw std::runtime_error(e);
  for (auto& s : opened) streams_.add(std::move(s));
}

// Data stream k goes to receiver rank (k - 1) % ranks (one rank: where the control went).
ConnectOptions Sender::data_connect(uint32_t k) const {
  ConnectOptions c = connect_;
  if (!endpoints_.empty()) c.to = endpoints_[(k - 1) % endpoints_.size()];
  return c;
}

// --checksum: every regular file's XXH3-128 for the plan (one that cannot be read gets
// none, so it is sent, and its read fails and is named then).
void Sender::hash_sources() {
  sums_.assign(plan_.entries.size(), Hash128{});
  tbb::parallel_for(size_t{0}, plan_.files.size(), [&](size_t k) {
    const uint32_t f = plan_.files[k];
    if (auto sum = hash_file(AT_FDCWD, plan_.src_path(plan_.entries[f]))) sums_[f] = *sum;
  });
}

// --xattrs: every entry's extended attributes, for the plan (one that cannot be read is
// named, and its entry goes without).
void Sender::read_source_xattrs() {
  std::mutex mu;
  tbb::parallel_for(size_t{0}, plan_.entries.size(), [&](size_t k) {
    Entry& e = plan_.entries[k];
    auto xs = io::read_xattrs(plan_.src_path(e));
    if (xs && !xs->empty()) {
      e.xattrs = std::make_shared<const io::Xattrs>(std::move(*xs));
    } else if (!xs) {
      std::lock_guard lock(mu);
      plan_.walk_errors.push_back(xs.error());
    }
  });
}

// Resume: the chunks the receiver holds are neither cut nor counted (the last chunk of a
// file is always sent).
void Sender::skip_done_chunks(uint64_t buffer_bytes) {
  for (auto& [f, chunks] : done_chunks_) {
    if (!include_[f]) continue;
    const uint64_t size = plan_.entries[f].meta.size_bytes;
    const uint32_t count = chunk_count_for(size, opts_.chunk_bytes, buffer_bytes);
    std::erase_if(chunks, [&](uint32_t c) { return c + 1 >= count; });
    ctx_->set_chunks_left(f, count - static_cast<uint32_t>(chunks.size()));
    if (lead()) stats_.bytes_total -= chunks.size() * opts_.chunk_bytes;
  }
}

bool Sender::stopping() {
  if (int sig = stop_signal().load(); sig != 0 && !ctx_->stop.load())
    ctx_->set_fatal("stopped by signal " + std::to_string(sig));
  return ctx_->stop.load();
}

// Across ranks a large file's chunks go out from several ranks: each counts the file done
// where its last chunk goes.
void Sender::count_sent(const WorkUnit& u) {
  for (const Item& it : u.items) {
    if (it.failed) continue;
    stats_.bytes_done += it.ext.length_bytes;
    const bool done =
        ranked() ? it.ext.chunk + 1 == it.ext.chunk_count : ctx_->finish_chunk(it.ext.file);
    if (done) ++stats_.files_done;
  }
}

// --tune: the zstd level is tuned on the transfer itself (pipeline/engine/level_tuner.hpp),
// among none, 1, 3 and 6, starting at --compress's. Each rank tunes its own share.
std::unique_ptr<LevelTuner> Sender::make_tuner() {
  if (!opts_.tune) return nullptr;
  return make_level_tuner({plan_,
                           &include_,
                           opts_.chunk_bytes,
                           opts_.queue_depth,
                           threads_,
                           opts_.tune_seconds,
                           opts_.compress_level,
                           {0, 1, 3, 6},
                           "chunk size, streams, queue depth and threads are not tuned",
                           &stats_,
                           kStageNetSend,
                           [this] { return streams_.bytes_acked(); },
                           [this] { return streams_.send_buffer_fill(); }},
                          result_.tune.emplace());
}

// A unit's raw bytes and the bytes it put on the wire, for the tuner.
void Sender::count_for_tuner(const WorkUnit& u, LevelTuner& tuner) {
  uint64_t raw = 0, wire = 0;
  for (const Item& it : u.items) {
    if (it.failed) continue;
    raw += it.ext.length_bytes;
    wire += it.stored.present ? it.stored.stored_bytes : it.ext.length_bytes;
  }
  tuner.count(u.level, raw, wire);
}

// read → hash → [compress] → net-send over the files the receiver wants; the control stream
// is read meanwhile for the receiver's report or its error.
void Sender::transfer() {
  const bool compress = opts_.compress_level != 0 || opts_.tune;
  const size_t per_unit = compress ? 2 : 1;
  io::BufferPool pool(opts_.chunk_bytes,
                      pool_buffer_count(plan_, {.memory_bytes = opts_.memory_bytes,
                                                .chunk_bytes = opts_.chunk_bytes,
                                                .buffer_bytes = opts_.chunk_bytes,
                                                .files_per_unit = opts_.max_files_per_unit,
                                                .include = &include_,
                                                .min_buffers = 1,
                                                .buffers_per_unit = per_unit}));
  backends_ =
      std::make_unique<BackendSet>(io::BackendOptions{opts_.backend, opts_.queue_depth, &pool});
  copy_opts_ = opts_;
  copy_opts_.reflink = Reflink::kNever;  // the bytes are read: they leave this host
  copy_opts_.verify = false;
  ctx_ = std::make_unique<CopyContext>(plan_, copy_opts_, stats_, backends_->source());
  for (auto& e : plan_.walk_errors) ctx_->errors.add(e.message);
  count_planned(pool.buffer_bytes());
  std::thread reader;
  if (lead()) reader = std::thread([this] { read_control(); });
  UnitCutter cutter(plan_, opts_.chunk_bytes, pool.buffer_bytes(), opts_.max_files_per_unit,
                    &include_);
  if (!done_chunks_.empty()) {
    cutter.set_skip([this](uint32_t f, uint32_t c) {
      auto it = done_chunks_.find(f);
      return it != done_chunks_.end() && it->second.count(c) > 0;
    });
  }
  std::vector<Extent> extents;
  ReadStage read(*ctx_);
  HashStage hash;
  CompressUnitStage pack(opts_.compress_level, 0, opts_.compress_probe ? 64 << 10 : 0);
  std::unique_ptr<LevelTuner> tuner = make_tuner();
  if (tuner) pack.follow(tuner->level());
  // --bwlimit is over all ranks' streams.
  RateLimit limit(opts_.bwlimit_bytes ? std::max<uint64_t>(1, opts_.bwlimit_bytes / ranks()) : 0);
  NetSendStage net(streams_, limit);
  Assembly a;
  uint64_t unit_number = 0;
  a.next = [&](WorkUnit& u) {
    // Every rank cuts the same units and sends those whose number falls to it.
    do {
      if (!cutter.next(extents)) return false;
    } while (unit_number++ % ranks() != rank());
    for (const Extent& x : extents) {
      Item& it = u.items.emplace_back();
      it.ext = x;
      it.stored.present = compress;
    }
    return true;
  };
  a.stopping = [this] { return stopping(); };
  a.stages = {{kStageRead, StageKind::kIo, [&](WorkUnit& u) { read(u); }},
              {kStageHash, StageKind::kCpu, [&](WorkUnit& u) { hash(u); }}};
  if (compress)
    a.stages.push_back({kStageCompress, StageKind::kCpu, [&](WorkUnit& u) { pack(u); }});
  a.stages.push_back({kStageNetSend, StageKind::kIo, [&](WorkUnit& u) {
                        net(u);
                        count_sent(u);
                        if (tuner) count_for_tuner(u, *tuner);
                      }});
  a.on_throw = [this](WorkUnit& u, const std::string& why) {
    ctx_->set_fatal(why);
    for (Item& it : u.items) it.failed = true;
    streams_.abort();
  };
  a.buffers_per_unit = per_unit;
  const auto tb = Clock::now();
  if (tuner) tuner->start();
  run_with_progress(a, pool);
  if (tuner) tuner->finish();
  busy_seconds_ = std::chrono::duration<double>(Clock::now() - tb).count();
  if (ctx_->fatal().empty()) finish_streams();
  if (reader.joinable()) wait_for_reader(reader);
}

// The graph, with progress lines; across ranks, summed (rank 0 prints them), and a rank that
// stops stops the others within a progress round.
void Sender::run_with_progress(Assembly& a, io::BufferPool& pool) {
  if (!ranked()) {
    Progress progress(stats_, opts_.progress, "send", opts_.progress_interval_s);
    run_graph(a, pool, stats_, threads_);
    progress.stop();
    return;
  }
  std::unique_ptr<transport::AsyncSum> across = comm_->make_async_sum();
  using RunState = Progress::RunState;
  Progress::Across share{across.get(), comm_->size(),
                         [this] {
                           if (!ctx_->stop.load()) return RunState::kRunning;
                           return stop_signal().load() ? RunState::kSignalled : RunState::kFailed;
                         },
                         [this](RunState) {
                           ctx_->set_fatal("stopped because another rank of the sender stopped");
                           streams_.abort();
                         }};
  Progress progress(stats_, lead() ? opts_.progress : ProgressMode::kNone, "send",
                    opts_.progress_interval_s, std::move(share));
  run_graph(a, pool, stats_, threads_);
  progress.stop();
}

// The files and bytes this run sends (resume: less the chunks the receiver holds).
// Across ranks rank 0 counts them all (the progress sums every rank's bytes sent).
void Sender::count_planned(uint64_t buffer_bytes) {
  for (uint32_t f : plan_.files) {
    if (!include_[f] || !lead()) continue;
    stats_.bytes_total += plan_.entries[f].meta.size_bytes;
    ++stats_.files_total;
  }
  skip_done_chunks(buffer_bytes);
  planned_ = stats_.bytes_total.load();
}

// Each data stream's done frame and close_notify.
void Sender::finish_streams() {
  try {
    streams_.finish();
  } catch (const transport::LinkLost& ex) {
    net_failure_ = true;
    ctx_->set_fatal(ex.what());
  } catch (const std::exception& ex) {
    ctx_->set_fatal(ex.what());
  }
}

// The receiver's last word on the control stream: its report, or an error line.
void Sender::read_control() {
  try {
    for (;;) {
      transport::FrameHeader h = control_->read_header(kMaxControlPayload);
      std::string payload = control_->read_payload(h);
      if (h.type == FrameType::kDone) {
        auto r = decode_report(payload);
        if (r)
          receiver_ = std::move(*r);
        else
          receiver_error_ = r.error().message;
        break;
      }
      receiver_error_ = h.type == FrameType::kError ? printable_path(payload.substr(0, 4096))
                                                    : "unexpected frame on the control stream";
      refused(receiver_error_);
      ctx_->set_fatal("receiver: " + receiver_error_);
      streams_.abort();
      break;
    }
  } catch (const std::exception& ex) {
    if (dynamic_cast<const transport::LinkLost*>(&ex)) net_failure_ = true;
    receiver_error_ = ex.what();
    ctx_->set_fatal(receiver_error_);
    streams_.abort();
  }
  std::lock_guard lock(reader_mu_);
  reader_done_ = true;
  reader_cv_.notify_all();
}

// After the data: the receiver's report (it may take long: directory metadata, fsync). After
// a failure here, its error line is awaited a few seconds, then the control stream is cut.
void Sender::wait_for_reader(std::thread& reader) {
  {
    std::unique_lock lock(reader_mu_);
    if (!ctx_->fatal().empty())
      reader_cv_.wait_for(lock, std::chrono::seconds(5), [this] { return reader_done_; });
    else
      reader_cv_.wait(lock, [this] { return reader_done_ || !ctx_->fatal().empty(); });
    if (!reader_done_) control_->abort();
  }
  reader.join();
}

// HOST:PORT with the key file, or [user@]host:PATH: recv started there over ssh with a
// fresh key, and its port.
io::Status Sender::place_target() {
  if (auto ssh = parse_ssh_target(opts_.target)) {
    if (!opts_.psk_file.empty() || !opts_.cert_file.empty())
      return io::Error::plain(
          "--psk-file, --cert: not used with host:PATH (ssh hands over a fresh key)");
    connect_.auth.psk = random_bytes(32);
    connect_.auth.plaintext = opts_.plaintext;
    SshStart how{opts_.rsh, opts_.barge_path, opts_.connect_timeout_ms * 3, opts_.plaintext};
    auto r = start_remote_recv(*ssh, how, connect_.auth.psk);
    if (!r) return r.error();
    connect_.to = transport::Endpoint{ssh->host, r->port};
    remote_.emplace(std::move(*r));
    return io::Status::success();
  }
  auto to = transport::parse_endpoint(opts_.target, "destination");
  if (!to) return to.error();
  auto auth = load_auth(opts_.psk_file, opts_.cert_file, opts_.key_file, opts_.ca_file, to->host,
                        opts_.plaintext);
  if (!auth) return auth.error();
  connect_.to = *to;
  connect_.auth = std::move(*auth);
  return io::Status::success();
}

}  // namespace barge::pipeline::remote
