// MpiComm: the only file that includes mpi.h. MPI_Init_thread(MPI_THREAD_MULTIPLE) on
// construction, MPI_Finalize on destruction.
// The C API only: keep Open MPI's deprecated C++ bindings (and their library) out.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "transport/comm.hpp"

namespace barge::transport {
namespace {

void check(int rc, const char* what) {
  if (rc != MPI_SUCCESS) {
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, msg, &len);
    throw std::runtime_error(std::string(what) + ": " + std::string(msg, static_cast<size_t>(len)));
  }
}

class MpiSum final : public AsyncSum {
 public:
  MpiSum() { check(MPI_Comm_dup(MPI_COMM_WORLD, &comm_), "MPI_Comm_dup"); }
  ~MpiSum() override {
    // Unwinding: a round the other ranks may never join is left pending (main aborts the
    // job); waiting for it would hang this rank.
    if (req_ != MPI_REQUEST_NULL && std::uncaught_exceptions() > 0) return;
    if (req_ != MPI_REQUEST_NULL) MPI_Wait(&req_, MPI_STATUS_IGNORE);
    MPI_Comm_free(&comm_);
  }
  MpiSum(const MpiSum&) = delete;
  MpiSum& operator=(const MpiSum&) = delete;

  void start(std::span<const uint64_t> values) override {
    in_.assign(values.begin(), values.end());
    out_.assign(values.size(), 0);
    check(MPI_Iallreduce(in_.data(), out_.data(), static_cast<int>(in_.size()), MPI_UINT64_T,
                         MPI_SUM, comm_, &req_),
          "MPI_Iallreduce");
  }
  bool test(std::span<uint64_t> out) override {
    int done = 0;
    check(MPI_Test(&req_, &done, MPI_STATUS_IGNORE), "MPI_Test");
    if (done) std::copy_n(out_.begin(), std::min(out.size(), out_.size()), out.begin());
    return done != 0;
  }

 private:
  MPI_Comm comm_ = MPI_COMM_NULL;
  MPI_Request req_ = MPI_REQUEST_NULL;
  std::vector<uint64_t> in_, out_;  // stay put while the reduction runs
};

// barge's MPI traffic is control only (work requests, sums, short lists): the data moves
// through the file systems. Open MPI's UCX layer spends about 0.2 s of start-up probing network
// hardware such traffic does not need. So when every rank is on one node (shared memory
// carries everything) and nobody chose a PML (mpirun --mca pml, OMPI_MCA_pml, or a `pml`
// choice in the site's or the user's mca-params.conf), barge takes ob1. Across nodes Open MPI
// chooses, as the site configured it. BARGE_MPI_PML=NAME forces a PML; =auto never sets one.
// Whether the mca-params.conf at `path` chooses a PML, or excludes ob1. An exclusion of others
// (Debian's own file says `pml = ^ucx`) still leaves Open MPI to choose, and ob1 is in line.
bool conf_sets_pml(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    size_t b = line.find_first_not_of(" \t");
    if (b == std::string::npos || line.compare(b, 3, "pml") != 0) continue;
    size_t e = line.find_first_not_of(" \t", b + 3);
    if (e == std::string::npos || line[e] != '=') continue;
    size_t v = line.find_first_not_of(" \t", e + 1);
    if (v == std::string::npos) continue;
    if (line[v] != '^' || line.find("ob1", v) != std::string::npos) return true;
  }
  return false;
}

void choose_pml() {
  const char* want = std::getenv("BARGE_MPI_PML");
  if (want && std::string(want) == "auto") return;
  if (want) {
    ::setenv("OMPI_MCA_pml", want, 0);
    return;
  }
  if (std::getenv("OMPI_MCA_pml")) return;
  const char* size = std::getenv("OMPI_COMM_WORLD_SIZE");
  const char* local = std::getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
  const char* nodes = std::getenv("SLURM_NNODES");
  bool one_node = (size && local && std::string(size) == local) ||
                  (!size && nodes && std::string(nodes) == "1");
  if (!one_node) return;
  std::string home = std::getenv("HOME") ? std::getenv("HOME") : "";
  for (const std::string& conf :
       {std::string("/etc/openmpi/openmpi-mca-params.conf"), home + "/.openmpi/mca-params.conf"}) {
    if (conf_sets_pml(conf)) return;
  }
  ::setenv("OMPI_MCA_pml", "ob1", 0);
}

