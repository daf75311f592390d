#define CAF_SUITE redis_round_trip

// What both executors of the Redis STORE send in one round trip and what the
// replies mean: the WAIT after durable writes and the replica counts it
// gives, the NOSCRIPT retry and its merge, and the interval between connect
// attempts.

#include "adapters/redis_round_trip.hpp"

#include <caf/test/unit_test.hpp>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

using namespace wsc;
using namespace wsc::redis_store_impl;
using namespace std::chrono_literals;
using redis_scripts::script;

namespace {

using reply_list = redis_round_trip::reply_list;

redis_command plain(std::string what, bool wait = false) {
  return redis_command{std::nullopt, "k", {std::move(what)}, wait};
}

redis_command lua(std::string key, bool wait = false) {
  return redis_command{script::append, std::move(key), {"x"}, wait};
}

std::vector<const redis_command*>
pointers(const std::vector<redis_command>& cmds) {
  std::vector<const redis_command*> result(cmds.size());
  std::transform(cmds.begin(), cmds.end(), result.begin(),
                 [](const redis_command& cmd) { return &cmd; });
  return result;
}

redis_reply_ptr integer_reply(long long x) {
  // hiredis frees replies with free() (freeReplyObject).
  redis_reply_ptr r{
      static_cast<redisReply*>(std::calloc(1, sizeof(redisReply)))};
  r->type = REDIS_REPLY_INTEGER;
  r->integer = x;
  return r;
}

caf::error broken() {
  return caf::make_error(caf::sec::runtime_error, "connection broken");
}

std::vector<std::string> strings(const std::vector<std::string_view>& argv) {
  return {argv.begin(), argv.end()};
}

/// The commands' replies, in order: k for the command at index k.
reply_list numbered(size_t n) {
  reply_list got;
  for (size_t k = 0; k < n; ++k)
    got.emplace_back(integer_reply(static_cast<long long>(k)));
  return got;
}

/// The integer of a reply, -1 for no reply or another type.
long long integer_of(const caf::expected<redis_reply_ptr>& r) {
  if (!r || !*r || (*r)->type != REDIS_REPLY_INTEGER)
    return -1;
  return (*r)->integer;
}

bool is_noscript_reply(const caf::expected<redis_reply_ptr>& r) {
  return r && *r && is_noscript(**r);
}

/// Builds argvs like redis_store_state::argv_of, with the SHA of the
/// scripts in `sha` (the executors reload the scripts between two round
/// trips).
struct fixture {
  std::string sha = "sha-1";
  std::string prefix = "P";

  argv_fn argv_of() {
    return
        [this](const redis_command& cmd, std::vector<std::string_view>& argv) {
          argv.clear();
          if (cmd.lua) {
            argv.emplace_back("EVALSHA");
            argv.emplace_back(sha);
            argv.emplace_back("1");
            argv.emplace_back(cmd.key);
            argv.emplace_back(prefix);
          }
          for (auto& x : cmd.args)
            argv.emplace_back(x);
        };
  }

