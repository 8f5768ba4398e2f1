#include "pipeline/core/wire.hpp"

namespace barge::pipeline {

void write_meta(WireWriter& w, const io::FileMeta& m) {
  w.u8(static_cast<uint8_t>(m.type));
  w.u32(m.mode);
  w.u32(m.uid);
  w.u32(m.gid);
  w.u32(m.nlink);
  w.u64(m.size_bytes);
  w.u64(m.blocks_512);
  w.u64(m.inode);
  w.u64(m.device);
  w.u64(m.rdev);
  for (const timespec* t : {&m.atime, &m.mtime, &m.ctime}) {
    w.i64(t->tv_sec);
    w.i64(t->tv_nsec);
  }
}

io::FileMeta read_meta(WireReader& r) {
  io::FileMeta m;
  uint8_t type = r.u8();
  if (type > static_cast<uint8_t>(io::FileType::kUnknown)) throw WireError("bad entry type");
  m.type = static_cast<io::FileType>(type);
  m.mode = r.u32();
  m.uid = r.u32();
  m.gid = r.u32();
  m.nlink = r.u32();
  m.size_bytes = r.u64();
  m.blocks_512 = r.u64();
  m.inode = r.u64();
  m.device = r.u64();
  m.rdev = r.u64();
  for (timespec* t : {&m.atime, &m.mtime, &m.ctime}) {
    t->tv_sec = r.i64();
    t->tv_nsec = r.i64();
    if (t->tv_nsec < 0 || t->tv_nsec >= 1000000000) throw WireError("bad timestamp");
  }
  return m;
}

void write_entry(WireWriter& w, const Entry& e) {
  w.u32(e.root);
  w.str(e.rel);
  write_meta(w, e.meta);
  w.str(e.link_target);
}

Entry read_entry(WireReader& r) {
  Entry e;
  e.root = r.u32();
  e.rel = r.str();
  e.meta = read_meta(r);
  e.link_target = r.str();
  return e;
}

}  // namespace barge::pipeline