class MpiComm final : public Comm {
 public:
  MpiComm(int* argc, char*** argv) {
    choose_pml();
    int provided = 0;
    check(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided), "MPI_Init_thread");
    if (provided < MPI_THREAD_MULTIPLE) {
      MPI_Finalize();
      throw std::runtime_error("MPI library does not provide MPI_THREAD_MULTIPLE");
    }
    // Errors come back as codes (turned into exceptions) instead of aborting the job.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
  }
  ~MpiComm() override { MPI_Finalize(); }
  MpiComm(const MpiComm&) = delete;
  MpiComm& operator=(const MpiComm&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  bool is_mpi() const override { return true; }
  [[noreturn]] void abort_job(int exit_code) override {
    MPI_Abort(MPI_COMM_WORLD, exit_code);
    std::_Exit(exit_code);  // MPI_Abort does not return; if it ever did, this rank still ends
  }
  void barrier() override { check(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier"); }
  void allreduce_sum(std::span<uint64_t> v) override { reduce(v, MPI_SUM); }
  void allreduce_max(std::span<uint64_t> v) override { reduce(v, MPI_MAX); }
  void allreduce_min(std::span<uint64_t> v) override { reduce(v, MPI_MIN); }

  std::vector<std::string> allgather(const std::string& mine) override {
    int len = static_cast<int>(mine.size());
    std::vector<int> lens(static_cast<size_t>(size_));
    check(MPI_Allgather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, MPI_COMM_WORLD),
          "MPI_Allgather");
    std::vector<int> displs(lens.size());
    long long total = 0;
    for (size_t i = 0; i < lens.size(); ++i) {
      displs[i] = static_cast<int>(total);
      total += lens[i];
    }
    if (total > 0x7fffffff) throw std::runtime_error("allgather: more than 2 GiB in one exchange");
    std::string all(static_cast<size_t>(total), '\0');
    check(MPI_Allgatherv(mine.data(), len, MPI_BYTE, all.data(), lens.data(), displs.data(),
                         MPI_BYTE, MPI_COMM_WORLD),
          "MPI_Allgatherv");
    std::vector<std::string> out(lens.size());
    for (size_t i = 0; i < lens.size(); ++i)
      out[i] = all.substr(static_cast<size_t>(displs[i]), static_cast<size_t>(lens[i]));
    return out;
  }

  std::vector<std::string> gather(const std::string& mine, int root) override {
    int len = static_cast<int>(mine.size());
    std::vector<int> lens(rank_ == root ? static_cast<size_t>(size_) : 0);
    check(MPI_Gather(&len, 1, MPI_INT, lens.data(), 1, MPI_INT, root, MPI_COMM_WORLD),
          "MPI_Gather");
    std::vector<int> displs(lens.size());
    long long total = 0;
    for (size_t i = 0; i < lens.size(); ++i) {
      displs[i] = static_cast<int>(total);
      total += lens[i];
    }
    if (total > 0x7fffffff) throw std::runtime_error("gather: more than 2 GiB in one exchange");
    std::string all(static_cast<size_t>(total), '\0');
    check(MPI_Gatherv(mine.data(), len, MPI_BYTE, all.data(), lens.data(), displs.data(), MPI_BYTE,
                      root, MPI_COMM_WORLD),
          "MPI_Gatherv");
    std::vector<std::string> out(lens.size());
    for (size_t i = 0; i < lens.size(); ++i)
      out[i] = all.substr(static_cast<size_t>(displs[i]), static_cast<size_t>(lens[i]));
    return out;
  }

  std::string broadcast(const std::string& bytes, int root) override {
    unsigned long long len = bytes.size();
    check(MPI_Bcast(&len, 1, MPI_UNSIGNED_LONG_LONG, root, MPI_COMM_WORLD), "MPI_Bcast");
    std::string out = rank_ == root ? bytes : std::string(len, '\0');
    check(MPI_Bcast(out.data(), static_cast<int>(len), MPI_BYTE, root, MPI_COMM_WORLD),
          "MPI_Bcast");
    return out;
  }

  std::unique_ptr<AsyncSum> make_async_sum() override { return std::make_unique<MpiSum>(); }

  void send(int dest, int tag, const std::string& bytes) override {
    check(
        MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, dest, tag, MPI_COMM_WORLD),
        "MPI_Send");
  }

  void send_bytes(int dest, int tag, std::span<const std::byte> bytes) override {
    check(
        MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, dest, tag, MPI_COMM_WORLD),
        "MPI_Send");
  }

  void recv_bytes(int source, int tag, std::span<std::byte> into) override {
    MPI_Status st;
    check(MPI_Recv(into.data(), static_cast<int>(into.size()), MPI_BYTE, source, tag,
                   MPI_COMM_WORLD, &st),
          "MPI_Recv");
    int len = 0;
    MPI_Get_count(&st, MPI_BYTE, &len);
    if (static_cast<size_t>(len) != into.size())
      throw std::runtime_error("MPI_Recv: " + std::to_string(len) + " bytes from rank " +
                               std::to_string(source) + ", expected " +
                               std::to_string(into.size()));
  }

  std::string recv(int tag, int* source) override {
    // Matched probe: another thread cannot take the message between probe and receive.
    // Polled with a growing sleep instead of a blocking MPI_Mprobe, which Open MPI serves by
    // spinning: a coordinator thread waiting for requests would otherwise take a whole core
    // from the workers of its rank (on a 2-core node, half the machine).
    MPI_Status st;
    MPI_Message msg;
    int found = 0;
    for (unsigned idle = 0;; ++idle) {
      check(MPI_Improbe(MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, &found, &msg, &st), "MPI_Improbe");
      if (found) break;
      if (idle < 50) {
        std::this_thread::yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(std::min(500u, 10 * (idle - 49))));
      }
    }
    int len = 0;
    MPI_Get_count(&st, MPI_BYTE, &len);
    std::string out(static_cast<size_t>(len), '\0');
    check(MPI_Mrecv(out.data(), len, MPI_BYTE, &msg, MPI_STATUS_IGNORE), "MPI_Mrecv");
    if (source) *source = st.MPI_SOURCE;
    return out;
  }

 private:
  void reduce(std::span<uint64_t> v, MPI_Op op) {
    check(MPI_Allreduce(MPI_IN_PLACE, v.data(), static_cast<int>(v.size()), MPI_UINT64_T, op,
                        MPI_COMM_WORLD),
          "MPI_Allreduce");
  }
  int rank_ = 0;
  int size_ = 1;
};

}  // namespace

std::unique_ptr<Comm> make_comm(int* argc, char*** argv) {
  if (detect_launcher().launcher == Launcher::kNone) return make_solo_comm();
  return std::make_unique<MpiComm>(argc, argv);
}

}  // namespace barge::transport
