// copy --tune: a short, bounded probe on the actual source and destination that picks the
// engine's chunk size, queue depth, threads and O_DIRECT before the copy starts.
//
// How it probes depends on where the bytes are:
//  - mostly in large files (files of 64 MiB or more hold half the bytes): "region copy".
//    Distinct regions of the largest files are read through io_uring and written to a
//    scratch file beside the destination, with each setting, for a fraction of a second each.
//  - otherwise: "sample copy". Disjoint random samples of the plan's files (so that no probe
//    reads what another has put in the page cache) are copied by the engine itself, read →
//    hash → write → commit, into a scratch directory beside the destination.
// Settings are tried one change at a time from the current best (the starting settings
// first; then the queue depth, O_DIRECT and the chunk size for large files, the threads, the
// chunk size and O_DIRECT for many files); a change is kept only when it is faster by more
// than kTuneGain, so noise does not move the choice away from the defaults. A probe starts
// only while one as long as the last fits in --tune-seconds and in a twentieth of the copy's
// time as the first probe predicts it, and reads at most a fortieth of the tree: a job too
// small to repay tuning stops after the first probe.
// Writes count their write-back when the copy cannot stay in the page cache (more bytes than
// the kernel's dirty limit) or with --fsync. The scratch is removed; the probe's time is part
// of the run's time. Trees too small to be worth a probe keep the defaults, and say so.
#pragma once

#include "pipeline/core/plan.hpp"
#include "pipeline/core/stats.hpp"
#include "pipeline/engine/copy_options.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline {

struct TuneLimits {
  double seconds = 5;                 // the whole probe stops issuing new settings after this
  uint64_t min_bytes = 256ull << 20;  // smaller trees keep the defaults...
  uint64_t min_files = 5000;          // ...unless they have this many files
  unsigned default_threads = 0;  // the threads a copy gets without --threads (0: one process's)
};

// `opts` with the probe's choice applied; `report` says what was tried and chosen.
// Under mpirun/srun (`comm` of several ranks, `plan` this rank's share of the walk) every rank
// probes its own files with the same setting at the same time, so the probe sees the shared
// storage as the copy will: a probe's rate is the bytes of all ranks over the slowest rank's
// time, every stop is agreed, and every rank takes rank 0's choice. A probe that fails on one
// rank ends the probing on all (the copy then keeps the settings given).
CopyOptions tune_copy(const CopyOptions& opts, const Plan& plan, const TuneLimits& limits,
                      TuneReport& report, transport::Comm* comm = nullptr);

}  // namespace barge::pipeline
