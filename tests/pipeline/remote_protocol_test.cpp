// send/recv's parsers of untrusted bytes: hello, the plan's entries, the unit table and the
// receiver's chunk ledger, fed malformed and hostile input.
#include "pipeline/remote/protocol.hpp"

#include <gtest/gtest.h>

#include "pipeline/core/wire.hpp"

namespace barge::pipeline::remote {
namespace {

Hello good_hello() {
  Hello h;
  h.session = std::string(32, 'a');
  h.streams = 2;
  h.capabilities = capabilities();
  h.chunk_bytes = 1 << 20;
  h.files_per_unit = 16;
  h.sources = {{"src", true}};
  h.entries = 3;
  h.files = 1;
  h.bytes = 5000;
  return h;
}

TEST(RemoteHello, RoundTripsAndRefusesNonsense) {
  auto h = decode_hello(encode_hello(good_hello()));
  ASSERT_TRUE(h) << h.error().message;
  EXPECT_EQ(h->sources.size(), 1u);
  EXPECT_EQ(h->chunk_bytes, 1u << 20);
  for (const char* bad : {"", "[]", "{", "{\"protocol\":1}", "\xff\xfe", "null"})
    EXPECT_FALSE(decode_hello(bad)) << bad;
  auto tweak = [](auto f) {
    Hello h = good_hello();
    f(h);
    return decode_hello(encode_hello(h));
  };
  EXPECT_FALSE(tweak([](Hello& h) { h.protocol = 2; }));
  EXPECT_FALSE(tweak([](Hello& h) { h.session = "../x"; }));
  EXPECT_FALSE(tweak([](Hello& h) { h.streams = 0; }));
  EXPECT_FALSE(tweak([](Hello& h) { h.streams = kMaxStreams + 1; }));
  EXPECT_FALSE(tweak([](Hello& h) { h.chunk_bytes = 4097; }));
  EXPECT_FALSE(tweak([](Hello& h) { h.chunk_bytes = 1ull << 40; }));
  EXPECT_FALSE(tweak([](Hello& h) { h.files = 10; }));
  EXPECT_FALSE(tweak([](Hello& h) { h.sources.clear(); }));
  // A wrong type where a number belongs is one line, not an exception.
  EXPECT_FALSE(decode_hello(R"({"protocol":"1","session":"x","stream":0,"streams":1})"));
}

TEST(RemoteWelcome, ListsTheReceiverRanksEndpointsWithinBounds) {
  Welcome w{kProtocolVersion, "00112233445566778899aabbccddeeff", capabilities(), {}};
  auto plain = decode_welcome(encode_welcome(w));
  ASSERT_TRUE(plain) << plain.error().message;
  EXPECT_TRUE(plain->endpoints.empty());
  EXPECT_EQ(encode_welcome(w).find("endpoints"), std::string::npos);  // one rank: as before
  w.endpoints = {"10.0.0.3:5000", "[fd00::4]:5001", "node4:5002"};
  auto ranks = decode_welcome(encode_welcome(w));
  ASSERT_TRUE(ranks) << ranks.error().message;
  EXPECT_EQ(ranks->endpoints, w.endpoints);
  auto with = [&](std::vector<std::string> endpoints) {
    Welcome t = w;
    t.endpoints = std::move(endpoints);
    return decode_welcome(encode_welcome(t));
  };
  EXPECT_FALSE(with({"10.0.0.3"}));        // no port
  EXPECT_FALSE(with({"10.0.0.3:99999"}));  // not a port
  EXPECT_FALSE(with({"fd00::4:5000"}));    // IPv6 without brackets
  EXPECT_FALSE(with(std::vector<std::string>(kMaxStreams + 1, "10.0.0.3:5000")));
  EXPECT_FALSE(
      decode_welcome(R"({"protocol":1,"session":"x","capabilities":[],"endpoints":"a:1"})"));
}

Entry entry(const std::string& rel, io::FileType type, uint64_t size = 0) {
  Entry e;
  e.rel = rel;
  e.meta.type = type;
  e.meta.size_bytes = size;
  e.meta.mode = 0644;
  if (type == io::FileType::kSymlink) e.link_target = "/anywhere";
  return e;
}

std::string batch(const std::vector<Entry>& entries) {
  WireWriter w;
  for (const Entry& e : entries) write_entry(w, e);
  return w.take();
}

io::Status build(const std::vector<Entry>& entries, Hello h = good_hello()) {
  Plan plan;
  plan.roots.push_back(Root{"src", "/dst/src", "src"});
  std::vector<RemoteSource> sources = h.sources;
  PlanBuilder b(plan, h, sources);
  if (auto st = b.add_batch(batch(entries)); !st) return st;
  return b.finish();
}

TEST(RemotePlan, AcceptsATreeInPreOrder) {
  auto st = build({entry("", io::FileType::kDirectory), entry("d", io::FileType::kDirectory),
                   entry("d/f", io::FileType::kRegular, 5000)});
  EXPECT_TRUE(st) << st.error().message;
}

TEST(RemotePlan, RefusesPathsThatLeaveTheirRoot) {
  const auto dir = io::FileType::kDirectory, file = io::FileType::kRegular;
  for (const char* rel : {"..", "../evil", "d/../../evil", "/etc", "d//f", "d/", "./f", "d/."}) {
    auto st = build({entry("", dir), entry("d", dir), entry(rel, file, 10)});
    EXPECT_FALSE(st) << rel;
  }
  std::string nul("d/f\0x", 5);
  EXPECT_FALSE(build({entry("", dir), entry("d", dir), entry(nul, file, 10)}));
}

TEST(RemotePlan, RefusesBrokenStructure) {
  const auto dir = io::FileType::kDirectory, file = io::FileType::kRegular;
  // A parent that is missing, that comes later, or that is not a directory.
  EXPECT_FALSE(build({entry("", dir), entry("x/f", file, 1), entry("x", dir)}));
  EXPECT_FALSE(build({entry("", dir), entry("f", file, 1), entry("f/g", file, 1)}));
  // Duplicates, and a root entry of the wrong type or twice.
  EXPECT_FALSE(build({entry("", dir), entry("f", file, 1), entry("f", file, 1)}));
  EXPECT_FALSE(build({entry("", file, 1), entry("f", file, 1), entry("g", file, 1)}));
  EXPECT_FALSE(build({entry("", dir), entry("", dir), entry("f", file, 1)}));
  // More than announced: entries, files, bytes; fewer entries than announced.
  EXPECT_FALSE(build({entry("", dir), entry("a", dir), entry("b", dir), entry("c", dir)}));
  EXPECT_FALSE(build({entry("", dir), entry("f", file, 1), entry("g", file, 1)}));
  EXPECT_FALSE(build({entry("", dir), entry("d", dir), entry("f", file, 5001)}));
  EXPECT_FALSE(build({entry("", dir), entry("d", dir)}));
  // A truncated batch.
  Plan plan;
  plan.roots.push_back(Root{"src", "/dst/src", "src"});
  Hello h = good_hello();
  PlanBuilder b(plan, h, h.sources);
  std::string bytes = batch({entry("", dir)});
  EXPECT_FALSE(b.add_batch(bytes.substr(0, bytes.size() - 3)));
}

TEST(RemoteHello, CarriesASyncRequestWithinBounds) {
  Hello h = good_hello();
  h.sync = SyncRequest{true, true, true, {"*.keep", "tmp/"}, {"a.keep"}};
  auto back = decode_hello(encode_hello(h));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_TRUE(back->sync.enabled && back->sync.delete_extra && back->sync.checksum);
  EXPECT_EQ(back->sync.excludes, (std::vector<std::string>{"*.keep", "tmp/"}));
  EXPECT_EQ(back->sync.includes, std::vector<std::string>{"a.keep"});
  EXPECT_FALSE(decode_hello(encode_hello(good_hello()))->sync.enabled);
  auto with = [&](std::vector<std::string> excludes) {
    Hello t = h;
    t.sync.excludes = std::move(excludes);
    return decode_hello(encode_hello(t));
  };
  EXPECT_FALSE(with({""}));
  EXPECT_FALSE(with({std::string(kMaxPatternBytes + 1, 'x')}));
  EXPECT_FALSE(with({std::string("a\0b", 3)}));
  EXPECT_FALSE(with(std::vector<std::string>(kMaxSyncPatterns + 1, "x")));
}

TEST(RemotePlan, ExtendedAttributesTravelWithinLinuxBounds) {
  const auto dir = io::FileType::kDirectory, file = io::FileType::kRegular;
  auto plan_with = [&](io::Xattrs xs) {
    Plan p;
    p.entries = {entry("", dir), entry("f", file, 5000), entry("l", io::FileType::kSymlink)};
    p.entries[1].xattrs = std::make_shared<const io::Xattrs>(std::move(xs));
    return p;
  };
  auto decode = [&](const Plan& sent, Plan& got) {
    Hello h = good_hello();
    h.xattrs = true;
    got.roots = {Root{"src", "/dst/src", "src"}};
    size_t next = 0;
    PlanBuilder b(got, h, h.sources);
    return b.add_batch(encode_entries(sent, next, 1 << 20, nullptr, true)) && b.finish();
  };
  Plan got;
  ASSERT_TRUE(decode(plan_with({{"user.a", "1"}, {"user.b", std::string("\0x", 2)}}), got));
  ASSERT_TRUE(got.entries[1].xattrs);
  EXPECT_EQ(*got.entries[1].xattrs,
            (io::Xattrs{{"user.a", "1"}, {"user.b", std::string("\0x", 2)}}));
  EXPECT_FALSE(got.entries[0].xattrs);  // none: no list at all
  EXPECT_TRUE(got.entries[1].xattrs);
  for (io::Xattrs bad : std::vector<io::Xattrs>{
           {{"user.b", "1"}, {"user.a", "2"}},                       // out of order
           {{"user.a", "1"}, {"user.a", "2"}},                       // twice
           {{"nodot", "1"}},                                         // no namespace
           {{std::string("user.\0x", 7), "1"}},                      // NUL in the name
           {{"user." + std::string(kMaxXattrName, 'n'), "1"}},       // name too long
           {{"user.big", std::string(kMaxXattrValue + 1, 'v')}}}) {  // value too large
    Plan refused;
    EXPECT_FALSE(decode(plan_with(bad), refused)) << bad.front().first.size();
  }
  io::Xattrs many;
  for (uint32_t k = 0; k <= kMaxXattrsPerEntry; ++k)
    many.emplace_back("user.k" + std::to_string(100000 + k), "");
  Plan refused;
  EXPECT_FALSE(decode(plan_with(many), refused));
  // A plan without the lists, read as one with them, is refused (the counts do not parse).
  Hello h = good_hello();
  h.xattrs = true;
  Plan p = plan_with({}), q;
  q.roots = {Root{"src", "/dst/src", "src"}};
  PlanBuilder b(q, h, h.sources);
  EXPECT_FALSE(b.add_batch(batch(p.entries)) && b.finish());
}

TEST(RemotePlan, SyncChecksumsTravelWithRegularFiles) {
  const auto dir = io::FileType::kDirectory, file = io::FileType::kRegular;
  Plan sent;
  sent.entries = {entry("", dir), entry("f", file, 5000), entry("l", io::FileType::kSymlink)};
  std::vector<Hash128> sums(3);
  sums[1] = Hash128{0x1122, 0x3344};
  size_t next = 0;
  std::string bytes = encode_entries(sent, next, 1 << 20, &sums);
  EXPECT_EQ(next, 3u);
  Hello h = good_hello();
  h.files = 1;
  h.sync = SyncRequest{true, false, true, {}, {}};
  Plan plan;
  plan.roots.push_back(Root{"src", "/dst/src", "src"});
  std::vector<Hash128> got;
  PlanBuilder b(plan, h, h.sources, &got);
  ASSERT_TRUE(b.add_batch(bytes));
  ASSERT_TRUE(b.finish());
  ASSERT_GE(got.size(), 2u);
  EXPECT_EQ(got[1], sums[1]);
  // The same plan without its checksums, or cut inside one, is refused.
  Plan again;
  again.roots = plan.roots;
  PlanBuilder c(again, h, h.sources, &got);
  EXPECT_FALSE(c.add_batch(batch(sent.entries)) && c.finish());
  Plan cut;
  cut.roots = plan.roots;
  size_t first = 0;
  std::string two = encode_entries(sent, first, 1, &sums);  // the root alone
  two += encode_entries(sent, first, 1, &sums).substr(0, 40);
  PlanBuilder d(cut, h, h.sources, &got);
  EXPECT_FALSE(d.add_batch(two));
}

TEST(RemoteReady, RoundTripsAndRefusesWhatIsNotToSend) {
  const auto dir = io::FileType::kDirectory, file = io::FileType::kRegular;
  Plan plan;
  plan.entries = {entry("", dir), entry("small", file, 100), entry("big", file, 5u << 20)};
  auto decode = [&](const Ready& r) {
    return decode_ready(encode_ready(r), plan, 1 << 20, 1 << 20);
  };
  auto ok = decode(Ready{{1}, {{2, 0}, {2, 3}}});
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->unwanted, std::vector<uint32_t>{1});
  EXPECT_EQ(ok->done.size(), 2u);
  EXPECT_FALSE(decode(Ready{{0}, {}}));               // a directory
  EXPECT_FALSE(decode(Ready{{7}, {}}));               // no such entry
  EXPECT_FALSE(decode(Ready{{1, 1}, {}}));            // twice
  EXPECT_FALSE(decode(Ready{{}, {{2, 5}}}));          // no such chunk (5 MiB: chunks 0-4)
  EXPECT_FALSE(decode(Ready{{}, {{2, 1}, {2, 1}}}));  // a chunk twice
  EXPECT_FALSE(decode(Ready{{2}, {{2, 1}}}));         // a chunk of a file not wanted
  std::string bytes = encode_ready(Ready{{1}, {}});
  EXPECT_FALSE(decode_ready(bytes.substr(0, bytes.size() - 1), plan, 1 << 20, 1 << 20));
  EXPECT_FALSE(decode_ready(bytes + "x", plan, 1 << 20, 1 << 20));
}

TEST(RemoteLedger, ChunksHeldAlreadyMayNotComeAgain) {
  Plan plan;
  plan.entries = {entry("", io::FileType::kDirectory),
                  entry("big", io::FileType::kRegular, 2u << 20)};
  plan.files = {1};
  std::vector<uint8_t> expected{0, 1};
  ChunkLedger ledger(plan, expected, 1 << 20, 1 << 20);
  ledger.mark_done(1, 0);
  WireItem again{1, 0, 0, 1 << 20, {}, false, false, false, 1 << 20, {}};
  EXPECT_FALSE(ledger.accept(again));
  EXPECT_EQ(ledger.incomplete(), std::vector<uint32_t>{1});
  WireItem last{1, 1, 1 << 20, 1 << 20, {}, false, false, false, 1 << 20, {}};
  EXPECT_TRUE(ledger.accept(last));
  EXPECT_TRUE(ledger.incomplete().empty());
}

TEST(RemoteUnitTable, RoundTripsAndRefusesMalformedTables) {
  WireItem it;
  it.file = 2;
  it.length = 100;
  it.wire_bytes = 100;
  it.sparse = true;
  it.data = {{0, 10}, {50, 100}};
  std::string t = encode_unit_table({it});
  auto back = decode_unit_table(t);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ((*back)[0].data.size(), 2u);
  for (size_t cut = 0; cut < t.size(); ++cut) EXPECT_FALSE(decode_unit_table(t.substr(0, cut)));
  EXPECT_FALSE(decode_unit_table(t + "x"));
  std::string flags = t;
  flags[4 + 4 + 4 + 8 + 8 + 16] = static_cast<char>(0x80);
  EXPECT_FALSE(decode_unit_table(flags));
  EXPECT_FALSE(decode_unit_table(std::string(4, '\0')));  // no items
}

TEST(RemoteLedger, EachChunkOnceAtItsPlace) {
  Plan plan;
  plan.roots.push_back(Root{"src", "/d", ""});
  plan.entries = {entry("", io::FileType::kDirectory), entry("f", io::FileType::kRegular, 10000),
                  entry("g", io::FileType::kRegular, 3 << 20), entry("l", io::FileType::kSymlink)};
  plan.files = {1, 2};
  std::vector<uint8_t> expected{0, 1, 1, 0};
  ChunkLedger ledger(plan, expected, 1 << 20, 1 << 20);
  WireItem f;
  f.file = 1;
  f.length = 10000;
  f.wire_bytes = 10000;
  EXPECT_TRUE(ledger.accept(f));
  EXPECT_FALSE(ledger.accept(f));  // twice
  WireItem g;
  g.file = 2;
  g.chunk = 1;
  g.offset = 1 << 20;
  g.length = 1 << 20;
  g.wire_bytes = 1 << 20;
  WireItem wrong = g;
  wrong.offset = 0;
  EXPECT_FALSE(ledger.accept(wrong));
  wrong = g;
  wrong.wire_bytes = 5;
  EXPECT_FALSE(ledger.accept(wrong));
  wrong = g;
  wrong.chunk = 3;
  EXPECT_FALSE(ledger.accept(wrong));
  wrong = g;
  wrong.file = 3;  // a symlink
  EXPECT_FALSE(ledger.accept(wrong));
  wrong.file = 99;
  EXPECT_FALSE(ledger.accept(wrong));
  wrong = g;
  wrong.sparse = true;
  wrong.data = {{(1 << 20) - 1, 1 << 20}};  // starts before the extent
  EXPECT_FALSE(ledger.accept(wrong));
  EXPECT_TRUE(ledger.accept(g));
  EXPECT_EQ(ledger.incomplete(), std::vector<uint32_t>{2});
}

}  // namespace
}  // namespace barge::pipeline::remote
