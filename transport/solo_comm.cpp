// SoloComm: a run of one rank. Collectives are identities; point-to-point messages go to a
// local mailbox (a rank may message itself, as rank 0's coordinator does).
#include <algorithm>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <stdexcept>

#include "transport/comm.hpp"

namespace barge::transport {
namespace {

class SoloSum final : public AsyncSum {
 public:
  void start(std::span<const uint64_t> values) override {
    last_.assign(values.begin(), values.end());
  }
  bool test(std::span<uint64_t> out) override {
    std::copy_n(last_.begin(), std::min(out.size(), last_.size()), out.begin());
    return true;
  }

 private:
  std::vector<uint64_t> last_;
};

class SoloComm final : public Comm {
 public:
  int rank() const override { return 0; }
  int size() const override { return 1; }
  bool is_mpi() const override { return false; }
  [[noreturn]] void abort_job(int exit_code) override { std::_Exit(exit_code); }
  void barrier() override {}
  void allreduce_sum(std::span<uint64_t>) override {}
  void allreduce_max(std::span<uint64_t>) override {}
  void allreduce_min(std::span<uint64_t>) override {}
  std::vector<std::string> allgather(const std::string& mine) override { return {mine}; }
  std::vector<std::string> gather(const std::string& mine, int) override { return {mine}; }
  std::string broadcast(const std::string& bytes, int) override { return bytes; }
  void send(int, int tag, const std::string& bytes) override {
    {
      std::lock_guard lock(mu_);
      box_.push_back({tag, bytes});
    }
    cv_.notify_all();
  }
  std::unique_ptr<AsyncSum> make_async_sum() override { return std::make_unique<SoloSum>(); }
  std::string recv(int tag, int* source) override {
    std::unique_lock lock(mu_);
    for (;;) {
      for (auto it = box_.begin(); it != box_.end(); ++it) {
        if (it->first == tag) {
          std::string out = std::move(it->second);
          box_.erase(it);
          if (source) *source = 0;
          return out;
        }
      }
      cv_.wait(lock);
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<int, std::string>> box_;
};

}  // namespace

std::unique_ptr<Comm> make_solo_comm() { return std::make_unique<SoloComm>(); }

void Comm::send_bytes(int, int, std::span<const std::byte>) {
  throw std::logic_error("send_bytes: one process has no peer rank");
}
void Comm::recv_bytes(int, int, std::span<std::byte>) {
  throw std::logic_error("recv_bytes: one process has no peer rank");
}

}  // namespace barge::transport
