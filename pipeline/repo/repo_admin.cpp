// barge snapshots / verify REPO / forget: reading a repository as a whole.
//
// verify reads every blob the chosen snapshots reference, once, spreading packs over ranks
// and blobs over cores; each blob's header, decompression and XXH3-128 are checked. Damage
// is reported per file, with every snapshot that needs the file.
#include <sys/stat.h>
#include <unistd.h>

#include <fcntl.h>
#include <oneapi/tbb/global_control.h>
#include <oneapi/tbb/task_arena.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <map>
#include <set>
#include <unordered_set>

#include "io/unique_fd.hpp"
#include "pipeline/core/rank_stats.hpp"
#include "pipeline/core/wire.hpp"
#include "pipeline/engine/codec_stages.hpp"
#include "pipeline/engine/copy_internal.hpp"
#include "pipeline/engine/graph.hpp"
#include "pipeline/repo/backup.hpp"
#include "pipeline/repo/repository.hpp"

namespace barge::pipeline {
namespace {

using Clock = std::chrono::steady_clock;

struct BlobKey {
  std::string pack;
  uint64_t offset = 0;
  friend bool operator<(const BlobKey& a, const BlobKey& b) {
    return a.pack != b.pack ? a.pack < b.pack : a.offset < b.offset;
  }
};

// Fills a forget's or repair's result with the error that ended it.
template <class Result>
Result fatal_result(Result& out, std::string why) {
  out.fatal = std::move(why);
  out.exit_code = kExitFatal;
  return out;
}

// verify REPO = pack-fetch → decompress+check over the blobs `mine` lists, on the graph; a
// blob of a pack in pack_error, or one that fails a check, gets its damage.
using BlobList = std::vector<std::pair<const BlobKey*, const repo::BlobRef*>>;
std::vector<std::string> check_blobs(const RepoVerifyOptions& opts, const BlobList& mine,
                                     const std::map<std::string, io::UniqueFd>& fds,
                                     const std::map<std::string, std::string>& pack_error,
                                     unsigned threads) {
  std::vector<std::string> damage(mine.size());
  std::vector<int> pack_fd;  // per pack of `mine`, by first use
  std::vector<std::string> pack_names;
  std::map<std::string, uint32_t> pack_index;
  uint64_t max_raw = 0, max_stored = 0;
  for (const auto& [key, ref] : mine) {
    if (pack_index.try_emplace(key->pack, static_cast<uint32_t>(pack_names.size())).second) {
      pack_names.push_back(key->pack);
      auto fd = fds.find(key->pack);
      pack_fd.push_back(fd == fds.end() ? -1 : fd->second.get());
    }
    max_raw = std::max<uint64_t>(max_raw, ref->raw_bytes);
    max_stored = std::max<uint64_t>(max_stored, ref->stored_bytes);
  }
  const repo::BlobPool size =
      repo::blob_pool(max_raw, max_stored, opts.memory_bytes, mine.size(), threads);
  io::BufferPool pool(size.buffer_bytes, size.count);
  BackendSet backends(io::BackendOptions{opts.backend, opts.queue_depth, &pool});
  auto fail = [&](Item& it, const std::string& why) {
    it.failed = true;
    const BlobKey& key = *mine[it.ext.file].first;
    damage[it.ext.file] = "pack " + key.pack + " offset " + std::to_string(key.offset) + ": " + why;
  };
  repo::PackFetchStage fetch(
      [&](uint32_t pack, std::string* err) {
        if (pack_fd[pack] < 0) *err = pack_error.at(pack_names[pack]);
        return pack_fd[pack];
      },
      backends.source(), [&](Item& it, const io::Error& e) { fail(it, e.message); });
  DecompressCheckStage check(fail);
  size_t next = 0;
  Assembly a;
  a.buffers_per_unit = 2;
  a.next = [&](WorkUnit& u) {
    repo::BlobUnitFill fill(u, size.buffer_bytes, opts.max_files_per_unit);
    for (; next < mine.size() && !fill.full(); ++next) {
      Item it = repo::blob_item(*mine[next].second, pack_index.at(mine[next].first->pack));
      it.ext.file = static_cast<uint32_t>(next);
      if (!fill.add(std::move(it))) break;
    }
    return !u.items.empty();
  };
  a.stages = {{kStagePackFetch, StageKind::kIo, [&](WorkUnit& u) { fetch(u); }},
              {kStageDecompress, StageKind::kCpu, [&](WorkUnit& u) { check(u); }}};
  a.on_throw = [&](WorkUnit& u, const std::string& why) {
    for (Item& it : u.items) fail(it, why);
  };
  tbb::global_control gc(tbb::global_control::max_allowed_parallelism, threads);
  LiveStats stats;
  run_graph(a, pool, stats, threads);
  return damage;
}

}  // namespace

io::Result<std::vector<SnapshotListing>> list_snapshots(const std::string& repo_path) {
  auto r = repo::Repository::open(repo_path, false);
  if (!r) return r.error();
  auto ids = r->list_snapshots();
  if (!ids) return ids.error();
  std::vector<SnapshotListing> out;
  for (const std::string& id : *ids) {
    SnapshotListing l;
    l.id = id;
    auto s = r->load_snapshot(id);
    if (s) {
      l.summary = std::move(s.value());
      l.summary.entries.clear();
      l.summary.entries.shrink_to_fit();
    } else {
      l.damage = s.error().message;
    }
    out.push_back(std::move(l));
  }
  return out;
}

namespace {

// Rank 0 lists the snapshots to check (all, or --snapshot's); every rank gets the list.
std::vector<std::string> agreed_ids(const repo::Repository* r, const RepoVerifyOptions& opts,
                                    transport::Comm& comm, std::string& error) {
  std::vector<std::string> ids;
  if (r && comm.rank() == 0) {
    if (opts.snapshot.empty()) {
      auto all = r->list_snapshots();
      if (all)
        ids = *all;
      else
        error = all.error().message;
    } else {
      auto one = r->resolve(opts.snapshot);
      if (one)
        ids.push_back(*one);
      else
        error = one.error().message;
    }
  }
  WireWriter w;
  for (const std::string& id : ids) w.str(id);
  std::string b = comm.broadcast(w.take(), 0);
  ids.clear();
  WireReader rd(b);
  while (!rd.done()) ids.push_back(rd.str());
  return ids;
}

// This rank's packs opened and their headers checked; a missing or foreign pack gets an
// error that damages all its blobs.
void open_packs(const repo::Repository& r, const std::set<std::string>& packs,
                std::map<std::string, io::UniqueFd>& fds,
                std::map<std::string, std::string>& pack_error) {
  for (const std::string& p : packs) {
    std::string path = r.pack_path(p);
    io::UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) {
      pack_error[p] = io::Error::from_errno(errno, "open " + path).message;
      continue;
    }
    std::byte header[repo::kPackHeaderBytes];
    if (::pread(fd.get(), header, sizeof header, 0) != static_cast<ssize_t>(sizeof header)) {
      pack_error[p] = path + ": pack truncated";
      continue;
    }
    if (auto st = repo::check_pack_header(header, p); !st) {
      pack_error[p] = path + ": " + st.error().message;
      continue;
    }
    fds.emplace(p, std::move(fd));
  }
}

// Rank 0: one line per damaged file, with the snapshots that need it; `gathered` holds
// every rank's damaged blobs.
std::vector<std::string> damage_lines(const std::vector<repo::Snapshot>& snaps,
                                      const std::vector<std::string>& gathered) {
  std::map<BlobKey, std::string> bad;
  for (const std::string& g : gathered) {
    WireReader rd(g);
    while (!rd.done()) {
      BlobKey k;
      k.pack = rd.str();
      k.offset = rd.u64();
      bad.emplace(std::move(k), rd.str());
    }
  }
  std::map<std::string, std::pair<std::string, std::vector<std::string>>> files;
  for (const repo::Snapshot& s : snaps) {
    for (const repo::SnapEntry& e : s.entries) {
      for (const repo::BlobRef& c : e.chunks) {
        auto it = bad.find(BlobKey{s.packs[c.pack], c.pack_offset});
        if (it == bad.end()) continue;
        auto& f = files[e.path];
        if (f.first.empty()) f.first = it->second;
        f.second.push_back(s.id);
        break;
      }
    }
  }
  std::vector<std::string> lines;
  for (const auto& [path, info] : files) {
    std::string line = "damaged: " + (path.empty() ? std::string(".") : path) + " (" + info.first +
                       "); needed by snapshot" + (info.second.size() > 1 ? "s " : " ");
    for (size_t i = 0; i < info.second.size(); ++i) line += (i ? ", " : "") + info.second[i];
    lines.push_back(line);
  }
  return lines;
}

}  // namespace

