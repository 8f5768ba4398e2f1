// send --sync on the receiver: DST, as it is, compared with the sender's plan. What differs
// is asked for (the ready frame's unwanted files are the rest), what stands in the way of an
// entry of another type is removed, and with --delete so is what SRC lacks (names the
// sender's --exclude covers are kept, as rsync's --delete keeps them).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/result.hpp"
#include "pipeline/core/hash.hpp"
#include "pipeline/core/plan.hpp"
#include "pipeline/core/stats.hpp"
#include "pipeline/remote/protocol.hpp"

namespace barge::pipeline::remote {

// Sync's placement: one source directory whose contents DST mirrors (DST is made when
// missing; its parent must exist).
io::Result<std::vector<Root>> resolve_sync_root(const std::vector<RemoteSource>& sources,
                                                const std::string& destination);

struct SyncVerdicts {
  std::vector<uint8_t> actions;  // per plan entry: kActTransfer, kActCreate, kActMeta or 0
  uint64_t deleted = 0;          // entries removed from DST (a tree counts once)
  uint64_t unchanged = 0;        // regular files DST already holds
};

// Directories are compared level by level (a level's directories in parallel), so a
// directory is listed only after what stood in its way was removed. `sums`: per entry, with
// checksum; `owner`: compare owner and group (the receiver can chown). Failures to list or
// remove are named in `errors`; the entries concerned are left alone.
SyncVerdicts compare_with_dst(const Plan& plan, const SyncRequest& req,
                              const std::vector<Hash128>& sums, bool owner, ErrorList& errors);

}  // namespace barge::pipeline::remote
