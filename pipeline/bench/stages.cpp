// barge bench pipeline: stage by stage on one thread, then the engine's graph end to end.
#include "pipeline/bench/stages.hpp"

#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <thread>

#include "io/buffer_pool.hpp"
#include "io/unique_fd.hpp"
#include "pipeline/core/compress.hpp"
#include "pipeline/core/hash.hpp"
#include "pipeline/core/stats.hpp"
#include "pipeline/engine/codec_stages.hpp"
#include "pipeline/engine/graph.hpp"
#include "transport/net/tls.hpp"

namespace barge::pipeline::bench {
namespace {

double thread_cpu() {
  timespec ts{};
  ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

double wall() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// A few chunks of the chosen compressibility: in every 4 KiB, the first (100 - p)% random
// bytes, the rest a repeated pattern zstd folds away.
std::vector<std::vector<std::byte>> make_data(const PipelineBenchOptions& o) {
  std::vector<std::vector<std::byte>> chunks(4, std::vector<std::byte>(o.chunk_bytes));
  uint64_t state = 0x1234567;
  for (auto& c : chunks) {
    for (size_t block = 0; block < c.size(); block += 4096) {
      size_t n = std::min<size_t>(4096, c.size() - block);
      size_t random = n * (100 - o.compressible_percent) / 100;
      for (size_t i = 0; i < n; ++i) {
        state = state * 6364136223846793005ull + 1442695040888963407ull;
        c[block + i] = i < random ? static_cast<std::byte>(state >> 56)
                                  : static_cast<std::byte>("barge"[i % 5]);
      }
    }
  }
  return chunks;
}

template <class F>
StageRate measure(const std::string& name, uint64_t total, uint64_t chunk, F&& body) {
  StageRate s;
  s.name = name;
  double c0 = thread_cpu(), w0 = wall();
  for (uint64_t done = 0; done < total; done += chunk) body(done / chunk);
  s.cpu_seconds = thread_cpu() - c0;
  s.wall_seconds = wall() - w0;
  s.bytes = (total + chunk - 1) / chunk * chunk;
  return s;
}

// TLS 1.3 (PSK, the cipher send/recv negotiate) over a socket pair: this thread encrypts and
// writes, a second one reads and decrypts; each side's CPU time is its stage's.
std::pair<StageRate, StageRate> measure_tls(const PipelineBenchOptions& o,
                                            const std::vector<std::byte>& chunk) {
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    throw std::runtime_error(std::string("socketpair: ") + std::strerror(errno));
  io::UniqueFd a(sv[0]), b(sv[1]);
  const std::string key(32, 'k');
  StageRate dec;
  dec.name = "tls-decrypt";
  std::string error;
  std::thread reader([&] {
    try {
      auto s =
          transport::TlsStream::handshake_psk(b.get(), transport::TlsRole::kServer, key, "bench");
      std::vector<std::byte> in(chunk.size());
      double c0 = thread_cpu(), w0 = wall();
      for (uint64_t done = 0; done < o.size_bytes; done += chunk.size()) {
        s.read_exact(in);
        dec.bytes += in.size();
      }
      dec.cpu_seconds = thread_cpu() - c0;
      dec.wall_seconds = wall() - w0;
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  StageRate enc;
  try {
    auto s =
        transport::TlsStream::handshake_psk(a.get(), transport::TlsRole::kClient, key, "bench");
    enc = measure("tls-encrypt", o.size_bytes, chunk.size(), [&](uint64_t) { s.write_all(chunk); });
  } catch (const std::exception& e) {
    ::shutdown(a.get(), SHUT_RDWR);
    reader.join();
    throw std::runtime_error(std::string("bench pipeline: TLS: ") + e.what());
  }
  reader.join();
  if (!error.empty()) throw std::runtime_error("bench pipeline: TLS: " + error);
  return {enc, dec};
}

// The engine's graph: a memory source → hash → compress → decompress+check → sink.
void end_to_end(const PipelineBenchOptions& o, const std::vector<std::vector<std::byte>>& data,
                PipelineBenchResult& r) {
  r.threads = o.threads ? o.threads : std::max(1u, std::thread::hardware_concurrency());
  io::BufferPool pool(o.chunk_bytes, std::max<size_t>(8, 4 * r.threads) * 2);
  LiveStats stats;
  uint64_t issued = 0;
  std::string failure;
  Assembly a;
  a.buffers_per_unit = 2;
  a.next = [&](WorkUnit& u) {
    if (issued >= o.size_bytes) return false;
    Item it;
    it.ext.offset_bytes = issued;  // which of the source chunks: (offset / chunk) % count
    it.ext.length_bytes = o.chunk_bytes;
    u.items.push_back(std::move(it));
    issued += o.chunk_bytes;
    return true;
  };
  a.stopping = [] { return false; };
  // The memory source: the graph hands a unit its buffers at the first stage.
  a.stages.push_back({kStageRead, StageKind::kCpu, [&](WorkUnit& u) {
                        for (Item& it : u.items) {
                          const auto& src =
                              data[(it.ext.offset_bytes / o.chunk_bytes) % data.size()];
                          std::memcpy(u.bytes(it).data(), src.data(), src.size());
                        }
                      }});
  a.stages.push_back({kStageHash, StageKind::kCpu, [](WorkUnit& u) {
                        for (Item& it : u.items) {
                          it.hash = hash_bytes(u.bytes(it));
                          it.stored.present = true;
                        }
                      }});
  CompressUnitStage compress(o.levels.front(), 0);
  a.stages.push_back({kStageCompress, StageKind::kCpu, [&](WorkUnit& u) { compress(u); }});
  DecompressCheckStage check([](Item&, const std::string& why) {
    throw std::runtime_error("bench pipeline: decompress+check: " + why);
  });
  a.stages.push_back({kStageDecompress, StageKind::kCpu, [&](WorkUnit& u) { check(u); }});
  a.on_throw = [&](WorkUnit&, const std::string& why) { failure = why; };
  double w0 = wall();
  run_graph(a, pool, stats, r.threads);
  r.end_to_end_seconds = wall() - w0;
  if (!failure.empty()) throw std::runtime_error(failure);
  r.end_to_end_bytes = issued;
  r.end_to_end_stages = "memory source -> hash -> compress-" + std::to_string(o.levels.front()) +
                        " -> decompress+check -> memory";
  const std::pair<int, const char*> stages[] = {
      {kStageHash, "hash"}, {kStageCompress, "compress"}, {kStageDecompress, "decompress+check"}};
  uint64_t most = 0;
  for (const auto& [stat, name] : stages) {
    uint64_t busy = stats.stage_busy_ns[stat].load();
    if (busy >= most) {
      most = busy;
      r.bottleneck = name;
    }
  }
  if (r.bottleneck == "compress") r.bottleneck += "-" + std::to_string(o.levels.front());
}

}  // namespace

io::Status validate(const PipelineBenchOptions& o) {
  if (o.chunk_bytes < 4096 || o.chunk_bytes > (64u << 20))
    return io::Error::plain("--chunk-size must be 4K to 64M");
  if (o.size_bytes < o.chunk_bytes) return io::Error::plain("--size is smaller than --chunk-size");
  if (o.compressible_percent > 100) return io::Error::plain("--compressible must be 0 to 100");
  if (o.levels.empty()) return io::Error::plain("--levels needs at least one zstd level");
  for (int l : o.levels) {
    if (l < -7 || l > 19 || l == 0)
      return io::Error::plain("--levels: " + std::to_string(l) +
                              " is not a zstd level (-7..19, not 0)");
  }
  return io::Status::success();
}

PipelineBenchResult run_pipeline_bench(const PipelineBenchOptions& o) {
  PipelineBenchResult r;
  r.options = o;
  auto data = make_data(o);
  const uint64_t chunk = o.chunk_bytes;
  r.stages.push_back(measure("hash", o.size_bytes, chunk,
                             [&](uint64_t i) { (void)hash_bytes(data[i % data.size()]); }));
  std::vector<std::byte> out(compress_bound(chunk));
  std::vector<std::vector<std::byte>> packed(data.size());
  for (int level : o.levels) {
    CompressStage c(level);
    uint64_t stored = 0;
    StageRate s =
        measure("compress-" + std::to_string(level), o.size_bytes, chunk, [&](uint64_t i) {
          auto n = c(data[i % data.size()], out);
          if (!n) throw std::runtime_error("bench pipeline: compress: " + n.error().message);
          stored += *n;
        });
    s.ratio = static_cast<double>(stored) / static_cast<double>(s.bytes);
    r.stages.push_back(s);
    if (level != o.levels.front()) continue;
    for (size_t i = 0; i < data.size(); ++i) {
      auto n = c(data[i], out);
      packed[i].assign(out.begin(), out.begin() + static_cast<long>(*n));
    }
  }
  std::vector<Hash128> hashes;
  for (const auto& d : data) hashes.push_back(hash_bytes(d));
  DecompressStage d;
  std::vector<std::byte> back(chunk);
  r.stages.push_back(measure("decompress+check", o.size_bytes, chunk, [&](uint64_t i) {
    size_t k = i % data.size();
    auto n = d(packed[k], back, chunk, hashes[k]);
    if (!n) throw std::runtime_error("bench pipeline: decompress: " + n.error().message);
  }));
  if (o.tls) {
    auto [enc, dec] = measure_tls(o, data[0]);
    r.stages.push_back(enc);
    r.stages.push_back(dec);
  }
  end_to_end(o, data, r);
  return r;
}

nlohmann::json to_json(const PipelineBenchResult& r) {
  nlohmann::json stages = nlohmann::json::array();
  for (const auto& s : r.stages) {
    nlohmann::json j{{"name", s.name},
                     {"bytes", s.bytes},
                     {"cpu_seconds", s.cpu_seconds},
                     {"wall_seconds", s.wall_seconds},
                     {"bytes_per_core_second", s.bytes_per_core_second()}};
    if (s.ratio > 0) j["compressed_ratio"] = s.ratio;
    stages.push_back(j);
  }
  return {{"command", "bench pipeline"},
          {"options",
           {{"size_bytes", r.options.size_bytes},
            {"chunk_bytes", r.options.chunk_bytes},
            {"compressible_percent", r.options.compressible_percent},
            {"levels", r.options.levels}}},
          {"stages", stages},
          {"end_to_end",
           {{"stages", r.end_to_end_stages},
            {"threads", r.threads},
            {"bytes", r.end_to_end_bytes},
            {"seconds", r.end_to_end_seconds},
            {"bandwidth_bytes_per_second", r.end_to_end_rate()},
            {"bottleneck", r.bottleneck}}}};
}

std::string human_summary(const PipelineBenchResult& r) {
  char line[200];
  std::snprintf(line, sizeof line,
                "bench pipeline: %llu MiB per stage in %llu KiB chunks, %u%% compressible\n",
                static_cast<unsigned long long>(r.options.size_bytes >> 20),
                static_cast<unsigned long long>(r.options.chunk_bytes >> 10),
                r.options.compressible_percent);
  std::string out = line;
  out += "  stage                MiB/s per core   ratio\n";
  for (const auto& s : r.stages) {
    std::snprintf(line, sizeof line, "  %-20s %14.1f   %s\n", s.name.c_str(),
                  s.bytes_per_core_second() / 1048576.0,
                  s.ratio > 0 ? std::to_string(s.ratio).substr(0, 5).c_str() : "");
    out += line;
  }
  std::snprintf(line, sizeof line, "  end to end (%s, %u threads): %.1f MiB/s; bottleneck: %s\n",
                r.end_to_end_stages.c_str(), r.threads, r.end_to_end_rate() / 1048576.0,
                r.bottleneck.c_str());
  return out + line;
}

}  // namespace barge::pipeline::bench
