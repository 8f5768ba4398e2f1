#include "pipeline/engine/graph.hpp"

#include <oneapi/tbb/flow_graph.h>
#include <oneapi/tbb/task_arena.h>
#include <algorithm>
#include <chrono>
#include <memory>

namespace barge::pipeline {
namespace {

using Clock = std::chrono::steady_clock;

// Runs one stage body, counts its time and turns an exception into the unit's failure.
void run_stage(const Assembly& a, int stat, LiveStats& stats, WorkUnit& unit,
               const std::function<void()>& body) {
  auto t0 = Clock::now();
  try {
    body();
  } catch (const std::exception& ex) {
    if (a.on_throw) a.on_throw(unit, std::string(stage_name(stat)) + ": " + ex.what());
  }
  auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
  stats.stage_busy_ns[stat].fetch_add(static_cast<uint64_t>(ns), std::memory_order_relaxed);
}

void take_buffers(const Assembly& a, io::BufferPool& pool, WorkUnit& u) {
  u.buffer = pool.acquire();
  if (a.buffers_per_unit > 1) u.aux = pool.acquire();
}

}  // namespace

size_t units_in_flight(const io::BufferPool& pool, size_t buffers_per_unit) {
  return std::max<size_t>(1, pool.buffer_count() / std::max<size_t>(1, buffers_per_unit));
}

void run_graph(const Assembly& a, io::BufferPool& pool, LiveStats& stats, unsigned threads) {
  tbb::task_arena arena(static_cast<int>(std::max(1u, threads)));
  arena.execute([&] {
    using namespace tbb::flow;
    using Node = function_node<WorkUnit*, WorkUnit*>;
    graph g;
    input_node<WorkUnit*> source(g, [&](tbb::flow_control& fc) -> WorkUnit* {
      auto u = std::make_unique<WorkUnit>();
      if ((a.stopping && a.stopping()) || !a.next(*u)) {
        fc.stop();
        return nullptr;
      }
      return u.release();
    });
    limiter_node<WorkUnit*> limiter(g, units_in_flight(pool, a.buffers_per_unit));
    std::vector<std::unique_ptr<Node>> nodes;
    for (size_t k = 0; k < a.stages.size(); ++k) {
      const GraphStage& s = a.stages[k];
      const size_t conc = s.kind == StageKind::kIo ? size_t{threads} : size_t{unlimited};
      nodes.push_back(std::make_unique<Node>(g, conc, [&a, &s, &pool, &stats, k](WorkUnit* u) {
        // Never waits long: the limiter admits no more units than the pool has buffers for.
        if (k == 0) take_buffers(a, pool, *u);
        run_stage(a, s.stat, stats, *u, [&] { s.body(*u); });
        return u;
      }));
    }
    function_node<WorkUnit*, continue_msg> sink(g, unlimited, [](WorkUnit* u) {
      delete u;  // gives its buffers back to the pool
      return continue_msg();
    });
    using LastNode = multifunction_node<WorkUnit*, std::tuple<WorkUnit*>>;
    std::unique_ptr<LastNode> last;
    if (a.last) {
      last = std::make_unique<LastNode>(
          g, threads, [&](WorkUnit* u, LastNode::output_ports_type& ports) {
            if (a.stages.empty()) take_buffers(a, pool, *u);
            run_stage(a, a.last_stat, stats, *u, [&] {
              a.last(u, [&](WorkUnit* done) { std::get<0>(ports).try_put(done); });
            });
          });
    }
    make_edge(source, limiter);
    sender<WorkUnit*>* tail = &limiter;
    for (auto& n : nodes) {
      make_edge(*tail, *n);
      tail = n.get();
    }
    if (last) {
      make_edge(*tail, *last);
      make_edge(output_port<0>(*last), sink);
    } else {
      make_edge(*tail, sink);
    }
    make_edge(sink, limiter.decrementer());
    source.activate();
    g.wait_for_all();
  });
  if (a.drain)
    for (WorkUnit* u : a.drain()) delete u;
}

void run_serial(const Assembly& a, io::BufferPool& pool, LiveStats& stats) {
  for (;;) {
    if (a.stopping && a.stopping()) break;
    auto u = std::make_unique<WorkUnit>();
    if (!a.next(*u)) break;
    take_buffers(a, pool, *u);
    for (const GraphStage& s : a.stages) run_stage(a, s.stat, stats, *u, [&] { s.body(*u); });
    if (!a.last) continue;
    // A unit `last` holds back is released when it is emitted, possibly from a later call.
    WorkUnit* raw = u.release();
    run_stage(a, a.last_stat, stats, *raw,
              [&] { a.last(raw, [](WorkUnit* done) { delete done; }); });
  }
  if (a.drain)
    for (WorkUnit* u : a.drain()) delete u;
}

}  // namespace barge::pipeline
