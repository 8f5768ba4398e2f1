#include "pipeline/engine/dir_pass.hpp"

#include <fcntl.h>

#include <utility>
#include <vector>

#include "io/path_ops.hpp"
#include "io/unique_fd.hpp"

namespace barge::pipeline {

void DirPass::run(const std::function<int(uint32_t, int, bool)>& enter,
                  const std::function<void(uint32_t, int)>& leave) {
  struct Frame {
    uint32_t index;
    io::UniqueFd fd;
  };
  std::vector<Frame> stack;
  io::UniqueFd root_parent;
  uint32_t root_parent_of = kNoParent;
  auto pop = [&] {
    if (leave && stack.back().fd.valid()) leave(stack.back().index, stack.back().fd.get());
    stack.pop_back();
  };
  for (uint32_t i = 0; i < plan_.entries.size(); ++i) {
    const Entry& e = plan_.entries[i];
    int parent_fd = -1;
    bool parent_ok = true;
    if (e.parent == kNoParent) {
      while (!stack.empty()) pop();
      if (root_parent_of != e.root || !root_parent.valid()) {
        auto fd = io::open_dir_path(plan_.dst_parent(e), io::DirOpen::kParent, true);
        root_parent = fd ? std::move(fd.value()) : io::UniqueFd();
        root_parent_of = e.root;
        if (!fd && on_error_) on_error_(fd.error().message);
      }
      parent_fd = root_parent.get();
      parent_ok = root_parent.valid();
    } else {
      while (!stack.empty() && stack.back().index != e.parent) pop();
      parent_ok = !stack.empty() && stack.back().fd.valid();
      parent_fd = parent_ok ? stack.back().fd.get() : -1;
    }
    int fd = enter(i, parent_fd, parent_ok);
    if (e.meta.type == io::FileType::kDirectory) stack.push_back(Frame{i, io::UniqueFd(fd)});
  }
  while (!stack.empty()) pop();
}

}  // namespace barge::pipeline