RepoVerifyResult run_repo_verify(const RepoVerifyOptions& opts, transport::Comm& comm) {
  RepoVerifyResult out;
  RunResult& result = out.run;
  auto t0 = Clock::now();
  auto r = repo::Repository::open(opts.repo, false);
  std::string error = r ? std::string() : r.error().message;
  std::vector<std::string> ids = agreed_ids(r ? &r.value() : nullptr, opts, comm, error);
  if (!comm.agree(error.empty())) {
    result.fatal = error.empty() ? "repository not readable on every rank" : error;
    result.exit_code = kExitFatal;
    return out;
  }
  result.started = true;
  // Manifests: a damaged one is named; the others are checked.
  std::vector<repo::Snapshot> snaps;
  std::vector<std::string> errors;
  for (const std::string& id : ids) {
    auto s = r->load_snapshot(id);
    if (!s) {
      errors.push_back("snapshot " + id + ": " + s.error().message);
      continue;
    }
    snaps.push_back(std::move(s.value()));
  }
  out.snapshots_checked = snaps.size();
  // Every referenced blob once; packs shared out over ranks.
  std::map<BlobKey, repo::BlobRef> blobs;
  for (const repo::Snapshot& s : snaps) {
    for (const repo::SnapEntry& e : s.entries) {
      for (const repo::BlobRef& c : e.chunks)
        blobs.emplace(BlobKey{s.packs[c.pack], c.pack_offset}, c);
    }
  }
  std::vector<std::string> pack_names;
  for (const auto& [k, v] : blobs)
    if (pack_names.empty() || pack_names.back() != k.pack) pack_names.push_back(k.pack);
  std::set<std::string> my_packs;
  for (size_t i = 0; i < pack_names.size(); ++i)
    if (static_cast<int>(i % static_cast<size_t>(comm.size())) == comm.rank())
      my_packs.insert(pack_names[i]);
  BlobList mine;
  for (const auto& [k, v] : blobs)
    if (my_packs.count(k.pack)) mine.emplace_back(&k, &v);
  std::map<std::string, io::UniqueFd> fds;
  std::map<std::string, std::string> pack_error;
  open_packs(*r, my_packs, fds, pack_error);
  std::vector<std::string> damage =
      check_blobs(opts, mine, fds, pack_error, opts.threads ? opts.threads : default_threads());
  WireWriter w;
  uint64_t counts[2] = {mine.size(), 0};
  for (size_t k = 0; k < mine.size(); ++k) {
    if (damage[k].empty()) continue;
    ++counts[1];
    w.str(mine[k].first->pack);
    w.u64(mine[k].first->offset);
    w.str(damage[k]);
  }
  comm.allreduce_sum(counts);
  out.blobs_checked = counts[0];
  out.blobs_damaged = counts[1];
  std::vector<std::string> gathered = comm.gather(w.take(), 0);
  if (comm.rank() == 0) {
    for (std::string& line : damage_lines(snaps, gathered)) errors.push_back(std::move(line));
    result.errors = std::move(errors);
    for (const repo::Snapshot& s : snaps) result.files += s.files;
    result.bytes_verified = 0;
    for (const auto& [k, v] : blobs) result.bytes_verified += v.raw_bytes;
    result.seconds = since(t0);
    result.exit_code = result.errors.empty() ? kExitOk : kExitPartial;
  }
  result.exit_code = agree_exit_code(comm, result.exit_code);
  return out;
}

