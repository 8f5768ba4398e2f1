// Per-rank statistics of a multi-rank run, in one wire layout for every command (copy, sync,
// backup, restore), reduced once at the end of the run.
#pragma once

#include <string>
#include <vector>

#include "pipeline/core/stats.hpp"
#include "pipeline/core/wire.hpp"
#include "transport/comm.hpp"

namespace barge::pipeline {

void write_rank_stats(WireWriter& w, const RankStats& s);
RankStats read_rank_stats(WireReader& r);  // throws WireError on a short or bad record

// Collective: every rank gives its own stats (rank, host and peak RSS filled in here) and
// gets every rank's back, in rank order. Their sums go into `into`: files, bytes
// (committed), bytes_transferred, bytes_verified, bytes_cloned, dirs, symlinks, others, stage busy
// times; the largest peak RSS; the balance (least over most busy seconds). `into.ranks` lists them
// when `list_ranks`.
std::vector<RankStats> reduce_rank_stats(transport::Comm& comm, RankStats me, RunResult& into,
                                         bool list_ranks);

// The run's exit code as every rank agrees it: the largest of their codes. Collective.
int agree_exit_code(transport::Comm& comm, int mine);

}  // namespace barge::pipeline
