#include "pipeline/migrate/state.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "io/unique_fd.hpp"
#include "pipeline/core/plan.hpp"

namespace barge::pipeline::migrate {

namespace fs = std::filesystem;
using nlohmann::json;

double now_unix() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

json to_json(const PassRecord& p) {
  return json{{"pass", p.pass},
              {"kind", p.kind},
              {"started_unix", p.started_unix},
              {"seconds", p.seconds},
              {"files_changed", p.files_changed},
              {"bytes_changed", p.bytes_changed},
              {"entries_changed", p.entries_changed},
              {"entries_deleted", p.entries_deleted},
              {"files_retried", p.files_retried},
              {"errors", p.errors},
              {"keep_seconds", p.keep_seconds},
              {"rate_bytes_per_second", p.rate_bytes_per_second()},
              {"error_samples", p.error_samples}};
}

io::Result<PassRecord> pass_from_json(const json& j) {
  try {
    PassRecord p;
    p.pass = j.at("pass").get<unsigned>();
    p.kind = j.at("kind").get<std::string>();
    p.started_unix = j.at("started_unix").get<double>();
    p.seconds = j.at("seconds").get<double>();
    p.files_changed = j.at("files_changed").get<uint64_t>();
    p.bytes_changed = j.at("bytes_changed").get<uint64_t>();
    p.entries_changed = j.value("entries_changed", uint64_t{0});
    p.entries_deleted = j.value("entries_deleted", uint64_t{0});
    p.files_retried = j.value("files_retried", uint64_t{0});
    p.errors = j.value("errors", uint64_t{0});
    p.keep_seconds = j.value("keep_seconds", 0.0);
    p.error_samples = j.value("error_samples", std::vector<std::string>{});
    if (p.pass == 0 || p.seconds < 0) return io::Error::plain("pass number 0 or negative time");
    return p;
  } catch (const std::exception& e) {
    return io::Error::plain(e.what());
  }
}

io::Result<std::vector<PassRecord>> parse_journal(std::string_view bytes) {
  std::vector<PassRecord> out;
  size_t line_no = 0;
  while (!bytes.empty()) {
    ++line_no;
    size_t nl = bytes.find('\n');
    if (nl == std::string_view::npos) break;  // torn by a kill: never acknowledged
    std::string_view line = bytes.substr(0, nl);
    bytes.remove_prefix(nl + 1);
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object())
      return io::Error::plain("line " + std::to_string(line_no) + ": not a JSON object");
    auto p = pass_from_json(j);
    if (!p) return io::Error::plain("line " + std::to_string(line_no) + ": " + p.error().message);
    if (!out.empty() && p.value().pass <= out.back().pass)
      return io::Error::plain("line " + std::to_string(line_no) + ": pass " +
                              std::to_string(p.value().pass) + " after pass " +
                              std::to_string(out.back().pass));
    out.push_back(std::move(p).value());
  }
  return out;
}

io::Result<std::string> read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return io::Error::from_errno(errno, "open " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

io::Status write_file_atomic(const std::string& path, std::string_view bytes) {
  const std::string tmp = path + ".tmp";
  io::UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (fd.get() < 0) return io::Error::from_errno(errno, "create " + tmp);
  for (size_t done = 0; done < bytes.size();) {
    ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return io::Error::from_errno(errno, "write " + tmp);
    done += static_cast<size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return io::Error::from_errno(errno, "fsync " + tmp);
  if (auto st = fd.close(); !st) return st;
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    return io::Error::from_errno(errno, "rename " + tmp + " to " + path);
  return io::Status::success();
}

namespace {

std::string state_file(const std::string& dir) { return dir + "/state.json"; }
std::string journal_file(const std::string& dir) { return dir + "/journal.jsonl"; }

json state_json(const State& s) {
  return json{{"format", "barge-migrate-state v1"},
              {"src", s.src},
              {"dst", s.dst},
              {"phase", s.phase},
              {"pass_running", s.pass_running},
              {"pass_started_unix", s.pass_started_unix},
              {"rolled_back", s.rolled_back},
              {"created_unix", s.created_unix},
              {"updated_unix", s.updated_unix}};
}

}  // namespace

io::Result<State> load_state(const std::string& dir) {
  auto bytes = read_file(state_file(dir));
  if (!bytes)
    return io::Error::plain("--state " + dir +
                            ": no migration there (run barge migrate plan SRC DST --state " + dir +
                            " first)");
  json j = json::parse(bytes.value(), nullptr, false);
  State s;
  s.dir = dir;
  try {
    if (j.is_discarded() || j.value("format", "") != "barge-migrate-state v1")
      return io::Error::plain(state_file(dir) + ": not a barge migration state");
    s.src = j.at("src").get<std::string>();
    s.dst = j.at("dst").get<std::string>();
    s.phase = j.at("phase").get<std::string>();
    s.pass_running = j.value("pass_running", 0u);
    s.pass_started_unix = j.value("pass_started_unix", 0.0);
    s.rolled_back = j.value("rolled_back", std::vector<unsigned>{});
    s.created_unix = j.value("created_unix", 0.0);
    s.updated_unix = j.value("updated_unix", 0.0);
  } catch (const std::exception& e) {
    return io::Error::plain(state_file(dir) + ": " + e.what());
  }
  auto journal = read_file(journal_file(dir));
  if (journal) {
    auto passes = parse_journal(journal.value());
    if (!passes) return io::Error::plain(journal_file(dir) + ": " + passes.error().message);
    s.passes = std::move(passes).value();
  }
  return s;
}

io::Result<State> create_state(const std::string& dir, const std::string& src,
                               const std::string& dst) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return io::Error::plain("--state " + dir + ": " + ec.message());
  const std::string abs_src = canonical_or_parent(src), abs_dst = canonical_or_parent(dst);
  if (fs::exists(state_file(dir))) {
    auto s = load_state(dir);
    if (!s) return s.error();
    if (s.value().src != abs_src || s.value().dst != abs_dst)
      return io::Error::plain("--state " + dir + ": holds the migration of " + s.value().src +
                              " to " + s.value().dst + ", not " + abs_src + " to " + abs_dst);
    return s;
  }
  State s;
  s.dir = dir;
  s.src = abs_src;
  s.dst = abs_dst;
  s.created_unix = now_unix();
  if (auto st = save_state(s); !st) return st.error();
  return s;
}

io::Status save_state(State& s) {
  s.updated_unix = now_unix();
  return write_file_atomic(
      state_file(s.dir), state_json(s).dump(2, ' ', false, json::error_handler_t::replace) + "\n");
}

io::Status append_pass(State& s, const PassRecord& p) {
  const std::string path = journal_file(s.dir);
  // A line a kill cut short is cut off first, so that the new one starts a line.
  if (auto old = read_file(path); old && !old.value().empty() && old.value().back() != '\n') {
    size_t keep = old.value().rfind('\n');
    if (::truncate(path.c_str(), keep == std::string::npos ? 0 : static_cast<off_t>(keep + 1)) != 0)
      return io::Error::from_errno(errno, "truncate " + path);
  }
  io::UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (fd.get() < 0) return io::Error::from_errno(errno, "open " + path);
  const std::string line = to_json(p).dump(-1, ' ', false, json::error_handler_t::replace) + "\n";
  if (::write(fd.get(), line.data(), line.size()) != static_cast<ssize_t>(line.size()))
    return io::Error::from_errno(errno, "write " + path);
  if (::fsync(fd.get()) != 0) return io::Error::from_errno(errno, "fsync " + path);
  s.passes.push_back(p);
  return fd.close();
}

}  // namespace barge::pipeline::migrate
