// A fresh temporary directory per test, removed with everything in it afterwards.
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <string>

namespace barge::test {

class TempDir {
 public:
  explicit TempDir(const char* base = nullptr) {
    std::string tmpl =
        std::string(base ? base : (std::getenv("TMPDIR") ? std::getenv("TMPDIR") : "/tmp")) +
        "/barge-test-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

}  // namespace barge::test
