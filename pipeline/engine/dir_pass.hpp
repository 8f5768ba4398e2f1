// DirPass: one pre-order pass over a plan's destination tree holding a stack of open
// directory descriptors, so every operation is relative to its parent (deep trees past
// PATH_MAX work, and each directory is opened once). `enter` runs for every entry in
// pre-order; `leave` runs for each directory after everything below it (post-order).
#pragma once

#include <functional>

#include "pipeline/core/plan.hpp"

namespace barge::pipeline {

class DirPass {
 public:
  // on_error receives failures to open a root's destination parent (its subtree is skipped).
  explicit DirPass(const Plan& plan, std::function<void(const std::string&)> on_error = nullptr)
      : plan_(plan), on_error_(std::move(on_error)) {}
  // enter(index, parent_fd, parent_ok) returns an open fd for a directory entry to descend
  // into (the pass owns and closes it), or -1. leave(index, fd) may be null.
  void run(const std::function<int(uint32_t, int, bool)>& enter,
           const std::function<void(uint32_t, int)>& leave);

 private:
  const Plan& plan_;
  std::function<void(const std::string&)> on_error_;
};

}  // namespace barge::pipeline