ForgetResult run_forget(const ForgetOptions& opts) {
  ForgetResult out;
  auto fatal = [&](std::string why) { return fatal_result(out, std::move(why)); };
  auto r = repo::Repository::open(opts.repo, false);
  if (!r) return fatal(r.error().message);
  auto lock = repo::RepoLock::acquire(r->path(), "forget");
  if (!lock) return fatal(lock.error().message);
  auto ids = r->list_snapshots();
  if (!ids) return fatal(ids.error().message);
  size_t drop = ids->size() > opts.keep_last ? ids->size() - opts.keep_last : 0;
  std::vector<std::string> keep(ids->begin() + static_cast<long>(drop), ids->end());
  // What the kept snapshots reference; a kept manifest that cannot be read stops the prune
  // (its packs cannot be told apart from garbage).
  auto referenced = repo::referenced_packs(*r, keep);
  if (!referenced) return fatal(referenced.error().message + " (nothing removed)");
  for (size_t i = 0; i < drop; ++i) {
    out.removed_snapshots.push_back((*ids)[i]);
    if (!opts.dry_run) {
      if (auto st = r->remove_snapshot((*ids)[i]); !st) return fatal(st.error().message);
    }
  }
  // Packs no kept snapshot references: first the snapshots went (each removal atomic), so a
  // crash here leaves only unreferenced packs, which the next forget removes.
  auto swept = repo::remove_packs_except(*r, *referenced, opts.dry_run);
  if (!swept) return fatal(swept.error().message);
  out.packs_removed = swept->packs;
  out.bytes_freed = swept->bytes;
  if (!opts.dry_run) {
    if (auto st = repo::clear_sweep(r->path()); !st) return fatal(st.error().message);
  }
  return out;
}

