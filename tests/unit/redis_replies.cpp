#define CAF_SUITE redis_replies

// Reading Redis' replies to the STORE's requests: the type checks of single
// replies, numbers at and beyond their limits, route tables, inbox entries
// and pages (malformed, hostile, out of order), cursors, members, node
// entries and index entries. Replies are built by hand, as hiredis builds
// them (heap objects freed by freeReplyObject).

#include "adapters/redis_replies.hpp"

#include "fake_replies.hpp"

#include <caf/test/unit_test.hpp>

#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

using namespace wsc;
using namespace wsc::redis_store_impl;
using namespace wsc::test;

namespace {

/// The text of a reply, as a std::string (printable by the checks).
std::string txt(const redis_reply_ptr& r) {
  return std::string{text_of(r.get())};
}

redis_reply_ptr own(redisReply* r) {
  return redis_reply_ptr{r};
}

std::vector<redis_reply_ptr> replies(std::initializer_list<redisReply*> xs) {
  std::vector<redis_reply_ptr> result;
  for (auto x : xs)
    result.emplace_back(x);
  return result;
}

/// A packed message as pack_entry writes it, with any text for ts and kind.
std::string packed(const std::string& ts, const std::string& kind,
                   const std::string& msg_id, const std::string& from,
                   const std::string& group, const std::string& data) {
  return ts + "," + kind + "," + std::to_string(msg_id.size()) + "," +
         std::to_string(from.size()) + "," + std::to_string(group.size()) +
         "," + msg_id + from + group + data;
}

/// An inbox entry as the append script writes it: id `0-<seq>`, field m.
redisReply* entry(const std::string& seq, const std::string& data = "{}",
                  const std::string& kind = "0",
                  const std::string& ts = "1700000000000") {
  return arr(
      {str("0-" + seq),
       arr({str("m"), str(packed(ts, kind, "m" + seq, "alice", "", data))})});
}

/// The inbox script's reply: cursor, last seq, oldest seq, more, the
/// life's first seq, entries.
redisReply* page(long long cursor, long long last, long long oldest,
                 long long more, std::initializer_list<redisReply*> entries,
                 long long born = 0) {
  auto r = new_reply(REDIS_REPLY_ARRAY);
  r->elements = 5 + entries.size();
  r->element =
      static_cast<redisReply**>(std::calloc(r->elements, sizeof(redisReply*)));
  r->element[0] = num(cursor);
  r->element[1] = num(last);
  r->element[2] = num(oldest);
  r->element[3] = num(more);
  r->element[4] = num(born);
  size_t i = 5;
  for (auto e : entries)
    r->element[i++] = e;
  return r;
}

} // namespace

// -- single replies -----------------------------------------------------------

CAF_TEST(text_of reads strings and statuses only) {
  auto s = own(str("hello"));
  CAF_CHECK_EQUAL(txt(s), "hello");
  auto st = own(str("OK", REDIS_REPLY_STATUS));
  CAF_CHECK_EQUAL(txt(st), "OK");
  auto bin = own(str(std::string_view{"a\0b", 3}));
  CAF_CHECK_EQUAL(text_of(bin.get()).size(), 3u);
  auto err = own(str("ERR no", REDIS_REPLY_ERROR));
  CAF_CHECK(text_of(err.get()).empty());
  auto n = own(num(7));
  CAF_CHECK(text_of(n.get()).empty());
  auto a = own(arr({str("x")}));
  CAF_CHECK(text_of(a.get()).empty());
  auto null = own(nil());
  CAF_CHECK(text_of(null.get()).empty());
  CAF_CHECK(text_of(nullptr).empty());
}

CAF_TEST(integer_of and is_array check the type) {
  auto n = own(num(-42));
  CAF_CHECK(integer_of(n.get()) == -42);
  auto s = own(str("42"));
  CAF_CHECK(!integer_of(s.get()));
  CAF_CHECK(!integer_of(nullptr));
  auto a = own(arr({}));
  CAF_CHECK(is_array(a.get()));
  CAF_CHECK(!is_array(s.get()));
  CAF_CHECK(!is_array(nullptr));
}

