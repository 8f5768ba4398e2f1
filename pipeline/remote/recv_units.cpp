#include "pipeline/remote/recv_units.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cstring>
#include <stdexcept>

#include "pipeline/core/manifest.hpp"

namespace barge::pipeline::remote {

using transport::FrameStream;
using transport::FrameType;

StreamClaims::StreamClaims(std::vector<std::unique_ptr<FrameStream>>& streams,
                           const std::atomic<bool>& stop)
    : streams_(streams),
      stop_(stop),
      state_(streams.size(), kFree),
      released_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {}

bool StreamClaims::claim(uint32_t& index) {
  for (;;) {
    if (stop_.load()) return false;
    std::vector<uint32_t> free;
    {
      std::lock_guard lock(mu_);
      bool live = false;
      for (uint32_t k = 0; k < state_.size(); ++k) {
        live |= state_[k] != kEnded;
        if (state_[k] == kFree) free.push_back(k);
      }
      if (!live) return false;
      // Only this thread moves a stream out of kFree: its TLS state is not being read.
      for (uint32_t k : free) {
        if (streams_[k]->readable_now()) {
          state_[k] = kClaimed;
          index = k;
          return true;
        }
      }
    }
    std::vector<pollfd> fds{pollfd{released_.get(), POLLIN, 0}};
    for (uint32_t k : free) fds.push_back(pollfd{streams_[k]->fd(), POLLIN, 0});
    // A stream read now comes back through the eventfd; the timeout only bounds how long a
    // stop takes to be seen.
    if (::poll(fds.data(), fds.size(), 100) > 0 && (fds[0].revents & POLLIN)) {
      uint64_t n;
      (void)!::read(released_.get(), &n, sizeof n);
    }
  }
}

void StreamClaims::release(uint32_t index, bool ended) {
  {
    std::lock_guard lock(mu_);
    state_[index] = ended ? kEnded : kFree;
  }
  uint64_t one = 1;
  (void)!::write(released_.get(), &one, sizeof one);
}

void StreamClaims::abort_all() {
  for (auto& s : streams_) s->abort();
}

void NetReceiveStage::operator()(WorkUnit& u) const {
  FrameStream& s = *streams_[u.source];
  bool ended = false;
  try {
    transport::FrameHeader h = s.read_header(max_frame(u.buffer.capacity_bytes()));
    if (h.type == FrameType::kDone) {
      if (h.payload_bytes != 0)
        throw std::runtime_error("from " + s.peer() + ": done frame with a payload");
      ended = true;
    } else if (h.type == FrameType::kError) {
      throw std::runtime_error("sender " + s.peer() + ": " +
                               printable_path(s.read_payload(h).substr(0, 4096)));
    } else if (h.type != FrameType::kUnit) {
      throw std::runtime_error("from " + s.peer() + ": a frame of type " +
                               std::to_string(static_cast<int>(h.type)) + " on a data stream");
    } else {
      read_unit(s, h.payload_bytes, u);
    }
  } catch (const transport::LinkLost&) {
    ctx_.resumable = true;  // what was committed stays, for a resume
    claims_.mark_lost();
    claims_.release(u.source, true);
    throw;
  } catch (...) {
    claims_.release(u.source, true);
    throw;
  }
  claims_.release(u.source, ended);
}

// The table first, every item checked against the plan and the ledger and placed in the
// unit's buffers (raw bytes at 4 KiB-aligned offsets in the main buffer, stored forms in
// aux), then the bytes read straight into place.
void NetReceiveStage::read_unit(FrameStream& s, uint32_t payload_bytes, WorkUnit& u) const {
  auto bad = [&](const std::string& why) {
    return std::runtime_error("from " + s.peer() + ": " + why);
  };
  uint32_t table_bytes = 0;
  if (payload_bytes < 4) throw bad("unit frame too short");
  s.read(std::as_writable_bytes(std::span<uint32_t>(&table_bytes, 1)));
  if (table_bytes > kMaxTableBytes || table_bytes > payload_bytes - 4)
    throw bad("unit table too large");
  std::string table(table_bytes, '\0');
  s.read(std::as_writable_bytes(std::span<char>(table.data(), table.size())));
  auto items = decode_unit_table(table);
  if (!items) throw bad(items.error().message);
  uint64_t buf_at = 0, aux_at = 0, wire = 0;
  u.items.reserve(items->size());
  for (WireItem& w : *items) {
    if (auto st = ledger_.accept(w); !st) throw bad(st.error().message);
    Item& it = u.items.emplace_back();
    const uint32_t file = local_ ? (*local_)[w.file] : w.file;
    it.ext = Extent{file, w.chunk, ledger_.chunk_count(w.file), w.offset, w.length, buf_at};
    it.hash = w.hash;
    if (w.failed) {
      it.failed = true;  // the sender named it
      ctx_.abandon_file(file);
      continue;
    }
    it.sparse = w.sparse;
    it.data = std::move(w.data);
    it.stored.present = true;
    it.stored.compressed = w.compressed;
    it.stored.stored_bytes = w.wire_bytes;
    buf_at += (w.length + 4095) / 4096 * 4096;
    if (buf_at > u.buffer.capacity_bytes()) throw bad("unit larger than a buffer");
    if (w.compressed) {
      it.stored.aux_offset_bytes = aux_at;
      aux_at += w.wire_bytes;
      if (aux_at > u.aux.capacity_bytes()) throw bad("compressed unit larger than a buffer");
    }
    wire += w.wire_bytes;
  }
  if (wire != payload_bytes - 4 - table_bytes)
    throw bad("unit payload size does not match its table");
  for (Item& it : u.items) {
    if (it.failed) continue;
    if (it.stored.compressed) {
      s.read(u.stored_bytes(it));
    } else if (it.sparse) {
      std::span<std::byte> raw = u.bytes(it);
      std::memset(raw.data(), 0, raw.size());
      for (const auto& [b, e] : it.data) s.read(raw.subspan(b - it.ext.offset_bytes, e - b));
    } else {
      s.read(u.bytes(it));
    }
  }
}

}  // namespace barge::pipeline::remote
