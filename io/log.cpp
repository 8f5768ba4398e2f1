#include "io/log.hpp"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <set>
#include <string>

namespace barge::io {
namespace {
std::atomic<int> g_level{static_cast<int>(LogLevel::kInfo)};
std::mutex g_mu;
std::set<std::string, std::less<>>& once_keys() {
  static std::set<std::string, std::less<>> keys;
  return keys;
}
}  // namespace

void set_log_level(LogLevel level) { g_level.store(static_cast<int>(level)); }
LogLevel log_level() { return static_cast<LogLevel>(g_level.load()); }

void log(LogLevel level, std::string_view message) {
  if (static_cast<int>(level) > g_level.load()) return;
  static constexpr const char* kPrefix[] = {"error: ", "warning: ", "", "debug: "};
  std::string line = "barge: ";
  line += kPrefix[static_cast<int>(level)];
  line += message;
  line += '\n';
  std::lock_guard lock(g_mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
}

void log_once(LogLevel level, std::string_view key, std::string_view message) {
  {
    std::lock_guard lock(g_mu);
    if (!once_keys().emplace(key).second) return;
  }
  log(level, message);
}

}  // namespace barge::io