CAF_TEST(parse_number reads 0 for anything but a number in range) {
  CAF_CHECK_EQUAL(parse_number<uint64_t>("42"), 42u);
  CAF_CHECK_EQUAL(parse_number<int64_t>("-5"), -5);
  CAF_CHECK_EQUAL(parse_number<uint64_t>("18446744073709551615"),
                  18446744073709551615u);
  CAF_CHECK_EQUAL(parse_number<uint64_t>("18446744073709551616"), 0u);
  CAF_CHECK_EQUAL(parse_number<uint32_t>("4294967296"), 0u);
  CAF_CHECK_EQUAL(parse_number<uint64_t>("-1"), 0u);
  CAF_CHECK_EQUAL(parse_number<uint64_t>(""), 0u);
  CAF_CHECK_EQUAL(parse_number<uint64_t>("12a"), 0u);
  CAF_CHECK_EQUAL(parse_number<uint64_t>(" 1"), 0u);
  CAF_CHECK_EQUAL(parse_number<uint64_t>("+1"), 0u);
}

CAF_TEST(parse_count accepts what Lua and JSON keep exactly) {
  CAF_CHECK(parse_count("0") == uint64_t{0});
  CAF_CHECK(parse_count("9007199254740991") == uint64_t{9007199254740991});
  CAF_CHECK(!parse_count("9007199254740992"));
  CAF_CHECK(!parse_count("99999999999999999999999"));
  CAF_CHECK(!parse_count(""));
  CAF_CHECK(!parse_count("-1"));
  CAF_CHECK(!parse_count("+1"));
  CAF_CHECK(!parse_count("1e3"));
  CAF_CHECK(!parse_count("1-0"));
}

CAF_TEST(strings_of keeps the nonempty strings from an index on) {
  auto a = own(arr({str("x"), str("a"), str(""), num(3), nil(), str("b")}));
  CAF_CHECK_EQUAL(strings_of(a.get(), 1), (std::vector<std::string>{"a", "b"}));
  CAF_CHECK_EQUAL(strings_of(a.get(), 0).size(), 3u);
  CAF_CHECK(strings_of(a.get(), 9).empty());
  auto s = own(str("x"));
  CAF_CHECK(strings_of(s.get(), 0).empty());
  CAF_CHECK(strings_of(nullptr, 0).empty());
}

// -- routes -------------------------------------------------------------------

CAF_TEST(a route table lists nodes in order of first appearance) {
  auto bob = own(arr({str("n2|1"), str("n1|1"), str("n2|1")}));
  auto carol = own(arr({str("n1|7")}));
  auto dave = own(arr({}));
  auto erin = own(nil());
  auto odd = own(arr({str("bare"), num(5)}));
  route_builder builder;
  builder.add("bob", bob.get());
  builder.add("carol", carol.get());
  builder.add("dave", dave.get());
  builder.add("erin", erin.get());
  builder.add("frank", odd.get());
  auto& t = builder.result();
  CAF_REQUIRE_EQUAL(t.nodes.size(), 4u);
  // bob's nodes in byte order: n1 first.
  CAF_CHECK_EQUAL(t.nodes[0].node, "n1");
  CAF_CHECK_EQUAL(t.nodes[0].uids, (std::vector<std::string>{"bob", "carol"}));
  CAF_CHECK_EQUAL(t.nodes[0].connections, (std::vector<uint32_t>{1, 1}));
  CAF_CHECK_EQUAL(t.nodes[1].node, "n2");
  CAF_CHECK_EQUAL(t.nodes[1].connections, (std::vector<uint32_t>{2}));
  // A value without '|' names its node whole; a non-string names "".
  CAF_CHECK_EQUAL(t.nodes[2].node, "");
  CAF_CHECK_EQUAL(t.nodes[3].node, "bare");
  CAF_CHECK_EQUAL(t.offline, (std::vector<std::string>{"dave", "erin"}));
  CAF_CHECK(t.offline_seqs.empty());
  CAF_CHECK(t.nodes[0].seqs.empty());
}

