// delay_line: a user-space WAN emulator for the send/recv tests and benchmarks (this kernel
// has no netem). Packets that an iptables rule hands to NFQUEUE QUEUE are held for DELAY_MS
// and then accepted in arrival order; with LOSS_PERMILLE, that many packets in a thousand
// are dropped at random instead. Put it on the receiving host's INPUT hook, as
//   iptables -A INPUT -s PEER -j NFQUEUE --queue-num QUEUE --queue-bypass
//   delay_line QUEUE DELAY_MS [LOSS_PERMILLE]
// (on a sender's OUTPUT hook TCP sees the hold as its own queue and collapses). A delay line
// on each host's INPUT gives a symmetric round trip of twice DELAY_MS. SIGTERM or SIGINT
// flushes what it holds and prints the packets seen and dropped.
#include <arpa/inet.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <random>
#include <string>

namespace {

using Clock = std::chrono::steady_clock;

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) { g_stop = 1; }

struct Held {
  uint32_t id;
  Clock::time_point due;
};

struct Line {
  std::chrono::nanoseconds delay{};
  unsigned loss_permille = 0;
  std::deque<Held> held;
  std::mt19937 rng{12345};
  unsigned long long seen = 0, dropped = 0;
};

int on_packet(nfq_q_handle* q, nfgenmsg*, nfq_data* d, void* data) {
  auto& line = *static_cast<Line*>(data);
  const uint32_t id = ntohl(nfq_get_msg_packet_hdr(d)->packet_id);
  ++line.seen;
  if (line.loss_permille && line.rng() % 1000 < line.loss_permille) {
    ++line.dropped;
    return nfq_set_verdict(q, id, NF_DROP, 0, nullptr);
  }
  line.held.push_back({id, Clock::now() + line.delay});
  return 0;
}

// Accepts every held packet that is due: one batch verdict covers all ids up to the last.
void release_due(nfq_q_handle* q, Line& line) {
  const auto now = Clock::now();
  bool any = false;
  uint32_t last = 0;
  while (!line.held.empty() && line.held.front().due <= now) {
    last = line.held.front().id;
    line.held.pop_front();
    any = true;
  }
  if (any) nfq_set_verdict_batch(q, last, NF_ACCEPT);
}

int wait_ms(const Line& line) {
  if (line.held.empty()) return 200;
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(line.held.front().due - Clock::now());
  return left.count() <= 0 ? 0 : static_cast<int>(std::min<long>(left.count() + 1, 200));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::fprintf(stderr, "usage: delay_line QUEUE DELAY_MS [LOSS_PERMILLE]\n");
    return 2;
  }
  Line line;
  line.delay = std::chrono::microseconds(static_cast<long>(std::atof(argv[2]) * 1000));
  line.loss_permille = argc == 4 ? static_cast<unsigned>(std::atoi(argv[3])) : 0;
  std::signal(SIGTERM, on_signal);
  std::signal(SIGINT, on_signal);
  nfq_handle* h = nfq_open();
  nfq_q_handle* q =
      h ? nfq_create_queue(h, static_cast<uint16_t>(std::atoi(argv[1])), &on_packet, &line)
        : nullptr;
  if (!q) {
    std::perror("delay_line: nfq_open/nfq_create_queue (root, and an NFQUEUE rule?)");
    return 1;
  }
  nfq_set_mode(q, NFQNL_COPY_META, 0);  // verdicts by id: no payload is copied to user space
  nfq_set_queue_maxlen(q, 1 << 18);
  nfnl_rcvbufsiz(nfq_nfnlh(h), 64 << 20);
  const int fd = nfq_fd(h);
  std::string buf(1 << 16, '\0');
  while (!g_stop) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, wait_ms(line)) > 0) {
      for (;;) {
        const ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
        if (n <= 0) break;
        nfq_handle_packet(h, buf.data(), static_cast<int>(n));
      }
    }
    release_due(q, line);
  }
  for (const Held& x : line.held) nfq_set_verdict(q, x.id, NF_ACCEPT, 0, nullptr);
  std::fprintf(stderr, "delay_line: %llu packets, %llu dropped\n", line.seen, line.dropped);
  nfq_destroy_queue(q);
  nfq_close(h);
  return 0;
}
