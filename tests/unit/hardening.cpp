#define CAF_SUITE hardening

// Checks of hostile input: names, UTF-8, deliveries decoded from peers,
// fan-out budgets; the HTTP API surviving an exception.

#include "actors/http_api.hpp"
#include "adapters/memory_store.hpp"
#include "fixture.hpp"
#include "middleware/middleware.hpp"
#include "protocol/frames.hpp"

#include <caf/test/dsl.hpp>

#include <stdexcept>
#include <string>
#include <vector>

using namespace wsc;

CAF_TEST(valid_utf8 accepts well formed text only) {
  CAF_CHECK(valid_utf8(""));
  CAF_CHECK(valid_utf8("plain ascii"));
  CAF_CHECK(valid_utf8("zo\xc3\xab \xe2\x82\xac \xf0\x9f\x98\x80"));
  CAF_CHECK(!valid_utf8("\xff"));
  CAF_CHECK(!valid_utf8("\xc3\x28"));         // bad continuation
  CAF_CHECK(!valid_utf8("\xc3"));             // truncated
  CAF_CHECK(!valid_utf8("\xc0\xaf"));         // overlong '/'
  CAF_CHECK(!valid_utf8("\xe0\x80\xaf"));     // overlong, 3 bytes
  CAF_CHECK(!valid_utf8("\xed\xa0\x80"));     // UTF-16 surrogate
  CAF_CHECK(!valid_utf8("\xf4\x90\x80\x80")); // above U+10FFFF
  CAF_CHECK(!valid_utf8("\xf5\x80\x80\x80"));
}

CAF_TEST(valid_name needs utf8 and the documented charset) {
  CAF_CHECK(valid_name("alice"));
  CAF_CHECK(valid_name("acme:bob"));
  CAF_CHECK(valid_name("zo\xc3\xab"));
  CAF_CHECK(!valid_name(""));
  CAF_CHECK(!valid_name(std::string(129, 'a')));
  CAF_CHECK(!valid_name("a b"));
  CAF_CHECK(!valid_name("a,b"));
  CAF_CHECK(!valid_name(std::string{"a\0b", 3}));
  CAF_CHECK(!valid_name("\xff"));
  CAF_CHECK(!valid_name("\xc3\x28"));
}

CAF_TEST(deliveries from outside are checked before use) {
  auto d = frames::make_delivery(delivery_kind::message, "alice", "{}");
  d.uids = {"bob"};
  CAF_CHECK(!frames::check(d));
  auto bad_kind = d;
  bad_kind.kind = static_cast<delivery_kind>(99);
  CAF_CHECK_EQUAL(to_ec(frames::check(bad_kind)), ec::bad_frame);
  // The encoder of an out-of-range kind yields nothing (no UB).
  CAF_CHECK(frames::encode(bad_kind, "bob", 7).empty());
  auto bad_uid = d;
  bad_uid.uids = {"\xff"};
  CAF_CHECK(frames::check(bad_uid));
  auto bad_data = d;
  bad_data.data = "\"\xc3\x28\"";
  CAF_CHECK(frames::check(bad_data));
  // The payload is copied into frames as it is: it must be one JSON value,
  // nested no deeper than a client's.
  for (auto not_json : {"", "{", "{}}", "1 2", "\"a\",\"b\"", "{\"a\":1}]"}) {
    bad_data.data = not_json;
    CAF_CHECK_EQUAL(to_ec(frames::check(bad_data)), ec::bad_frame);
  }
  bad_data.data = std::string(frames::max_json_depth + 1, '[') +
                  std::string(frames::max_json_depth + 1, ']');
  CAF_CHECK(frames::check(bad_data));
  for (auto json : {"1", "\"text\"", "[1,{\"a\":null}]", " {} "}) {
    bad_data.data = json;
    CAF_CHECK(!frames::check(bad_data));
  }
  auto extra_seqs = d;
  extra_seqs.seqs = {1, 2};
  CAF_CHECK(frames::check(extra_seqs));
  auto group_without_name = d;
  group_without_name.kind = delivery_kind::group;
  CAF_CHECK(frames::check(group_without_name));
  auto close = frames::make_delivery(delivery_kind::disconnect, {}, {});
  close.ts = 4001;
  close.uids = {"bob"};
  CAF_CHECK(!frames::check(close));
  close.ts = 70000;
  CAF_CHECK(frames::check(close));
  stored_message msg;
  msg.kind = static_cast<delivery_kind>(7);
  CAF_CHECK(frames::check(msg));
  msg.kind = delivery_kind::message;
  msg.data = "1";
  CAF_CHECK(!frames::check(msg));
}

CAF_TEST(fan - out budget counts receivers times payload) {
  CAF_CHECK(!frames::check_fanout(10, 1000, 1 << 20));
  CAF_CHECK_EQUAL(to_ec(frames::check_fanout(1000, 2000, 1 << 20)),
                  ec::too_large);
  CAF_CHECK(!frames::check_fanout(0, 1 << 30, 1024));
  // No overflow with absurd numbers.
  CAF_CHECK(frames::check_fanout(SIZE_MAX, SIZE_MAX - 1, 1 << 20));
}

namespace {

/// An exchange whose callback records the answers; it throws on the first
/// `throws` of them, like a callback whose writing fails.
struct recorded_exchange {
  std::shared_ptr<std::vector<unsigned>> statuses =
      std::make_shared<std::vector<unsigned>>();

  http_exchange_ptr make(std::string target, int throws) {
    auto ex = std::make_shared<http_exchange>();
    ex->request.method = "GET";
    ex->request.target = std::move(target);
    auto left = std::make_shared<int>(throws);
    ex->respond = [statuses = statuses, left](http_response res) {
      statuses->push_back(res.status);
      if ((*left)-- > 0)
        throw std::runtime_error("write failed");
    };
    return ex;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(hardening_actors, test::node_fixture)

CAF_TEST(an exception in the HTTP API answers 500 and the actor lives on) {
  auto store = track(sys.spawn(memory_store, size_t{10}, int64_t{1000}));
  auto api = track(sys.spawn(http_api, settings::http_api(opts, who), registry,
                             store, health, metrics, cluster_events));
  recorded_exchange rec;
  caf::anon_send(api, rec.make("/healthz", 1));
  run();
  CAF_CHECK_EQUAL(*rec.statuses, std::vector<unsigned>({200u, 500u}));
  CAF_CHECK_EQUAL(metrics->internal_failures.load(), 1u);
  rec.statuses->clear();
  caf::anon_send(api, rec.make("/healthz", 0));
  run();
  CAF_CHECK_EQUAL(*rec.statuses, std::vector<unsigned>({200u}));
}

CAF_TEST(healthz is 503 once a long - lived actor failed) {
  auto store = track(sys.spawn(memory_store, size_t{10}, int64_t{1000}));
  auto api = track(sys.spawn(http_api, settings::http_api(opts, who), registry,
                             store, health, metrics, cluster_events));
  health->failed_actor = "registry";
  recorded_exchange rec;
  caf::anon_send(api, rec.make("/healthz", 0));
  run();
  CAF_CHECK_EQUAL(*rec.statuses, std::vector<unsigned>({503u}));
}

CAF_TEST_FIXTURE_SCOPE_END()