CAF_TEST(appended copies carry their seqs) {
  route_builder builder;
  // A negated seq: the copy started its inbox (a new life continues the
  // seqs of the earlier one, so only the script can tell).
  auto rs = replies({arr({num(4), arr({str("n1|1")}), num(-17), arr({})}),
                     arr({num(-1), arr({})})});
  CAF_CHECK(!add_appended(builder, rs, {{"bob", "carol"}, {"dave"}}));
  auto& t = builder.result();
  CAF_REQUIRE_EQUAL(t.nodes.size(), 1u);
  CAF_CHECK_EQUAL(t.nodes[0].seqs, (std::vector<uint64_t>{4}));
  CAF_CHECK_EQUAL(t.offline, (std::vector<std::string>{"carol", "dave"}));
  CAF_CHECK_EQUAL(t.offline_seqs, (std::vector<uint64_t>{17, 1}));
  CAF_CHECK_EQUAL(t.new_inboxes, 2u);
}

CAF_TEST(malformed append replies fail) {
  route_builder builder;
  std::vector<std::vector<std::string_view>> bob{{"bob"}};
  CAF_CHECK(add_appended(builder, replies({arr({num(4)})}), bob));
  CAF_CHECK(add_appended(builder, replies({arr({num(0), nil()})}), bob));
  CAF_CHECK(add_appended(
      builder,
      replies({arr({num(std::numeric_limits<long long>::min()), nil()})}),
      bob));
  CAF_CHECK(add_appended(builder, replies({arr({str("4"), nil()})}), bob));
  CAF_CHECK(add_appended(builder, replies({str("OK")}), bob));
  std::vector<redis_reply_ptr> none(1);
  CAF_CHECK(add_appended(builder, none, bob));
  // More or fewer copies than uids, a reply without its uids.
  CAF_CHECK(add_appended(builder,
                         replies({arr({num(1), nil(), num(2), nil()})}), bob));
  CAF_CHECK(add_appended(builder, replies({arr({})}), bob));
  CAF_CHECK(add_appended(builder, replies({arr({num(1), nil()})}), {}));
  CAF_CHECK(!add_appended(builder, replies({arr({})}), {{}}));
}

// -- inboxes ------------------------------------------------------------------

CAF_TEST(a stored entry reads back) {
  auto e = own(entry("12", R"({"x":[1,2]})"));
  auto msg = read_entry(e.get());
  CAF_REQUIRE(msg);
  CAF_CHECK_EQUAL(msg->seq, 12u);
  CAF_CHECK_EQUAL(msg->msg_id, "m12");
  CAF_CHECK(msg->kind == delivery_kind::message);
  CAF_CHECK_EQUAL(msg->from, "alice");
  CAF_CHECK_EQUAL(msg->data, R"({"x":[1,2]})");
  CAF_CHECK_EQUAL(msg->ts, 1700000000000);
  // Other fields and a trailing field without value are ignored.
  auto extra = own(arr(
      {str("0-3"), arr({str("z"), str("?"), str("m"),
                        str(packed("0", "0", "", "", "", "1")), str("t")})}));
  auto m = read_entry(extra.get());
  CAF_REQUIRE(m);
  CAF_CHECK_EQUAL(m->seq, 3u);
  CAF_CHECK_EQUAL(m->data, "1");
  CAF_CHECK_EQUAL(m->ts, 0);
}

CAF_TEST(a packed entry holds any bytes) {
  std::string data{"{\"a,b\":\"\0\xc3\xab,3,\"}", 16};
  auto m = pack_entry("id,1", delivery_kind::group, "a,b", "g:1", data,
                      1700000000123);
  CAF_CHECK_EQUAL(m.substr(0, 14), "1700000000123,");
  auto msg = unpack_entry(m);
  CAF_REQUIRE(msg);
  CAF_CHECK_EQUAL(msg->msg_id, "id,1");
  CAF_CHECK(msg->kind == delivery_kind::group);
  CAF_CHECK_EQUAL(msg->from, "a,b");
  CAF_CHECK_EQUAL(msg->group, "g:1");
  CAF_CHECK_EQUAL(msg->data, data);
  CAF_CHECK_EQUAL(msg->ts, 1700000000123);
  CAF_CHECK_EQUAL(msg->seq, 0u);
  // Empty parts, an empty payload.
  auto empty =
      unpack_entry(pack_entry("", delivery_kind::message, "", "", "", 0));
  CAF_REQUIRE(empty);
  CAF_CHECK(empty->msg_id.empty() && empty->from.empty() &&
            empty->group.empty() && empty->data.empty());
  CAF_CHECK_EQUAL(empty->ts, 0);
}

