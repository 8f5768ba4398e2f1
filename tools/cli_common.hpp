// Helpers shared by the CLI's commands: size flags, progress mode, the JSON report and the
// one-line summary.
#pragma once

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <string>

#include "pipeline/core/engine_options.hpp"
#include "pipeline/core/progress.hpp"
#include "pipeline/core/stats.hpp"

namespace barge::tools {

// A CLI11 validator-transform for sizes: rejects nonsense with a message naming the flag.
CLI::Validator size_validator();
// The engine's flags, the same in every command that moves data: --memory, --threads,
// --queue-depth, --io-backend, and --chunk-size with `chunk_help` (none when null).
void add_engine_flags(CLI::App* cmd, pipeline::EngineOptions& o, const char* chunk_help);
// --tune and --tune-seconds, with what the command's tuning picks.
void add_tune_flags(CLI::App* cmd, pipeline::EngineOptions& o, const char* help);
pipeline::ProgressMode progress_mode(bool quiet, const std::string& progress);
// Writes the report atomically (temporary + rename); 0, or an exit code after one line.
int write_report(const std::string& path, const nlohmann::json& j);
// Errors one per line, then (unless quiet) "barge: VERB: N files, ...".
void print_summary(const pipeline::RunResult& r, const char* verb, bool quiet);
// --tune: the choice and every probe (print_summary does it unless quiet).
void print_tune(const pipeline::RunResult& r);

}  // namespace barge::tools
