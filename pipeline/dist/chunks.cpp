#include "pipeline/dist/chunks.hpp"

#include <string>

#include "pipeline/core/wire.hpp"

namespace barge::pipeline {
namespace {
constexpr int kTagChunkRequest = 201;  // rank → coordinator: "give me chunks"
constexpr int kTagChunkWork = 202;     // coordinator → rank: a batch ("" = none left)
}  // namespace

void chunk_coordinator(transport::Comm& comm, const std::vector<uint32_t>& chunk_counts,
                       const std::function<bool(uint32_t, uint32_t)>& done) {
  size_t file = 0;
  uint32_t next = 0;
  int told_done = 0;
  while (told_done < comm.size()) {
    int source = 0;
    (void)comm.recv(kTagChunkRequest, &source);
    for (;;) {
      while (file < chunk_counts.size() && next >= chunk_counts[file]) {
        ++file;
        next = 0;
      }
      // Resume: chunks an earlier run wrote are not handed out again (the last always is).
      if (file < chunk_counts.size() && next + 1 < chunk_counts[file] &&
          done(static_cast<uint32_t>(file), next)) {
        ++next;
        continue;
      }
      break;
    }
    if (file == chunk_counts.size()) {
      comm.send(source, kTagChunkWork, "");
      ++told_done;
      continue;
    }
    WireWriter w;
    uint32_t count = 1;
    while (count < kChunksPerBatch && next + count < chunk_counts[file] &&
           !(next + count + 1 < chunk_counts[file] &&
             done(static_cast<uint32_t>(file), next + count))) {
      ++count;
    }
    w.u32(static_cast<uint32_t>(file));
    w.u32(next);
    w.u32(count);
    next += count;
    comm.send(source, kTagChunkWork, w.take());
  }
}

bool ChunkClient::next(uint32_t& file, uint32_t& chunk) {
  while (!done_) {
    if (count_ > 0) {
      file = file_;
      chunk = first_++;
      --count_;
      return true;
    }
    comm_.send(0, kTagChunkRequest, "");
    std::string reply = comm_.recv(kTagChunkWork, nullptr);
    if (reply.empty()) {
      done_ = true;
      break;
    }
    WireReader r(reply);
    file_ = r.u32();
    first_ = r.u32();
    count_ = r.u32();
    if (file_ >= files_) throw WireError("chunk batch for an unknown file");
  }
  return false;
}

void ChunkClient::drain(const std::function<void(uint32_t file)>& abandoned) {
  while (!done_) {
    comm_.send(0, kTagChunkRequest, "");
    std::string reply = comm_.recv(kTagChunkWork, nullptr);
    if (reply.empty()) {
      done_ = true;
    } else {
      WireReader r(reply);
      uint32_t file = r.u32();
      if (file < files_) abandoned(file);
    }
  }
}

}  // namespace barge::pipeline