CAF_TEST(a malformed packed entry does not unpack) {
  auto none = [](std::string_view m) {
    return !unpack_entry(m);
  };
  CAF_CHECK(none(""));
  CAF_CHECK(none(","));
  CAF_CHECK(none("1700000000000"));
  // Truncated: fewer than five counts.
  CAF_CHECK(none("1,0,2,5,"));
  CAF_CHECK(none("1,0,2,5,0"));
  CAF_CHECK(none("1,0,2,5"));
  // Counts: empty, signed, not decimal, beyond 2^53, beyond 2^64.
  CAF_CHECK(none(",0,0,0,0,"));
  CAF_CHECK(none("1,,0,0,0,"));
  CAF_CHECK(none("-1,0,0,0,0,"));
  CAF_CHECK(none("1,0,+0,0,0,"));
  CAF_CHECK(none("1,0,0x1,0,0,"));
  CAF_CHECK(none("1,0, 1,0,0,x"));
  CAF_CHECK(none("9007199254740992,0,0,0,0,"));
  CAF_CHECK(none("1,0,18446744073709551617,0,0,x"));
  // A kind beyond the last.
  CAF_CHECK(none("1,4,0,0,0,{}"));
  // Lengths past the end: each, the sum, the largest counts.
  CAF_CHECK(none("1,0,3,0,0,ab"));
  CAF_CHECK(none("1,0,1,1,1,ab"));
  CAF_CHECK(none("1,0,9007199254740991,9007199254740991,9007199254740991,a"));
  CAF_CHECK(none("1,0,0,0,9007199254740991,"));
  // Exactly the parts and no payload: fine.
  auto exact = unpack_entry("1,0,1,1,1,abc");
  CAF_REQUIRE(exact);
  CAF_CHECK_EQUAL(exact->msg_id + exact->from + exact->group, "abc");
  CAF_CHECK(exact->data.empty());
}

CAF_TEST(malformed entries do not read) {
  auto check_none = [](redisReply* r) {
    auto e = own(r);
    return !read_entry(e.get());
  };
  CAF_CHECK(check_none(str("0-1")));
  CAF_CHECK(check_none(arr({str("0-1")})));
  CAF_CHECK(check_none(arr({str("0-1"), str("k")})));
  CAF_CHECK(check_none(arr({str("0-1"), arr({}), nil()})));
  // Ids: seq 0, no number, beyond 2^53, not a string.
  CAF_CHECK(check_none(entry("0")));
  CAF_CHECK(check_none(entry("x")));
  CAF_CHECK(check_none(entry("9007199254740992")));
  // Ids of another form than `0-<seq>` (layout 3's `<seq>-0`).
  auto with_id = [](const std::string& id) {
    return arr({str(id), arr({str("m"),
                              str(packed("1", "0", "m", "alice", "", "{}"))})});
  };
  CAF_CHECK(!check_none(with_id("0-1")));
  CAF_CHECK(check_none(with_id("1-0")));
  CAF_CHECK(check_none(with_id("1-1")));
  CAF_CHECK(check_none(with_id("0-18446744073709551615")));
  CAF_CHECK(check_none(
      arr({num(1), arr({str("m"), str(packed("1", "0", "", "", "", "1"))})})));
  // No `m` (layout 3's fields), `m` not a string, `m` malformed.
  CAF_CHECK(check_none(arr({str("0-1"), arr({str("k"), str("0"), str("d"),
                                             str("1"), str("t"), str("1")})})));
  CAF_CHECK(check_none(arr({str("0-1"), arr({str("m"), num(1)})})));
  CAF_CHECK(check_none(arr({str("0-1"), arr({str("m"), str("1,0,9,0,0,1")})})));
  // Kinds: out of range, not stored ones (broadcast, disconnect).
  CAF_CHECK(check_none(entry("1", "{}", "4")));
  CAF_CHECK(check_none(entry("1", "{}", "-1")));
  CAF_CHECK(check_none(entry("1", "{}", "18446744073709551616")));
  CAF_CHECK(check_none(entry("1", "{}", "1")));
  CAF_CHECK(check_none(entry("1", "{}", "3")));
  // A group message without a valid group.
  CAF_CHECK(check_none(entry("1", "{}", "2")));
  // Timestamps: not a number, negative, beyond 2^53.
  CAF_CHECK(check_none(entry("1", "{}", "0", "soon")));
  CAF_CHECK(check_none(entry("1", "{}", "0", "-1")));
  CAF_CHECK(check_none(entry("1", "{}", "0", "9007199254740992")));
  // Payloads: not JSON, two values, too deep, not UTF-8.
  CAF_CHECK(check_none(entry("1", "{")));
  CAF_CHECK(check_none(entry("1", "")));
  CAF_CHECK(check_none(entry("1", "1 2")));
  CAF_CHECK(
      check_none(entry("1", std::string(100, '[') + std::string(100, ']'))));
  CAF_CHECK(check_none(entry("1", "\"\xff\"")));
}

