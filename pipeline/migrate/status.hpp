// barge migrate status: where a migration stands, from its state directory alone (any
// node, any time, while a phase runs): text, JSON (fields `phase`, `passes`, `bytes_done`,
// `predicted_remaining_seconds`: a contract) and Prometheus text-format metrics for the
// node_exporter textfile collector.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "io/result.hpp"
#include "pipeline/migrate/plan.hpp"
#include "pipeline/migrate/state.hpp"

namespace barge::pipeline::migrate {

struct MigrateStatus {
  std::string src, dst, phase;
  unsigned passes = 0;        // finished
  unsigned pass_running = 0;  // under way (0: none)
  double pass_elapsed_seconds = 0;
  uint64_t bytes_done = 0;  // copied by the passes so far
  uint64_t files_done = 0;
  uint64_t files = 0, bytes = 0;  // the source as planned
  double predicted_full_copy_seconds = 0;
  std::optional<double> predicted_remaining_seconds;  // until the migration is done
  std::optional<double> predicted_cutover_seconds;    // the downtime
  std::optional<double> cutover_eta_unix;             // when the cutover can start
  std::optional<PassRecord> last;
};

MigrateStatus compute_status(const State& s, const PlanResult& plan, double now);
// State and plan.json of `dir`.
io::Result<MigrateStatus> load_status(const std::string& dir, double now);

nlohmann::json to_json(const MigrateStatus& s);
std::string human_status(const MigrateStatus& s);
std::string prometheus_metrics(const MigrateStatus& s);
// Written through a temporary and a rename (the textfile collector's rule).
io::Status write_metrics(const std::string& path, const MigrateStatus& s);

}  // namespace barge::pipeline::migrate
