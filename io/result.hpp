// Result<T>: the value-or-error type for expected per-item outcomes on the data path
// (short I/O, EAGAIN, permission denied on one file, checksum mismatch). Setup failures that
// end a run throw instead; programmer errors assert.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace barge::io {

// One line a user can act on: what failed, where, and why.
struct Error {
  int errnum = 0;       // errno value, or 0 when the failure is not a system error
  std::string message;  // "open /a/b: Permission denied"

  static Error from_errno(int err, const std::string& what) {
    return Error{err, what + ": " + std::strerror(err)};
  }
  static Error plain(std::string what) { return Error{0, std::move(what)}; }
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error err) : v_(std::move(err)) {}  // NOLINT
  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() & { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  const T& value() const& { return std::get<0>(v_); }
  T* operator->() { return &std::get<0>(v_); }
  T& operator*() & { return std::get<0>(v_); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result<void> equivalent.
class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error err) : err_(std::move(err)), ok_(false) {}  // NOLINT
  static Status success() { return Status(); }
  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const { return err_; }

 private:
  Error err_;
  bool ok_ = true;
};

}  // namespace barge::io