CAF_TEST(entry ids are 0 - seq and nothing else) {
  CAF_CHECK(entry_seq("0-1") == uint64_t{1});
  CAF_CHECK(entry_seq("0-9007199254740991") == uint64_t{9007199254740991});
  std::vector<std::string> accepted;
  for (auto id : {"",
                  "0",
                  "0-",
                  "-",
                  "1-0",
                  "7-0",
                  "1-1",
                  "0-0",
                  "00-1",
                  " 0-1",
                  "0-1 ",
                  "0-+1",
                  "0--1",
                  "0-1-2",
                  "0-1.5",
                  "0-x",
                  "0-0x10",
                  "0-9007199254740992",
                  "0-18446744073709551615",
                  "0-18446744073709551616",
                  "18446744073709551615-0"})
    if (entry_seq(id))
      accepted.emplace_back(id);
  CAF_CHECK_EQUAL(accepted, std::vector<std::string>{});
}

CAF_TEST(an inbox page skips bad entries and reports their ids) {
  auto r = own(page(3, 9, 2, 1,
                    {entry("4"), entry("5", "{"), entry("3"), entry("6"),
                     entry("6"), str("junk"), arr({}), entry("8")}));
  std::vector<std::string> bad;
  auto replay = read_inbox(r.get(), -1, bad);
  CAF_REQUIRE(replay);
  CAF_CHECK_EQUAL(replay->cursor, 3u);
  CAF_CHECK_EQUAL(replay->last_seq, 9u);
  CAF_CHECK(!replay->too_old);
  CAF_CHECK(replay->more);
  std::vector<uint64_t> seqs;
  for (auto& m : replay->messages)
    seqs.push_back(m.seq);
  CAF_CHECK_EQUAL(seqs, (std::vector<uint64_t>{4, 6, 8}));
  // Invalid, not after the one before (twice), no id (twice).
  CAF_CHECK_EQUAL(bad, (std::vector<std::string>{"0-5", "0-3", "0-6", "", ""}));
}

