#define CAF_SUITE redis_append_batch

// Packing a stage's durable appends into append_batch calls and handing the
// batch's reply back per message: order, limits, argument layout, and what
// each message gets when the batch fails as a whole.

#include "adapters/redis_append_batch.hpp"

#include <caf/test/unit_test.hpp>

#include <cstdlib>
#include <string>
#include <vector>

using namespace wsc;
using namespace wsc::redis_store_impl;
using redis_scripts::script;

namespace {

/// An append call as redis_store_state::append builds it (the entry stands
/// for a packed one; the uids for their key bases).
redis_command append_call(const std::string& msg_id,
                          std::vector<std::string> uids, bool wait = false) {
  redis_command cmd{script::append,
                    "P:{u:" + uids.front() + "}:",
                    {"1000", "5", "86400000", "1048576", "entry-" + msg_id},
                    wait};
  cmd.args.insert(cmd.args.end(), uids.begin(), uids.end());
  return cmd;
}

redis_command plain(std::string what) {
  return redis_command{std::nullopt, "k", {std::move(what)}};
}

std::vector<redis_command*> pointers(std::vector<redis_command>& cmds) {
  std::vector<redis_command*> result;
  for (auto& cmd : cmds)
    result.push_back(&cmd);
  return result;
}

redisReply* new_reply(int type) {
  auto r = static_cast<redisReply*>(std::calloc(1, sizeof(redisReply)));
  r->type = type;
  return r;
}

/// An array reply with `n` elements, each an integer reply k.
redis_reply_ptr array_reply(size_t n) {
  auto r = new_reply(REDIS_REPLY_ARRAY);
  r->elements = n;
  r->element = static_cast<redisReply**>(std::calloc(n, sizeof(redisReply*)));
  for (size_t k = 0; k < n; ++k) {
    r->element[k] = new_reply(REDIS_REPLY_INTEGER);
    r->element[k]->integer = static_cast<long long>(k);
  }
  return redis_reply_ptr{r};
}

std::string text_of(const redis_reply_ptr& r) {
  return r && r->str ? std::string{r->str, r->len} : std::string{};
}

} // namespace

CAF_TEST(runs of appends become one call each and keep their place) {
  std::vector<redis_command> cmds{append_call("m1", {"bob"}),
                                  append_call("m2", {"carol", "dave"}, true),
                                  plain("PING"), append_call("m3", {"bob"})};
  packed_stage out;
  pack_appends(pointers(cmds), append_batch_limits{}, out);
  CAF_REQUIRE_EQUAL(out.commands.size(), 3u);
  CAF_CHECK_EQUAL(out.spans, (std::vector<size_t>{2, 1, 1}));
  CAF_CHECK(out.commands[1] == &cmds[2]);
  auto& first = *out.commands[0];
  CAF_CHECK(first.lua == script::append_batch);
  CAF_CHECK_EQUAL(first.key, "P:{u:bob}:");
  CAF_CHECK(first.wait);
  CAF_CHECK_EQUAL(first.args, (std::vector<std::string>{
                                  "1000", "5", "86400000", "1048576", // shared
                                  "entry-m1", "1", "bob",             // m1
                                  "entry-m2", "2", "carol", "dave"}));
  CAF_CHECK(out.commands[2]->lua == script::append_batch);
  CAF_CHECK(!out.commands[2]->wait);
  CAF_CHECK_EQUAL(out.commands[2]->args,
                  (std::vector<std::string>{"1000", "5", "86400000", "1048576",
                                            "entry-m3", "1", "bob"}));
}

CAF_TEST(a stage without appends leaves as it is) {
  std::vector<redis_command> cmds{plain("PING"), plain("TIME")};
  packed_stage out;
  pack_appends(pointers(cmds), append_batch_limits{}, out);
  CAF_REQUIRE_EQUAL(out.commands.size(), 2u);
  CAF_CHECK(out.spans.empty());
  CAF_CHECK(out.batches.empty());
  std::vector<caf::expected<redis_reply_ptr>> replies;
  replies.emplace_back(array_reply(1));
  replies.emplace_back(caf::make_error(caf::sec::runtime_error));
  std::vector<int64_t> replicas{-1, -1};
  unpack_replies(out, replies, replicas);
  CAF_CHECK_EQUAL(replies.size(), 2u);
  CAF_CHECK(!replies[1]);
}

