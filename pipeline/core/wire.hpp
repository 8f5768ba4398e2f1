// Byte (de)serialisation for messages between ranks: little-endian fixed-width integers and
// length-prefixed strings. The reader checks every bound and throws WireError on a short or
// malformed message instead of reading past it.
#pragma once

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <string_view>

#include "pipeline/core/plan.hpp"

namespace barge::pipeline {

struct WireError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

class WireWriter {
 public:
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void u32(uint32_t v) { raw(&v, sizeof v); }
  void u64(uint64_t v) { raw(&v, sizeof v); }
  void i64(int64_t v) { raw(&v, sizeof v); }
  void str(std::string_view s) {
    u32(static_cast<uint32_t>(s.size()));
    out_.append(s);
  }
  std::string take() { return std::move(out_); }
  const std::string& bytes() const { return out_; }

 private:
  void raw(const void* p, size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string out_;
};

class WireReader {
 public:
  explicit WireReader(std::string_view in) : in_(in) {}
  bool done() const { return pos_ == in_.size(); }
  uint8_t u8() { return static_cast<uint8_t>(take(1)[0]); }
  uint32_t u32() { return fixed<uint32_t>(); }
  uint64_t u64() { return fixed<uint64_t>(); }
  int64_t i64() { return fixed<int64_t>(); }
  std::string str() {
    uint32_t n = u32();
    return std::string(take(n));
  }

 private:
  template <class T>
  T fixed() {
    T v;
    std::memcpy(&v, take(sizeof v).data(), sizeof v);
    return v;
  }
  std::string_view take(size_t n) {
    if (n > in_.size() - pos_) throw WireError("truncated message");
    std::string_view s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  std::string_view in_;
  size_t pos_ = 0;
};

// Metadata as it travels between ranks and in snapshot manifests. read_meta checks the type.
void write_meta(WireWriter& w, const io::FileMeta& m);
io::FileMeta read_meta(WireReader& r);

// An entry as it travels between ranks (parent index is rank-local and not sent).
void write_entry(WireWriter& w, const Entry& e);
Entry read_entry(WireReader& r);

}  // namespace barge::pipeline