CAF_TEST(an inbox page starts after since and sees gaps) {
  std::vector<std::string> bad;
  // `since` wins over the cursor; entries at or before it are dropped.
  auto r = own(page(1, 9, 5, 0, {entry("2"), entry("6")}));
  auto replay = read_inbox(r.get(), 4, bad);
  CAF_REQUIRE(replay);
  CAF_CHECK_EQUAL(replay->cursor, 4u);
  CAF_CHECK(!replay->too_old); // 5 is right after 4
  CAF_CHECK(!replay->more);
  CAF_REQUIRE_EQUAL(replay->messages.size(), 1u);
  CAF_CHECK_EQUAL(bad, (std::vector<std::string>{"0-2"}));
  // Retention dropped 2..6: a gap after cursor 1.
  auto gap = own(page(1, 9, 7, 0, {}));
  replay = read_inbox(gap.get(), -1, bad);
  CAF_REQUIRE(replay);
  CAF_CHECK(replay->too_old);
  // Nothing after the cursor: no gap, whatever the oldest.
  auto done = own(page(9, 9, 12, 0, {}));
  replay = read_inbox(done.get(), -1, bad);
  CAF_REQUIRE(replay);
  CAF_CHECK(!replay->too_old);
  // Hostile numbers read as 0.
  auto hostile = own(page(-5, -1, -7, 2, {}));
  replay = read_inbox(hostile.get(), -1, bad);
  CAF_REQUIRE(replay);
  CAF_CHECK_EQUAL(replay->cursor, 0u);
  CAF_CHECK_EQUAL(replay->last_seq, 0u);
  CAF_CHECK(!replay->more);
}

CAF_TEST(an inbox page carries its oldest seq and the first of its life) {
  std::vector<std::string> bad;
  // A device at 5 (an earlier life) while the new life, 37 on, is whole:
  // too old for a resume, nothing missing for a connection that stayed.
  auto jump = own(page(5, 38, 37, 0, {entry("37"), entry("38")}, 37));
  auto replay = read_inbox(jump.get(), -1, bad);
  CAF_REQUIRE(replay);
  CAF_CHECK_EQUAL(replay->oldest, 37u);
  CAF_CHECK_EQUAL(replay->born, 37u);
  CAF_CHECK(replay->too_old);
  CAF_CHECK(only_new_life_ahead(*replay));
  // The new life lost its first message to retention: a loss.
  auto trimmed = own(page(5, 38, 38, 0, {entry("38")}, 37));
  replay = read_inbox(trimmed.get(), -1, bad);
  CAF_REQUIRE(replay);
  CAF_CHECK(replay->too_old);
  CAF_CHECK(!only_new_life_ahead(*replay));
  // A gap within the life (the cursor is past its first seq): a loss.
  auto within = own(page(40, 60, 50, 0, {}, 37));
  replay = read_inbox(within.get(), -1, bad);
  CAF_REQUIRE(replay);
  CAF_CHECK(replay->too_old);
  CAF_CHECK(!only_new_life_ahead(*replay));
  // Unknown (0) or hostile: no exemption.
  auto unknown = own(page(5, 38, 37, 0, {}, 0));
  replay = read_inbox(unknown.get(), -1, bad);
  CAF_REQUIRE(replay);
  CAF_CHECK(!only_new_life_ahead(*replay));
  auto hostile = own(page(5, 38, 37, 0, {}, -37));
  replay = read_inbox(hostile.get(), -1, bad);
  CAF_REQUIRE(replay);
  CAF_CHECK_EQUAL(replay->born, 0u);
  CAF_CHECK(!only_new_life_ahead(*replay));
  CAF_CHECK(bad.empty());
}

CAF_TEST(a malformed inbox reply fails) {
  std::vector<std::string> bad;
  auto short_reply = own(arr({num(1), num(2), num(3)}));
  CAF_CHECK(!read_inbox(short_reply.get(), -1, bad));
  // The reply of an inbox script without the life's first seq.
  auto no_born = own(arr({num(1), num(2), num(3), num(0)}));
  CAF_CHECK(!read_inbox(no_born.get(), -1, bad));
  auto s = own(str("OK"));
  CAF_CHECK(!read_inbox(s.get(), -1, bad));
  CAF_CHECK(!read_inbox(nullptr, -1, bad));
  CAF_CHECK(bad.empty());
}