CAF_TEST(a batch ends at each limit) {
  std::vector<redis_command> cmds;
  for (int i = 0; i < 5; ++i)
    cmds.push_back(append_call("m" + std::to_string(i), {"a", "b", "c"}));
  packed_stage out;
  pack_appends(pointers(cmds), append_batch_limits{2, 1024, 1u << 20}, out);
  CAF_CHECK_EQUAL(out.spans, (std::vector<size_t>{2, 2, 1}));
  for (auto& cmd : cmds)
    cmd = append_call("m", {"a", "b", "c"});
  pack_appends(pointers(cmds), append_batch_limits{128, 7, 1u << 20}, out);
  CAF_CHECK_EQUAL(out.spans, (std::vector<size_t>{2, 2, 1}));
  for (auto& cmd : cmds)
    cmd = append_call("m", {"a", "b", "c"});
  // One message alone may exceed the bytes: it still goes, alone.
  pack_appends(pointers(cmds), append_batch_limits{128, 1024, 10}, out);
  CAF_CHECK_EQUAL(out.spans, (std::vector<size_t>{1, 1, 1, 1, 1}));
}

CAF_TEST(each message gets its own reply and the batch replica count) {
  std::vector<redis_command> cmds{plain("PING"), append_call("m1", {"bob"}),
                                  append_call("m2", {"carol"}),
                                  append_call("m3", {"dave"})};
  packed_stage out;
  pack_appends(pointers(cmds), append_batch_limits{}, out);
  CAF_REQUIRE_EQUAL(out.commands.size(), 2u);
  std::vector<caf::expected<redis_reply_ptr>> replies;
  replies.emplace_back(redis_reply_ptr{});
  replies.emplace_back(array_reply(3));
  std::vector<int64_t> replicas{-1, 2};
  unpack_replies(out, replies, replicas);
  CAF_REQUIRE_EQUAL(replies.size(), 4u);
  CAF_CHECK_EQUAL(replicas, (std::vector<int64_t>{-1, 2, 2, 2}));
  for (long long k = 0; k < 3; ++k) {
    auto& r = replies[static_cast<size_t>(k) + 1];
    CAF_REQUIRE(r && *r);
    CAF_CHECK_EQUAL((*r)->integer, k);
  }
}

CAF_TEST(a batch that fails as a whole fails each of its messages) {
  std::vector<redis_command> cmds{append_call("m1", {"bob"}),
                                  append_call("m2", {"carol"})};
  packed_stage out;
  auto check = [&](caf::expected<redis_reply_ptr> reply,
                   const std::string& text) {
    for (auto& cmd : cmds)
      cmd = append_call("m", {"bob"});
    pack_appends(pointers(cmds), append_batch_limits{}, out);
    std::vector<caf::expected<redis_reply_ptr>> replies;
    replies.push_back(std::move(reply));
    std::vector<int64_t> replicas{0};
    unpack_replies(out, replies, replicas);
    CAF_REQUIRE_EQUAL(replies.size(), 2u);
    for (auto& r : replies) {
      if (text.empty()) {
        CAF_CHECK(!r);
      } else {
        CAF_REQUIRE(r && *r);
        CAF_CHECK_EQUAL((*r)->type, REDIS_REPLY_ERROR);
        CAF_CHECK_EQUAL(text_of(*r), text);
      }
    }
  };
  check(caf::make_error(caf::sec::runtime_error), "");
  check(make_error_reply("BUSY Redis is busy running a script"),
        "BUSY Redis is busy running a script");
  // An array of the wrong length, or no array: not what append_batch says.
  check(array_reply(1), "ERR unexpected reply to append_batch");
  check(redis_reply_ptr{}, "ERR unexpected reply to append_batch");
}