  redis_round_trip plan(const std::vector<redis_command>& cmds,
                        int64_t replicas = 2) {
    return redis_round_trip{pointers(cmds), wait_settings{replicas, 500ms},
                            argv_of()};
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(redis_round_trip_tests, fixture)

CAF_TEST(a WAIT follows only durable writes with durable replicas) {
  std::vector<redis_command> cmds{plain("PING"), lua("{u:bob}", true)};
  auto rt = plan(cmds);
  CAF_CHECK(rt.waits());
  CAF_REQUIRE_EQUAL(rt.argvs().size(), 3u);
  CAF_CHECK_EQUAL(strings(rt.argvs()[0]), (std::vector<std::string>{"PING"}));
  CAF_CHECK_EQUAL(
      strings(rt.argvs()[1]),
      (std::vector<std::string>{"EVALSHA", "sha-1", "1", "{u:bob}", "P", "x"}));
  CAF_CHECK_EQUAL(strings(rt.argvs()[2]),
                  (std::vector<std::string>{"WAIT", "2", "500"}));
  // Replicas 0 (durable-replicas=0, or a Redis Cluster): no WAIT.
  auto none = plan(cmds, 0);
  CAF_CHECK(!none.waits());
  CAF_CHECK_EQUAL(none.argvs().size(), 2u);
  // No command marked `wait`: no WAIT.
  std::vector<redis_command> reads{plain("PING"), lua("{u:bob}")};
  auto no_writes = plan(reads);
  CAF_CHECK(!no_writes.waits());
  CAF_CHECK_EQUAL(no_writes.argvs().size(), 2u);
  // Nothing to send: nothing at all.
  auto empty = plan({});
  CAF_CHECK(!empty.waits());
  CAF_CHECK(empty.argvs().empty());
  CAF_CHECK(empty.replies().empty());
  CAF_CHECK(empty.replicas().empty());
}

CAF_TEST(the WAIT argv survives a move of the round trip) {
  std::vector<redis_command> cmds{lua("{u:bob}", true)};
  auto rt = plan(cmds, 12345678901);
  auto moved = std::move(rt);
  CAF_REQUIRE_EQUAL(moved.argvs().size(), 2u);
  CAF_CHECK_EQUAL(strings(moved.argvs()[1]),
                  (std::vector<std::string>{"WAIT", "12345678901", "500"}));
}

CAF_TEST(the WAIT count goes to the durable writes with a reply) {
  std::vector<redis_command> cmds{plain("PING"), lua("{u:a}", true),
                                  lua("{u:b}", true), lua("{u:c}", true),
                                  lua("{u:d}")};
  auto rt = plan(cmds);
  auto got = numbered(5);
  // A durable write without a reply (hiredis gave an error), and one
  // whose reply is an error: the WAIT still counts for the latter.
  got[2] = broken();
  got[3] = make_error_reply("ERR something");
  got.emplace_back(integer_reply(1)); // the WAIT
  rt.take(std::move(got));
  CAF_REQUIRE_EQUAL(rt.replies().size(), 5u);
  CAF_CHECK_EQUAL(rt.replicas(), (std::vector<int64_t>{-1, 1, -1, 1, -1}));
  CAF_CHECK_EQUAL(integer_of(rt.replies()[0]), 0);
  CAF_CHECK_EQUAL(integer_of(rt.replies()[1]), 1);
  CAF_CHECK(!rt.replies()[2]);
  CAF_CHECK(rt.noscript().empty());
}

CAF_TEST(a WAIT without an answer counts no replica) {
  std::vector<redis_command> cmds{lua("{u:a}", true), plain("PING")};
  auto check = [&](caf::expected<redis_reply_ptr> wait_reply) {
    auto rt = plan(cmds);
    auto got = numbered(2);
    got.push_back(std::move(wait_reply));
    rt.take(std::move(got));
    CAF_CHECK_EQUAL(rt.replicas(), (std::vector<int64_t>{0, -1}));
    CAF_CHECK_EQUAL(rt.replies().size(), 2u);
  };
  check(broken()); // the connection broke before the WAIT's reply
  // A replica answers WAIT with an error; nothing else than an integer >= 0
  // counts.
  check(make_error_reply("ERR WAIT cannot be used with replica instances"));
  check(integer_reply(-1));
  check(redis_reply_ptr{});
  // The connection broke before the last command's reply: the commands
  // before it ran, on no replica known.
  auto rt = plan(cmds);
  reply_list got;
  got.emplace_back(integer_reply(7));
  got.emplace_back(broken());
  got.emplace_back(broken());
  rt.take(std::move(got));
  CAF_CHECK_EQUAL(rt.replicas(), (std::vector<int64_t>{0, -1}));
  CAF_CHECK_EQUAL(integer_of(rt.replies()[0]), 7);
  CAF_CHECK(!rt.replies()[1]);
}

CAF_TEST(without a WAIT every count is minus one) {
  std::vector<redis_command> cmds{lua("{u:a}", true), plain("PING")};
  auto rt = plan(cmds, 0);
  rt.take(numbered(2));
  CAF_CHECK_EQUAL(rt.replicas(), (std::vector<int64_t>{-1, -1}));
  CAF_CHECK_EQUAL(integer_of(rt.replies()[1]), 1);
}

CAF_TEST(a sender that waits itself gives the counts) {
  // The Redis Cluster client: a WAIT per master, no WAIT in the argvs.
  std::vector<redis_command> cmds{lua("{u:a}", true), lua("{u:b}", true)};
  auto rt = plan(cmds, 0);
  CAF_CHECK_EQUAL(rt.argvs().size(), 2u);
  reply_list got;
  got.emplace_back(make_error_reply("NOSCRIPT No matching script."));
  got.emplace_back(integer_reply(1));
  rt.take(std::move(got), std::vector<int64_t>{2, 1});
  CAF_CHECK_EQUAL(rt.replicas(), (std::vector<int64_t>{2, 1}));
  CAF_CHECK_EQUAL(rt.noscript(), (std::vector<size_t>{0}));
}

CAF_TEST(nothing sent fails every command) {
  std::vector<redis_command> cmds{lua("{u:a}", true), plain("PING")};
  auto rt = plan(cmds);
  rt.fail(broken());
  CAF_REQUIRE_EQUAL(rt.replies().size(), 2u);
  CAF_CHECK(!rt.replies()[0]);
  CAF_CHECK(!rt.replies()[1]);
  CAF_CHECK_EQUAL(rt.replicas(), (std::vector<int64_t>{-1, -1}));
  CAF_CHECK(rt.noscript().empty());
}

CAF_TEST(the NOSCRIPT replies are found) {
  std::vector<redis_command> cmds{lua("{u:a}"), plain("PING"), lua("{u:b}"),
                                  lua("{u:c}"), lua("{u:d}")};
  auto rt = plan(cmds);
  auto got = numbered(5);
  got[0] = make_error_reply("NOSCRIPT No matching script. Use EVAL.");
  got[2] = make_error_reply("ERR NOSCRIPT is not at the start");
  got[3] = broken();
  got[4] = make_error_reply("NOSCRIPT No matching script. Use EVAL.");
  rt.take(std::move(got));
  CAF_CHECK_EQUAL(rt.noscript(), (std::vector<size_t>{0, 4}));
}

CAF_TEST(the retry sends the NOSCRIPT commands with a WAIT of their own) {
  std::vector<redis_command> cmds{lua("{u:a}", true), plain("PING"),
                                  lua("{u:b}"), lua("{u:c}", true)};
  auto rt = plan(cmds);
  auto got = numbered(4);
  got[2] = make_error_reply("NOSCRIPT No matching script.");
  got[3] = make_error_reply("NOSCRIPT No matching script.");
  got.emplace_back(integer_reply(2)); // the first WAIT
  rt.take(std::move(got));
  CAF_CHECK_EQUAL(rt.replicas(), (std::vector<int64_t>{2, -1, -1, 2}));
  CAF_REQUIRE_EQUAL(rt.noscript(), (std::vector<size_t>{2, 3}));
  // The executor loaded the scripts again (here with another SHA).
  sha = "sha-2";
  auto retry = rt.retry();
  CAF_REQUIRE_EQUAL(retry.commands().size(), 2u);
  CAF_CHECK(retry.commands()[0] == &cmds[2]);
  CAF_CHECK(retry.commands()[1] == &cmds[3]);
  CAF_CHECK(retry.waits());
  CAF_REQUIRE_EQUAL(retry.argvs().size(), 3u);
  CAF_CHECK_EQUAL(std::string{retry.argvs()[0][1]}, "sha-2");
  CAF_CHECK_EQUAL(strings(retry.argvs()[2]),
                  (std::vector<std::string>{"WAIT", "2", "500"}));
  // The retried write counts on the retry's WAIT only: the first one came
  // after an EVALSHA that wrote nothing.
  reply_list again;
  again.emplace_back(integer_reply(20));
  again.emplace_back(integer_reply(30));
  again.emplace_back(broken()); // the retry's WAIT: no answer
  retry.take(std::move(again));
  rt.merge(std::move(retry));
  CAF_CHECK_EQUAL(integer_of(rt.replies()[0]), 0);
  CAF_CHECK_EQUAL(integer_of(rt.replies()[1]), 1);
  CAF_CHECK_EQUAL(integer_of(rt.replies()[2]), 20);
  CAF_CHECK_EQUAL(integer_of(rt.replies()[3]), 30);
  CAF_CHECK_EQUAL(rt.replicas(), (std::vector<int64_t>{2, -1, -1, 0}));
  CAF_CHECK(rt.noscript().empty());
}

CAF_TEST(a retry without durable writes has no WAIT) {
  std::vector<redis_command> cmds{lua("{u:a}", true), lua("{u:b}")};
  auto rt = plan(cmds);
  auto got = numbered(2);
  got[1] = make_error_reply("NOSCRIPT No matching script.");
  got.emplace_back(integer_reply(1));
  rt.take(std::move(got));
  auto retry = rt.retry();
  CAF_CHECK(!retry.waits());
  CAF_CHECK_EQUAL(retry.argvs().size(), 1u);
  // The retry may meet NOSCRIPT again, and the connection may break.
  reply_list again;
  again.emplace_back(make_error_reply("NOSCRIPT No matching script."));
  retry.take(std::move(again));
  rt.merge(std::move(retry));
  CAF_CHECK(is_noscript_reply(rt.replies()[1]));
  CAF_CHECK_EQUAL(rt.noscript(), (std::vector<size_t>{1}));
  CAF_CHECK_EQUAL(rt.replicas(), (std::vector<int64_t>{1, -1}));
}

CAF_TEST(a retry cut short counts no replica for what ran) {
  std::vector<redis_command> cmds{lua("{u:a}", true), lua("{u:b}", true)};
  auto rt = plan(cmds);
  reply_list got;
  got.emplace_back(make_error_reply("NOSCRIPT No matching script."));
  got.emplace_back(make_error_reply("NOSCRIPT No matching script."));
  got.emplace_back(integer_reply(2));
  rt.take(std::move(got));
  auto retry = rt.retry();
  reply_list again;
  again.emplace_back(integer_reply(5));
  again.emplace_back(broken());
  again.emplace_back(broken());
  retry.take(std::move(again));
  rt.merge(std::move(retry));
  CAF_CHECK_EQUAL(integer_of(rt.replies()[0]), 5);
  CAF_CHECK(!rt.replies()[1]);
  CAF_CHECK_EQUAL(rt.replicas(), (std::vector<int64_t>{0, -1}));
}

CAF_TEST(refused scripts fail the NOSCRIPT commands) {
  std::vector<redis_command> cmds{lua("{u:a}", true), lua("{u:b}", true)};
  auto rt = plan(cmds);
  auto got = numbered(2);
  got[1] = make_error_reply("NOSCRIPT No matching script.");
  got.emplace_back(integer_reply(2));
  rt.take(std::move(got));
  rt.refuse(broken());
  CAF_CHECK_EQUAL(integer_of(rt.replies()[0]), 0);
  CAF_CHECK(!rt.replies()[1]);
  CAF_CHECK_EQUAL(rt.replicas(), (std::vector<int64_t>{2, -1}));
  CAF_CHECK(rt.noscript().empty());
}

CAF_TEST(attempts that time out stretch the retry interval) {
  auto next = [](std::chrono::milliseconds current,
                 std::chrono::milliseconds took) {
    return next_retry_interval(current, took, 250ms, 2000ms);
  };
  // A refused connect (quick) keeps the short interval, whatever it was.
  CAF_CHECK_EQUAL(next(250ms, 1ms).count(), 250);
  CAF_CHECK_EQUAL(next(1000ms, 249ms).count(), 250);
  // A slow one (at least the interval: it timed out) doubles it...
  CAF_CHECK_EQUAL(next(250ms, 250ms).count(), 500);
  CAF_CHECK_EQUAL(next(500ms, 1000ms).count(), 1000);
  // ... from no less than the interval...
  CAF_CHECK_EQUAL(next(0ms, 1000ms).count(), 250);
  // ... up to the longest.
  CAF_CHECK_EQUAL(next(1000ms, 1000ms).count(), 2000);
  CAF_CHECK_EQUAL(next(2000ms, 1000ms).count(), 2000);
  auto interval = 250ms;
  for (int i = 0; i < 10; ++i)
    interval = next(interval, 1000ms);
  CAF_CHECK_EQUAL(interval.count(), 2000);
  CAF_CHECK_EQUAL(next(interval, 2ms).count(), 250);
}

CAF_TEST_FIXTURE_SCOPE_END()