CAF_TEST(a copy is unread until some device reads past it) {
  auto rs = replies({arr({str("3"), str("7")}), arr({str("3"), str("4")}),
                     arr({}), nil(), arr({str("junk"), num(99)}),
                     arr({str("18446744073709551616")})});
  auto unread = read_unread(rs, {7, 5, 1, 1, 1, 1});
  CAF_CHECK(unread ==
            (std::vector<bool>{false, true, false, false, true, true}));
  // A copy without a seq counts as seq 0: read.
  auto more = replies({arr({str("0")})});
  CAF_CHECK(read_unread(more, {}) == std::vector<bool>{false});
}

// -- groups and counts --------------------------------------------------------

CAF_TEST(members come in byte order up to the limit) {
  auto r = own(arr({str("carol"), str("alice"), str("bob"), num(1)}));
  auto all = read_members(r.get(), 10);
  CAF_REQUIRE(all);
  CAF_CHECK_EQUAL(*all, (std::vector<std::string>{"alice", "bob", "carol"}));
  auto two = read_members(r.get(), 2);
  CAF_REQUIRE(two);
  CAF_CHECK_EQUAL(*two, (std::vector<std::string>{"alice", "bob"}));
  auto none = read_members(r.get(), 0);
  CAF_REQUIRE(none);
  CAF_CHECK(none->empty());
  auto s = own(str("x"));
  CAF_CHECK(!read_members(s.get(), 10));
  CAF_CHECK(!read_members(nullptr, 10));
}

CAF_TEST(members no join could have written are left out) {
  auto r = own(arr({str("bob"), str(""), str("a,b"), str("sp ace"),
                    str(std::string(200000, 'u')), str("\xff"), str("amy")}));
  auto members = read_members(r.get(), 10);
  CAF_REQUIRE(members);
  CAF_CHECK_EQUAL(*members, (std::vector<std::string>{"amy", "bob"}));
  auto receivers = read_group_check(r.get(), "amy", "g", 10, 1u << 20);
  CAF_REQUIRE(receivers);
  CAF_CHECK_EQUAL(receivers->size(), 2u);
}

CAF_TEST(the user count is never below zero) {
  auto n = own(str("17"));
  CAF_CHECK_EQUAL(read_user_count(n.get()), 17u);
  auto negative = own(str("-3"));
  CAF_CHECK_EQUAL(read_user_count(negative.get()), 0u);
  auto junk = own(str("many"));
  CAF_CHECK_EQUAL(read_user_count(junk.get()), 0u);
  auto huge = own(str("99999999999999999999"));
  CAF_CHECK_EQUAL(read_user_count(huge.get()), 0u);
  auto null = own(nil());
  CAF_CHECK_EQUAL(read_user_count(null.get()), 0u);
}

// -- nodes --------------------------------------------------------------------

CAF_TEST(index entries split at the first two commas) {
  auto x = parse_index_entry("7,alice,c1");
  CAF_REQUIRE(x);
  CAF_CHECK(x->inc == "7");
  CAF_CHECK(x->uid == "alice");
  CAF_CHECK(x->conn == "c1");
  auto y = parse_index_entry("7,a|b,c,d");
  CAF_REQUIRE(y);
  CAF_CHECK(y->uid == "a|b");
  CAF_CHECK(y->conn == "c,d");
  auto z = parse_index_entry(",,");
  CAF_REQUIRE(z);
  CAF_CHECK(z->inc.empty() && z->uid.empty() && z->conn.empty());
  CAF_CHECK(!parse_index_entry("7,alice"));
  CAF_CHECK(!parse_index_entry(""));
}

CAF_TEST(redis time reads in ms) {
  auto t = own(arr({str("1700000000"), str("123456")}));
  CAF_CHECK(read_redis_time(t.get()) == int64_t{1700000000123});
  auto hostile = own(arr({str("9007199254740992"), str("x")}));
  CAF_CHECK(read_redis_time(hostile.get()) == int64_t{0});
  auto three = own(arr({str("1"), str("2"), str("3")}));
  CAF_CHECK(!read_redis_time(three.get()));
  auto s = own(str("1"));
  CAF_CHECK(!read_redis_time(s.get()));
}

