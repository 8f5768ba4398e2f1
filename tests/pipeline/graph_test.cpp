// The graph builder on small assemblies of counting stages (no files): order, backpressure,
// units held back by the last stage, exceptions, and the serial runner.
#include "pipeline/engine/graph.hpp"

#include <gtest/gtest.h>
#include <oneapi/tbb/global_control.h>

#include <atomic>
#include <mutex>
#include <thread>

namespace barge::pipeline {
namespace {

// An assembly of `units` units of one item each whose stages record what they saw.
struct Counting {
  explicit Counting(uint32_t units) : total(units) {
    a.next = [this](WorkUnit& u) {
      if (made == total) return false;
      u.items.emplace_back().ext.file = made++;
      return true;
    };
  }
  // Units between admission (first stage) and release (last stage): those holding buffers.
  void enter() {
    int now = ++in_flight;
    int seen = peak.load();
    while (now > seen && !peak.compare_exchange_weak(seen, now)) {
    }
  }
  uint32_t total;
  uint32_t made = 0;
  std::atomic<int> in_flight{0};
  std::atomic<int> peak{0};
  Assembly a;
};

TEST(GraphTest, EveryUnitPassesEveryStageInOrder) {
  io::BufferPool pool(4096, 8);
  LiveStats stats;
  Counting c(200);
  std::mutex mu;
  std::vector<int> stage_of(200, 0);
  bool out_of_order = false;
  auto step = [&](int k) {
    return [&, k](WorkUnit& u) {
      std::lock_guard lock(mu);
      int& s = stage_of[u.items[0].ext.file];
      if (s != k) out_of_order = true;
      s = k + 1;
    };
  };
  c.a.stages = {{kStageRead, StageKind::kIo, step(0)},
                {kStageHash, StageKind::kCpu, step(1)},
                {kStageWrite, StageKind::kIo, step(2)}};
  run_graph(c.a, pool, stats, 4);
  EXPECT_FALSE(out_of_order);
  for (int s : stage_of) EXPECT_EQ(s, 3);
  EXPECT_EQ(pool.free_count(), pool.buffer_count());
}

// Fails when the limiter is taken out: the input then pushes every unit into the first
// stage at once, far more than the pool's buffers, and the stage's threads block waiting for
// buffers that no later stage can free (seen: the test never ends, and ctest times it out).
TEST(GraphTest, NoMoreUnitsInFlightThanThePoolHasBuffersFor) {
  for (size_t per_unit : {size_t{1}, size_t{2}}) {
    // As the commands do: the arena gets the threads it asks for, not one per core.
    tbb::global_control gc(tbb::global_control::max_allowed_parallelism, 8);
    io::BufferPool pool(4096, 6);
    LiveStats stats;
    Counting c(300);
    c.a.buffers_per_unit = per_unit;
    std::atomic<size_t> max_taken{0};
    c.a.stages = {{kStageRead, StageKind::kIo,
                   [&](WorkUnit& u) {
                     EXPECT_TRUE(u.buffer.valid());
                     EXPECT_EQ(u.aux.valid(), per_unit == 2);
                     size_t taken = pool.buffer_count() - pool.free_count();
                     size_t seen = max_taken.load();
                     while (taken > seen && !max_taken.compare_exchange_weak(seen, taken)) {
                     }
                   }},
                  {kStageHash, StageKind::kCpu, [&](WorkUnit&) {
                     std::this_thread::sleep_for(std::chrono::microseconds(200));
                   }}};
    // Counted from the moment a unit is cut: only the limiter keeps the input from racing
    // ahead of the stages.
    auto next = c.a.next;
    c.a.next = [&, next](WorkUnit& u) {
      if (!next(u)) return false;
      c.enter();
      return true;
    };
    c.a.last = [&](WorkUnit* u, const Emit& emit) {
      --c.in_flight;
      emit(u);
    };
    run_graph(c.a, pool, stats, 8);
    EXPECT_EQ(c.made, 300u);
    // One more than the tokens: the input cuts the next unit before the limiter refuses it.
    EXPECT_LE(c.peak.load(), static_cast<int>(units_in_flight(pool, per_unit)) + 1) << per_unit;
    EXPECT_GE(c.peak.load(), 3) << "the graph ran units (nearly) one at a time";
    EXPECT_LE(max_taken.load(), pool.buffer_count());
    EXPECT_EQ(pool.free_count(), pool.buffer_count());
  }
}

TEST(GraphTest, UnitsHeldBackByTheLastStageAreEmittedLaterOrDrained) {
  io::BufferPool pool(4096, 4);
  LiveStats stats;
  Counting c(50);
  std::mutex mu;
  std::vector<WorkUnit*> held;
  std::atomic<int> emitted{0};
  // Holds every odd unit and lets it go with the next even one; the last odd one is drained.
  c.a.last = [&](WorkUnit* u, const Emit& emit) {
    std::vector<WorkUnit*> out;
    {
      std::lock_guard lock(mu);
      if (u->items[0].ext.file % 2 == 1 && held.size() < 1) {
        held.push_back(u);
        return;
      }
      out.swap(held);
    }
    out.push_back(u);
    for (WorkUnit* w : out) {
      ++emitted;
      emit(w);
    }
  };
  bool drained = false;
  c.a.drain = [&] {
    drained = true;
    std::vector<WorkUnit*> out;
    out.swap(held);
    return out;
  };
  run_graph(c.a, pool, stats, 3);
  EXPECT_TRUE(drained);
  EXPECT_EQ(pool.free_count(), pool.buffer_count());
  EXPECT_GE(emitted.load(), 49);
}

TEST(GraphTest, AThrowingStageFailsItsUnitAndTheRunGoesOn) {
  io::BufferPool pool(4096, 4);
  LiveStats stats;
  Counting c(20);
  std::atomic<int> reached_second{0};
  std::string why;
  std::mutex mu;
  c.a.stages = {{kStageRead, StageKind::kIo,
                 [](WorkUnit& u) {
                   if (u.items[0].ext.file == 7) throw std::runtime_error("boom");
                 }},
                {kStageHash, StageKind::kCpu, [&](WorkUnit& u) {
                   if (!u.items[0].failed) ++reached_second;
                 }}};
  c.a.on_throw = [&](WorkUnit& u, const std::string& message) {
    std::lock_guard lock(mu);
    why = message;
    u.items[0].failed = true;
  };
  run_graph(c.a, pool, stats, 2);
  EXPECT_EQ(why, "read: boom");
  EXPECT_EQ(reached_second.load(), 19);
  EXPECT_EQ(pool.free_count(), pool.buffer_count());
}

TEST(GraphTest, StoppingEndsTheInput) {
  io::BufferPool pool(4096, 4);
  LiveStats stats;
  Counting c(1000);
  c.a.stopping = [&] { return c.made >= 10; };
  run_graph(c.a, pool, stats, 2);
  EXPECT_EQ(c.made, 10u);
}

TEST(GraphTest, SerialRunnerRunsTheSameAssemblyOneUnitAtATime) {
  io::BufferPool pool(4096, 2);
  LiveStats stats;
  Counting c(30);
  c.a.buffers_per_unit = 2;
  int stages_run = 0;
  c.a.stages = {{kStageRead, StageKind::kIo, [&](WorkUnit& u) {
                   EXPECT_TRUE(u.aux.valid());
                   EXPECT_EQ(pool.free_count(), 0u);
                   ++stages_run;
                 }}};
  int lasts = 0;
  c.a.last = [&](WorkUnit* u, const Emit& emit) {
    ++lasts;
    emit(u);
  };
  run_serial(c.a, pool, stats);
  EXPECT_EQ(stages_run, 30);
  EXPECT_EQ(lasts, 30);
  EXPECT_EQ(pool.free_count(), pool.buffer_count());
  EXPECT_GT(stats.stage_busy_ns[kStageRead].load(), 0u);
}

}  // namespace
}  // namespace barge::pipeline
