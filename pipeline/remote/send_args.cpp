#include "pipeline/remote/send_args.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/path_ops.hpp"
#include "pipeline/remote/protocol.hpp"
#include "pipeline/remote/remote.hpp"

namespace barge::pipeline::remote {

io::Result<Root> local_root(const std::string& raw, RemoteSource& as) {
  if (raw.empty()) return io::Error::plain("source: empty path");
  std::string src = raw;
  while (src.size() > 1 && src.back() == '/') src.pop_back();
  struct stat st;
  if (::lstat(src.c_str(), &st) != 0) return io::Error::from_errno(errno, "source " + src);
  if (S_ISLNK(st.st_mode) && src.size() < raw.size()) {
    if (::stat(raw.c_str(), &st) != 0) return io::Error::from_errno(errno, "source " + raw);
    src += '/';
  }
  as.is_dir = S_ISDIR(st.st_mode);
  int fd = ::open(src.c_str(), (as.is_dir ? O_DIRECTORY : 0) | O_RDONLY | O_CLOEXEC |
                                   (S_ISLNK(st.st_mode) ? O_PATH | O_NOFOLLOW : 0));
  if (fd < 0) return io::Error::from_errno(errno, "source " + src);
  ::close(fd);
  std::string base(io::base_name(src));
  if (base == "/")
    return io::Error::plain("source " + src + ": send the root's entries instead (/.)");
  as.name = base == "." || base == ".." ? "." : base;
  if (as.name == "." && !as.is_dir) return io::Error::plain("source " + raw + ": Not a directory");
  Root r;
  r.src = src;
  r.manifest_prefix = "";
  return r;
}

io::Status validate(const SendOptions& opts) {
  if (auto st = validate(static_cast<const CopyOptions&>(opts)); !st) return st;
  if (opts.sources.empty()) return io::Error::plain("send: no source given");
  if (opts.streams < 1 || opts.streams > kMaxStreams)
    return io::Error::plain("--streams " + std::to_string(opts.streams) + ": out of range (1-" +
                            std::to_string(kMaxStreams) + ")");
  if (opts.chunk_bytes % 4096 != 0 || opts.chunk_bytes > kMaxChunkBytes)
    return io::Error::plain("--chunk-size: a multiple of 4 KiB up to 64 MiB for send");
  if ((opts.delete_extra || opts.checksum) && !opts.sync)
    return io::Error::plain(std::string(opts.delete_extra ? "--delete" : "--checksum") +
                            ": only with --sync");
  if (opts.compress_level < 0 || opts.compress_level > 19)
    return io::Error::plain("--compress " + std::to_string(opts.compress_level) +
                            ": a zstd level 1-19, auto or none");
  return io::Status::success();
}

}  // namespace barge::pipeline::remote