namespace {

// The chunk size the snapshots were cut with: every chunk that does not end its file is one
// chunk size long. 0 when no file spans more than one chunk.
io::Result<uint32_t> chunk_bytes_of(const std::vector<repo::Snapshot>& snaps) {
  std::set<uint32_t> seen;
  for (const repo::Snapshot& s : snaps)
    for (const repo::SnapEntry& e : s.entries)
      for (const repo::BlobRef& c : e.chunks)
        if (c.file_offset + c.raw_bytes < e.meta.size_bytes) seen.insert(c.raw_bytes);
  if (seen.size() > 1)
    return io::Error::plain("the snapshots disagree on the chunk size (" +
                            std::to_string(*seen.begin()) + " and " +
                            std::to_string(*seen.rbegin()) + " bytes)");
  return seen.empty() ? 0u : *seen.begin();
}

}  // namespace

RepairResult run_repair(const RepairOptions& opts) {
  RepairResult out;
  auto fatal = [&](std::string why) { return fatal_result(out, std::move(why)); };
  if (opts.chunk_bytes != 0 &&
      (opts.chunk_bytes < repo::kMinChunkBytes || opts.chunk_bytes > repo::kMaxChunkBytes))
    return fatal("--chunk-size " + Progress::human_bytes(static_cast<double>(opts.chunk_bytes)) +
                 ": must be from 4 KiB to 1 GiB");
  std::string path = opts.repo;
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return fatal(io::Error::from_errno(errno, path).message);
  if (!S_ISDIR(st.st_mode)) return fatal(path + ": not a directory");
  if (!repo::looks_like_repository(path))
    return fatal(path +
                 ": not a barge repository (no snapshots/, packs/ or config.bak): "
                 "nothing to repair");
  auto lock = repo::RepoLock::acquire(path, "repair");
  if (!lock) return fatal(lock.error().message);
  const std::string config_path = path + "/" + repo::kConfigName;
  const std::string copy_path = path + "/" + repo::kConfigCopyName;
  auto load = [](const std::string& p) -> io::Result<repo::Config> {
    auto bytes = repo::read_small_file(p);
    if (!bytes) return bytes.error();
    auto c = repo::decode_config(*bytes);
    if (!c) return io::Error::plain(p + ": " + c.error().message);
    return c;
  };
  auto config = load(config_path);
  auto copy = load(copy_path);
  auto write = [&](const char* name, const repo::Config& c) {
    return repo::write_file_atomic(path, name, repo::encode_config(c));
  };
  if (config && copy) {
    if (repo::encode_config(*config) != repo::encode_config(*copy))
      return fatal(path + ": config and config.bak are both intact but differ (chunk size " +
                   std::to_string(config->chunk_bytes) + " and " +
                   std::to_string(copy->chunk_bytes) + "); refusing to choose one");
    return out;  // nothing to do
  }
  if (config) {
    if (auto s = write(repo::kConfigCopyName, *config); !s) return fatal(s.error().message);
    out.actions.push_back("config.bak rewritten from config (" + copy.error().message + ")");
    return out;
  }
  if (copy) {
    if (auto s = write(repo::kConfigName, *copy); !s) return fatal(s.error().message);
    out.actions.push_back("config rebuilt from config.bak (" + config.error().message + ")");
    return out;
  }
  // Neither: derived from the snapshots, every one of which must be readable.
  auto r = repo::Repository::open_without_config(path);
  auto ids = r.list_snapshots();
  if (!ids) return fatal(ids.error().message);
  std::vector<repo::Snapshot> snaps;
  for (const std::string& id : *ids) {
    auto s = r.load_snapshot(id);
    if (!s) return fatal(s.error().message + "; cannot derive the config without it");
    snaps.push_back(std::move(s.value()));
  }
  auto derived = chunk_bytes_of(snaps);
  if (!derived) return fatal(path + ": " + derived.error().message);
  uint32_t chunk = *derived;
  if (chunk != 0 && opts.chunk_bytes != 0 && opts.chunk_bytes != chunk)
    return fatal(path + ": the snapshots were cut in chunks of " + std::to_string(chunk) +
                 " bytes, not the --chunk-size given (" + std::to_string(opts.chunk_bytes) + ")");
  if (chunk == 0) chunk = static_cast<uint32_t>(opts.chunk_bytes);
  if (chunk == 0)
    return fatal(path +
                 ": no config, no intact config.bak, and no file in the snapshots spans "
                 "two chunks to tell the chunk size: run `barge repair --chunk-size SIZE " +
                 path + "` with the size the repository was made with (default 4M)");
  repo::Config c;
  c.repo_id = repo::random_hex128();
  c.chunk_bytes = chunk;
  c.created_ns = snaps.empty() ? std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count()
                               : snaps.front().time_ns;
  for (const char* name : {repo::kConfigName, repo::kConfigCopyName})
    if (auto s = write(name, c); !s) return fatal(s.error().message);
  out.actions.push_back("config and config.bak rebuilt from " + std::to_string(snaps.size()) +
                        " snapshots (chunk size " + std::to_string(chunk) + " bytes; " +
                        config.error().message + "; " + copy.error().message + ")");
  return out;
}

}  // namespace barge::pipeline
