// send's arguments: each source as the sender walks it and names it to the receiver, and the
// checks of the options (validate in remote.hpp).
#pragma once

#include <string>

#include "io/result.hpp"
#include "pipeline/core/plan.hpp"

namespace barge::pipeline::remote {

// The source `raw` (as given) as a root to walk, and `as`, the name and kind the receiver
// places it by ("." for SRC/.); a missing or unreadable source, or "/", is refused.
io::Result<Root> local_root(const std::string& raw, RemoteSource& as);

}  // namespace barge::pipeline::remote