CAF_TEST(the redis version is read from INFO server) {
  auto info = "# Server\r\nredis_git_sha1:00000000\r\nredis_version:7.0.15\r\n"
              "redis_mode:standalone\r\n";
  CAF_CHECK_EQUAL(redis_version_of(info), "7.0.15");
  CAF_CHECK_EQUAL(redis_version_of("redis_version:6.2.14"), "6.2.14");
  CAF_CHECK_EQUAL(redis_version_of("# Server\r\nredis_mode:standalone\r\n"),
                  "");
  CAF_CHECK_EQUAL(redis_version_of(""), "");
  CAF_CHECK(redis_version_at_least("7.0.15", 7, 0));
  CAF_CHECK(redis_version_at_least("7.2.4", 7, 0));
  CAF_CHECK(redis_version_at_least("8.0", 7, 0));
  CAF_CHECK(redis_version_at_least("10.0.0", 7, 0));
  std::vector<std::string> accepted;
  for (auto v : {"6.2.14", "6.9.9", "5.0.0", "", "7", "7.", ".0", "x.y", "-7.0",
                 "7.-1", "unknown"})
    if (redis_version_at_least(v, 7, 0))
      accepted.emplace_back(v);
  CAF_CHECK_EQUAL(accepted, std::vector<std::string>{});
  // 255.255.255: Redis' version of an unstable build, newest of all.
  CAF_CHECK(redis_version_at_least("255.255.255", 7, 0));
}

CAF_TEST(a node entry reads with its heartbeat on our clock) {
  auto fields = own(arr({str("listen"), str("0.0.0.0:80"), str("cluster"),
                         str("10.0.0.1:4000"), str("incarnation"), str("7"),
                         str("connections"), str("12"), str("hb"), str("1000"),
                         str("extra"), str("x"), str("odd")}));
  auto info = read_node_entry("n1", fields.get(), 50000, 1500);
  CAF_REQUIRE(info);
  CAF_CHECK_EQUAL(info->id, "n1");
  CAF_CHECK_EQUAL(info->listen, "0.0.0.0:80");
  CAF_CHECK_EQUAL(info->cluster, "10.0.0.1:4000");
  CAF_CHECK_EQUAL(info->incarnation, 7u);
  CAF_CHECK_EQUAL(info->connections, 12u);
  CAF_CHECK_EQUAL(info->last_heartbeat_ms, 49500);
}

CAF_TEST(hostile node fields read as harmless values) {
  auto fields = own(
      arr({str("incarnation"), str("-1"), str("connections"), str("4294967296"),
           str("hb"), str("99999999999999999999"), str("listen"), num(3)}));
  auto info = read_node_entry("n1", fields.get(), 50000, 1500);
  CAF_REQUIRE(info);
  CAF_CHECK_EQUAL(info->incarnation, 0u);
  CAF_CHECK_EQUAL(info->connections, 0u);
  CAF_CHECK_EQUAL(info->last_heartbeat_ms, 48500);
  CAF_CHECK(info->listen.empty());
  // A heartbeat far ahead of Redis' time is as old as it is ahead.
  auto ahead = own(arr({str("hb"), str("4102444800000")}));
  auto future = read_node_entry("n1", ahead.get(), 50000, 1500);
  CAF_REQUIRE(future);
  CAF_CHECK_EQUAL(future->last_heartbeat_ms, 50000 - (4102444800000 - 1500));
  // Within the skew two Redis clocks may have, it is fresh.
  auto near = own(arr({str("hb"), str("31500")}));
  auto nearly_now = read_node_entry("n1", near.get(), 50000, 1500);
  CAF_REQUIRE(nearly_now);
  CAF_CHECK_EQUAL(nearly_now->last_heartbeat_ms, 50000);
  // A node being claimed is gone.
  auto claimed = own(arr({str("hb"), str("1000"), str("claimed"), str("1")}));
  CAF_CHECK(!read_node_entry("n1", claimed.get(), 50000, 1500));
  auto s = own(str("x"));
  auto bare = read_node_entry("n2", s.get(), 0, 0);
  CAF_REQUIRE(bare);
  CAF_CHECK_EQUAL(bare->id, "n2");
}
