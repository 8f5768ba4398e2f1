// Minimal thread-safe logging to stderr. Library code reports through these functions so
// the CLI controls verbosity in one place (--quiet silences info, never errors).
#pragma once

#include <string>
#include <string_view>

namespace barge::io {

enum class LogLevel { kError = 0, kWarn = 1, kInfo = 2, kDebug = 3 };

void set_log_level(LogLevel level);
LogLevel log_level();
void log(LogLevel level, std::string_view message);
// Logs a message at most once per process for a given key (e.g. "io_uring unavailable").
void log_once(LogLevel level, std::string_view key, std::string_view message);

inline void log_error(std::string_view m) { log(LogLevel::kError, m); }
inline void log_warn(std::string_view m) { log(LogLevel::kWarn, m); }
inline void log_info(std::string_view m) { log(LogLevel::kInfo, m); }

}  // namespace barge::io
