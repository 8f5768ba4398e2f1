#include "pipeline/migrate/status.hpp"

#include <algorithm>
#include <ctime>
#include <nlohmann/json.hpp>

#include "pipeline/migrate/html.hpp"

namespace barge::pipeline::migrate {

using nlohmann::json;

MigrateStatus compute_status(const State& s, const PlanResult& plan, double now) {
  MigrateStatus st;
  st.src = s.src;
  st.dst = s.dst;
  st.phase = s.phase;
  st.passes = static_cast<unsigned>(s.passes.size());
  st.pass_running = s.pass_running;
  if (s.pass_running && s.pass_started_unix > 0)
    st.pass_elapsed_seconds = now - s.pass_started_unix;
  for (const auto& p : s.passes) {
    st.bytes_done += p.bytes_changed;
    st.files_done += p.files_changed;
  }
  if (!s.passes.empty()) st.last = s.passes.back();
  st.files = plan.tree.files;
  st.bytes = plan.tree.bytes;
  st.predicted_full_copy_seconds = plan.prediction.full_copy_seconds;
  Prediction p = predict(plan.tree, plan.rates, s.passes, std::nullopt, now);
  st.predicted_cutover_seconds = p.cutover_seconds;
  if (s.phase == kPhaseDone) {
    st.predicted_remaining_seconds = 0;
    return st;
  }
  // Until ready for the cutover: the rest of the full copy, or of the catch-up pass under
  // way; then the cutover itself where it can be predicted.
  double to_ready = 0;
  if (s.passes.empty()) {
    to_ready = std::max(0.0, p.full_copy_seconds - st.pass_elapsed_seconds);
  } else if (s.phase != kPhaseReady && p.catch_up_seconds) {
    to_ready = std::max(0.0, *p.catch_up_seconds - st.pass_elapsed_seconds);
  }
  st.cutover_eta_unix = now + to_ready;
  st.predicted_remaining_seconds = to_ready + p.cutover_seconds.value_or(0);
  return st;
}

io::Result<MigrateStatus> load_status(const std::string& dir, double now) {
  auto s = load_state(dir);
  if (!s) return s.error();
  PlanResult plan;
  if (auto bytes = read_file(dir + "/plan.json"); bytes) {
    json j = json::parse(bytes.value(), nullptr, false);
    if (j.is_discarded() || !j.is_object()) return io::Error::plain(dir + "/plan.json: not JSON");
    plan = plan_from_json(j);
  }
  return compute_status(s.value(), plan, now);
}

namespace {

template <class T>
json opt(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

}  // namespace

json to_json(const MigrateStatus& s) {
  json j{{"src", s.src},
         {"dst", s.dst},
         {"phase", s.phase},
         {"passes", s.passes},
         {"pass_running", s.pass_running},
         {"pass_elapsed_seconds", s.pass_elapsed_seconds},
         {"bytes_done", s.bytes_done},
         {"files_done", s.files_done},
         {"files", s.files},
         {"bytes", s.bytes},
         {"predicted_full_copy_seconds", s.predicted_full_copy_seconds},
         {"predicted_remaining_seconds", opt(s.predicted_remaining_seconds)},
         {"predicted_cutover_seconds", opt(s.predicted_cutover_seconds)},
         {"cutover_eta_unix", opt(s.cutover_eta_unix)}};
  if (s.last) j["last_pass"] = to_json(*s.last);
  return j;
}

std::string human_status(const MigrateStatus& s) {
  std::string out = "migrate status: " + s.src + " -> " + s.dst + "\n";
  out += "  phase        " + s.phase;
  if (s.pass_running)
    out += " (pass " + std::to_string(s.pass_running) + " under way for " +
           duration_text(s.pass_elapsed_seconds) + ")";
  out += "\n  passes       " + std::to_string(s.passes) + " finished, " +
         std::to_string(s.files_done) + " files (" + human_bytes(s.bytes_done) + ") copied\n";
  if (s.last)
    out += "  last pass    " + std::to_string(s.last->pass) + " (" + s.last->kind +
           "): " + std::to_string(s.last->files_changed) + " files, " +
           human_bytes(s.last->bytes_changed) + " in " + duration_text(s.last->seconds) + "\n";
  if (s.predicted_remaining_seconds)
    out += "  remaining    " + duration_text(*s.predicted_remaining_seconds) + " predicted\n";
  if (s.predicted_cutover_seconds)
    out +=
        "  cutover      " + duration_text(*s.predicted_cutover_seconds) + " predicted downtime\n";
  if (s.cutover_eta_unix && s.phase != kPhaseDone) {
    std::time_t t = static_cast<std::time_t>(*s.cutover_eta_unix);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %Z", std::localtime(&t));
    out += "  ready by     " + std::string(buf) + "\n";
  }
  return out;
}

std::string prometheus_metrics(const MigrateStatus& s) {
  std::string out;
  auto metric = [&](const std::string& name, const std::string& help, const std::string& type,
                    double value, const std::string& labels = "") {
    out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + labels +
           " " + fixed(value, value == static_cast<double>(static_cast<int64_t>(value)) ? 0 : 3) +
           "\n";
  };
  out +=
      "# HELP barge_migrate_phase The migration's phase (1 for the current one).\n"
      "# TYPE barge_migrate_phase gauge\n";
  for (const char* ph :
       {kPhasePlanned, kPhaseCopying, kPhaseCatchingUp, kPhaseReady, kPhaseCutover, kPhaseDone})
    out += std::string("barge_migrate_phase{phase=\"") + ph + "\"} " + (s.phase == ph ? "1" : "0") +
           "\n";
  metric("barge_migrate_passes_total", "Passes finished.", "counter", s.passes);
  metric("barge_migrate_pass_running", "The pass under way (0: none).", "gauge", s.pass_running);
  metric("barge_migrate_pass_elapsed_seconds", "Time the pass under way has taken so far.", "gauge",
         s.pass_elapsed_seconds);
  metric("barge_migrate_bytes_done_total", "Bytes the passes have copied.", "counter",
         static_cast<double>(s.bytes_done));
  metric("barge_migrate_files_done_total", "Files the passes have copied.", "counter",
         static_cast<double>(s.files_done));
  metric("barge_migrate_source_bytes", "Bytes in the source as planned.", "gauge",
         static_cast<double>(s.bytes));
  metric("barge_migrate_source_files", "Files in the source as planned.", "gauge",
         static_cast<double>(s.files));
  if (s.predicted_remaining_seconds)
    metric("barge_migrate_predicted_remaining_seconds", "Predicted time until done.", "gauge",
           *s.predicted_remaining_seconds);
  if (s.predicted_cutover_seconds)
    metric("barge_migrate_predicted_cutover_seconds", "Predicted downtime of the cutover.", "gauge",
           *s.predicted_cutover_seconds);
  if (s.last) {
    metric("barge_migrate_last_pass_bytes", "Bytes the last finished pass copied.", "gauge",
           static_cast<double>(s.last->bytes_changed));
    metric("barge_migrate_last_pass_files", "Files the last finished pass copied.", "gauge",
           static_cast<double>(s.last->files_changed));
    metric("barge_migrate_last_pass_seconds", "Duration of the last finished pass.", "gauge",
           s.last->seconds);
  }
  return out;
}

io::Status write_metrics(const std::string& path, const MigrateStatus& s) {
  return write_file_atomic(path, prometheus_metrics(s));
}

}  // namespace barge::pipeline::migrate
