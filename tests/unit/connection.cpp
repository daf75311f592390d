#define CAF_SUITE connection

// A CONNECTION with the built-ins, the REGISTRY and the memory store:
// idempotent sends (`idem`) acked once with one msg_id, and the token
// refresh moving the socket's expiry (issue 16).

#include "actors/connection.hpp"

#include "actors/builtins.hpp"
#include "actors/event_bus.hpp"
#include "actors/registry.hpp"
#include "adapters/memory_store.hpp"
#include "fixture.hpp"
#include "middleware/jwt.hpp"
#include "protocol/frames.hpp"

#include <caf/test/dsl.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <thread>

using namespace wsc;
using json = nlohmann::json;

namespace {

struct fixture : test::builtins_fixture {
  struct client {
    connection_actor handle;
    std::shared_ptr<test::recording_sink> sink;

    std::vector<json> received() {
      std::vector<json> result;
      for (auto& text : sink->take())
        result.push_back(json::parse(text));
      return result;
    }
  };

  client open(const std::string& uid, int64_t exp_s = 0) {
    auto sink = std::make_shared<test::recording_sink>();
    std::map<std::string, std::string> attributes;
    if (exp_s > 0)
      attributes["jwt.exp"] = std::to_string(exp_s);
    auto hdl = spawn_connection(uid, sink, {}, std::move(attributes));
    // run() would fire the expiry timer at once: messages only.
    jobs_only();
    client result{hdl, sink};
    CAF_CHECK_EQUAL(result.received().size(), 1u); // welcome
    return result;
  }

  void say(const client& c, const json& frame) {
    caf::anon_send(c.handle, atom::frame_v, frame.dump());
    run();
  }

  /// Runs the queued jobs without firing any timer (run() and sched.run()
  /// trigger every pending timeout).
  void jobs_only() {
    while (sched.try_run_once())
      ; // nop
  }

  static int64_t now_s() { return frames::now_ms() / 1000; }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(connection_tests, fixture)

CAF_TEST(a repeated idem is acked with the same msg_id and delivered once) {
  auto alice = open("alice");
  auto bob = open("bob");
  json send{
      {"type", "send"}, {"id", 1}, {"to", "bob"}, {"data", 1}, {"idem", "k"}};
  say(alice, send);
  auto first = alice.received();
  CAF_REQUIRE_EQUAL(first.size(), 1u);
  CAF_CHECK_EQUAL(first[0]["type"], "ack");
  auto msg_id = first[0]["msg_id"];
  CAF_CHECK(msg_id.is_string());
  send["id"] = 2;
  say(alice, send);
  auto again = alice.received();
  CAF_REQUIRE_EQUAL(again.size(), 1u);
  CAF_CHECK_EQUAL(again[0],
                  (json{{"type", "ack"}, {"id", 2}, {"msg_id", msg_id}}));
  auto got = bob.received();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK_EQUAL(got[0]["msg_id"], msg_id);
}

CAF_TEST(a refresh moves the expiry of the socket) {
  // The CONNECTION schedules no timer of its own (CAF 0.17 cannot cancel
  // one, and a pending one keeps an ended actor's memory): the socket
  // closes at the deadline it was last given.
  using std::chrono::milliseconds;
  auto near = [](milliseconds got, int64_t want_s) {
    return std::abs(got.count() - want_s * 1000) <= 1500;
  };
  auto alice = open("alice", now_s() + 2);
  CAF_CHECK_EQUAL(alice.sink->scheduled_closes, 1u);
  CAF_CHECK_EQUAL(alice.sink->scheduled_code, 4003u);
  CAF_CHECK(near(alice.sink->scheduled_close, 2));
  caf::anon_send(alice.handle, atom::refresh_v, now_s() + 60);
  jobs_only();
  CAF_CHECK_EQUAL(alice.sink->scheduled_closes, 2u);
  CAF_CHECK(near(alice.sink->scheduled_close, 60));
  // An earlier exp moves it back.
  caf::anon_send(alice.handle, atom::refresh_v, now_s() + 10);
  jobs_only();
  CAF_CHECK(near(alice.sink->scheduled_close, 10));
  // An exp in the past closes at once; no delayed message is left behind.
  caf::anon_send(alice.handle, atom::refresh_v, now_s() - 5);
  jobs_only();
  CAF_CHECK_EQUAL(alice.sink->scheduled_close.count(), 0);
  CAF_CHECK_EQUAL(alice.sink->close_code, 0u);
  CAF_CHECK_EQUAL(sched.clock().schedule().size(), 0u);
}

CAF_TEST(a refresh without auth jwt is forbidden) {
  auto alice = open("alice");
  say(alice, json{{"type", "refresh"},
                  {"id", 1},
                  {"token",
                   sign_jwt(R"({"sub":"alice","exp":9999999999})", "secret")}});
  auto got = alice.received();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK_EQUAL(got[0]["code"], "forbidden");
}

CAF_TEST_FIXTURE_SCOPE_END()
