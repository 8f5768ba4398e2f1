// The one graph builder. Every data-moving command is an Assembly: a serial source that
// fills work units, the stage functors it runs on them in order, and an optional last stage
// that may hold units back. run_graph wires an assembly into a oneTBB flow graph:
//
//   input ─► limiter ─► stage 1 ─► ... ─► stage n ─► [last] ─► sink ─┐
//  (next)   (tokens)                                          frees  │
//              ▲                                              buffers│
//              └──────────────────── decrement ◄─────────────────────┘
//
// Backpressure is the token count: a unit takes `buffers_per_unit` pool buffers when it is
// admitted and gives them back at the sink, and the limiter admits
// pool.buffer_count() / buffers_per_unit units, so payload memory never exceeds the pool
// whatever the dataset. Stages are plain functors over WorkUnit, free of TBB types.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "io/buffer_pool.hpp"
#include "pipeline/core/stats.hpp"
#include "pipeline/engine/work_unit.hpp"

namespace barge::pipeline {

// kIo stages block in the kernel and run on up to `threads` units at once; kCpu stages run
// on as many as the arena has threads for.
enum class StageKind : uint8_t { kIo, kCpu };

struct GraphStage {
  int stat = kStageRead;  // where the time it takes is counted (LiveStats::stage_busy_ns)
  StageKind kind = StageKind::kIo;
  std::function<void(WorkUnit&)> body;
};

using Emit = std::function<void(WorkUnit*)>;

struct Assembly {
  // Fills the next unit's items (called serially); false when there is no more work.
  std::function<bool(WorkUnit&)> next;
  // Polled before each unit: true ends the input (a stop signal, a fatal error).
  std::function<bool()> stopping;
  std::vector<GraphStage> stages;
  // Optional last stage: hands every unit it is done with to emit, now or from a later call
  // (copy's commit holds a large file's chunks back until their predecessors are in).
  std::function<void(WorkUnit*, const Emit&)> last;
  int last_stat = kStageCommit;
  // After the graph: the units `last` still holds (a stopped run), released by the builder.
  std::function<std::vector<WorkUnit*>()> drain;
  // A stage threw: the run stops with this message, and the unit's items are failed here.
  std::function<void(WorkUnit&, const std::string&)> on_throw;
  // Pool buffers a unit holds: 1, or 2 for assemblies with a codec (WorkUnit::aux).
  size_t buffers_per_unit = 1;
};

// Units in flight at most: the pool's buffers shared out by buffers_per_unit (at least 1).
size_t units_in_flight(const io::BufferPool& pool, size_t buffers_per_unit);

// Runs the assembly as a flow graph on an arena of `threads`.
void run_graph(const Assembly& a, io::BufferPool& pool, LiveStats& stats, unsigned threads);

// The same stages one unit at a time on the calling thread: for a few small files, where a
// graph's set-up costs more than its overlap gains.
void run_serial(const Assembly& a, io::BufferPool& pool, LiveStats& stats);

}  // namespace barge::pipeline
