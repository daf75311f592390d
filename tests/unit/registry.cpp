#define CAF_SUITE registry

// The REGISTRY in a node's flow, with real actors and recording sinks
// instead of sockets: CONNECTION -> BUILTINS -> REGISTRY -> memory
// STATE_STORE, and the PEER's batches and the relay for other nodes.

#include "actors/registry.hpp"

#include "actors/builtins.hpp"
#include "actors/connection.hpp"
#include "actors/event_bus.hpp"
#include "actors/peer.hpp"
#include "adapters/memory_store.hpp"
#include "fixture.hpp"
#include "protocol/frames.hpp"

#include <caf/test/dsl.hpp>

#include <nlohmann/json.hpp>

using namespace wsc;
using json = nlohmann::json;

namespace {

struct client {
  connection_actor handle;
  std::shared_ptr<test::recording_sink> sink;
  std::string conn;

  /// The frames received since the last call, parsed.
  std::vector<json> received() {
    std::vector<json> result;
    for (auto& text : sink->take())
      result.push_back(json::parse(text));
    return result;
  }
};

/// Records every event it gets, as text.
caf::behavior recorder(caf::event_based_actor*,
                       std::shared_ptr<std::vector<std::string>> log) {
  return {
      [log](register_event& ev) { log->push_back("REGISTER " + ev.who.uid); },
      [log](logout_event& ev) { log->push_back("LOGOUT " + ev.who.uid); },
      [log](presence_event& ev) {
        log->push_back(std::string{ev.online ? "ONLINE " : "OFFLINE "} +
                       ev.uid);
      },
      [log](recv_message_event& ev) { log->push_back("RECV " + ev.frame); },
  };
}

/// Whether the answer to `request` is the error `bad_frame`.
template<class Result, class Handle>
bool refused(caf::scheduler::test_coordinator& sched, Handle request) {
  sched.run();
  bool refused = false;
  request.receive([](Result&) { CAF_FAIL("accepted a malformed delivery"); },
                  [&refused](caf::error& err) {
                    refused = err.category() == ec_category &&
                              err.code() == static_cast<uint8_t>(ec::bad_frame);
                  });
  return refused;
}

struct fixture : test::builtins_fixture {
  client open(const std::string& uid) {
    auto sink = std::make_shared<test::recording_sink>();
    auto conn = conn_ids.next();
    auto hdl = spawn_connection(uid, sink, conn);
    run();
    client result{hdl, sink, conn};
    auto frames = result.received();
    CAF_REQUIRE_EQUAL(frames.size(), 1u);
    CAF_CHECK_EQUAL(frames[0]["type"], "welcome");
    CAF_CHECK_EQUAL(frames[0]["uid"], uid);
    CAF_CHECK_EQUAL(frames[0]["conn"], conn);
    return result;
  }

  void say(const client& c, const std::string& text) {
    caf::anon_send(c.handle, atom::frame_v, text);
    run();
  }

  void say(const client& c, const json& frame) { say(c, frame.dump()); }

  /// Stores `count` durable messages carrying `data` (JSON) for `uid`.
  void store_for(const std::string& uid, int count, const std::string& data) {
    auto& inboxes =
        deref<state_store_actor::stateful_base<memory_store_state>>(store)
            .state;
    delivery d;
    d.durable = true;
    d.data = data;
    d.ts = frames::now_ms();
    for (int i = 0; i < count; ++i) {
      d.msg_id = "m" + std::to_string(i);
      CAF_REQUIRE(inboxes.append(d, {uid}));
    }
  }

  /// Another REGISTRY on the fixture's store, from the options as they
  /// are now.
  messaging_actor spawn_registry() {
    return track(sys.spawn(wsc::registry, settings::registry(opts, who, false),
                           store, events, unread_actor{}, metrics));
  }

  /// The answer to a durable send of 10 KB from `from` at `address` to 100
  /// uids: "ack" or the error's message.
  std::string send_100(const messaging_actor& messaging,
                       const std::string& from, const std::string& address) {
    auto d = frames::make_delivery(delivery_kind::message, from,
                                   '"' + std::string(10000, 'x') + '"', true);
    for (int i = 0; i < 100; ++i)
      d.uids.push_back("r" + std::to_string(i));
    d.sender_address = address;
    auto request = self->request(messaging, caf::infinite, atom::send_v, d);
    run();
    std::string outcome;
    request.receive(
        [&outcome](delivery_report&) { outcome = "ack"; },
        [&outcome](caf::error& err) { outcome = error_message(err); });
    return outcome;
  }

  /// Hands the REGISTRY every one of `publishes` before the store answers
  /// any, then counts the answers: reports, and refusals as rate_limited
  /// whose message holds `phrase`.
  std::pair<size_t, size_t>
  publish_all_at_once(const std::vector<delivery>& publishes,
                      const std::string& phrase) {
    messaging_actor messaging = registry;
    std::vector<decltype(self->request(messaging, caf::infinite,
                                       atom::publish_v, delivery{}))>
        requests;
    for (auto& d : publishes)
      requests.push_back(
          self->request(messaging, caf::infinite, atom::publish_v, d));
    for (size_t i = 0; i < publishes.size(); ++i) {
      sched.prioritize(registry);
      sched.run_once();
    }
    run();
    size_t answered = 0;
    size_t refused = 0;
    for (auto& request : requests)
      request.receive([&answered](delivery_report&) { ++answered; },
                      [&refused, &phrase](caf::error& err) {
                        refused += err == ec::rate_limited &&
                                   error_message(err).find(phrase) !=
                                       std::string::npos;
                      });
    return {answered, refused};
  }

  /// A PEER actor for node n2 that records the batches it gets; it confirms
  /// them (gives credit back) only if `confirm`.
  peer_actor spawn_peer(std::vector<delivery_batch>& received, bool confirm) {
    return track(sys.spawn([&received, confirm](peer_actor::pointer self)
                               -> peer_actor::behavior_type {
      return {
          [&received, confirm,
           self](atom::remote, delivery_batch& batch) -> caf::result<atom::ok> {
            received.push_back(std::move(batch));
            if (confirm)
              return atom::ok_v;
            return self->make_response_promise<atom::ok>();
          },
          [](atom::hello, std::string&, uint64_t, caf::actor&) {},
          [](shutdown_event&) {},
          [](atom::ping) -> caf::result<std::string, uint64_t> {
            return {std::string{"n2"}, uint64_t{7}};
          },
          [&received](atom::deliver, delivery& d) -> uint32_t {
            // A `to_conn` send: recorded as a batch of its own.
            delivery_batch batch;
            batch.items.push_back(std::move(d));
            received.push_back(std::move(batch));
            return 1;
          },
      };
    }));
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(registry_tests, fixture)

CAF_TEST(send reaches every connection of the receiver and acks) {
  auto alice = open("alice");
  auto bob1 = open("bob");
  auto bob2 = open("bob");
  say(alice,
      json{{"type", "send"}, {"id", 1}, {"to", "bob"}, {"data", {{"x", 1}}}});
  auto acks = alice.received();
  CAF_REQUIRE_EQUAL(acks.size(), 1u);
  // A durable send's ack carries its msg_id (issue 16).
  CAF_CHECK(acks[0]["msg_id"].is_string());
  acks[0].erase("msg_id");
  CAF_CHECK_EQUAL(acks[0], (json{{"type", "ack"}, {"id", 1}}));
  for (auto* bob : {&bob1, &bob2}) {
    auto got = bob->received();
    CAF_REQUIRE_EQUAL(got.size(), 1u);
    CAF_CHECK_EQUAL(got[0]["type"], "message");
    CAF_CHECK_EQUAL(got[0]["from"], "alice");
    CAF_CHECK_EQUAL(got[0]["to"], "bob");
    CAF_CHECK_EQUAL(got[0]["data"], (json{{"x", 1}}));
    CAF_CHECK(got[0]["ts"].is_number_integer());
  }
}

CAF_TEST(the builtins actor answers like the inline path) {
  // A replaced built-in (or one restarted by its SUPERVISOR) is reached
  // through the BUILTINS actor: same answers.
  inline_builtins = behaviour_actor{};
  auto alice = open("alice");
  auto bob = open("bob");
  say(alice, json{{"type", "send"}, {"id", 1}, {"to", "bob"}, {"data", "x"}});
  say(alice, json{{"type", "ping"}, {"id", 2}});
  say(alice, json{{"type", "send"}, {"id", 3}, {"data", "x"}});
  auto got = alice.received();
  CAF_REQUIRE_EQUAL(got.size(), 3u);
  CAF_CHECK_EQUAL(got[0]["type"], "ack");
  CAF_CHECK_EQUAL(got[1]["type"], "pong");
  CAF_CHECK_EQUAL(got[2]["type"], "error");
  CAF_CHECK_EQUAL(got[2]["code"], "bad_frame");
  auto delivered = bob.received();
  CAF_REQUIRE_EQUAL(delivered.size(), 1u);
  CAF_CHECK_EQUAL(delivered[0]["data"], "x");
}

CAF_TEST(a list of receivers and the order of messages) {
  auto alice = open("alice");
  auto bob = open("bob");
  auto carol = open("carol");
  for (int i = 0; i < 50; ++i)
    caf::anon_send(
        alice.handle, atom::frame_v,
        json{{"type", "send"}, {"to", {"bob", "carol"}}, {"data", i}}.dump());
  run();
  for (auto* c : {&bob, &carol}) {
    auto got = c->received();
    CAF_REQUIRE_EQUAL(got.size(), 50u);
    for (int i = 0; i < 50; ++i)
      CAF_CHECK_EQUAL(got[static_cast<size_t>(i)]["data"], i);
  }
  CAF_CHECK_EQUAL(bob.received().size(), 0u);
}

CAF_TEST(bad input gets errors and the connection stays usable) {
  auto alice = open("alice");
  auto bob = open("bob");
  say(alice, std::string{"{not json"});
  say(alice, json{{"type", "send"}, {"id", "a"}, {"data", 1}});
  say(alice, json{{"type", "teleport"}, {"id", 2}});
  say(alice, json{{"type", "send"}, {"id", 3}, {"to", {}}, {"data", 1}});
  say(alice, json{{"type", "send"}, {"id", 4}, {"to", "x y"}, {"data", 1}});
  say(alice, json{{"id", 5}});
  say(alice, std::string{"[1,2]"});
  say(alice, json{{"type", "broadcast"}, {"id", 6}, {"data", 1}});
  auto got = alice.received();
  CAF_REQUIRE_EQUAL(got.size(), 8u);
  CAF_CHECK_EQUAL(got[0]["code"], "bad_json");
  CAF_CHECK_EQUAL(got[1]["code"], "bad_frame");
  CAF_CHECK_EQUAL(got[1]["id"], "a");
  CAF_CHECK_EQUAL(got[2]["code"], "unknown_type");
  CAF_CHECK_EQUAL(got[2]["id"], 2);
  CAF_CHECK_EQUAL(got[3]["code"], "bad_frame");
  CAF_CHECK_EQUAL(got[4]["code"], "bad_frame");
  CAF_CHECK_EQUAL(got[5]["code"], "bad_frame");
  CAF_CHECK_EQUAL(got[6]["code"], "bad_frame");
  CAF_CHECK_EQUAL(got[7]["code"], "forbidden");
  for (auto& frame : got)
    CAF_CHECK_EQUAL(frame["type"], "error");
  CAF_CHECK_EQUAL(bob.received().size(), 0u);
  say(alice, json{{"type", "ping"}, {"id", 7}});
  CAF_CHECK_EQUAL(alice.received(),
                  std::vector<json>({json{{"type", "pong"}, {"id", 7}}}));
  CAF_CHECK_EQUAL(alice.sink->close_code, 0);
}

CAF_TEST(presence groups and members) {
  auto alice1 = open("alice");
  auto alice2 = open("alice");
  auto bob = open("bob");
  auto dave = open("dave");
  say(alice1, json{{"type", "presence"}, {"id", 1}, {"uids", {"bob", "zed"}}});
  CAF_CHECK_EQUAL(
      alice1.received(),
      std::vector<json>({json{{"type", "presence"},
                              {"id", 1},
                              {"online", {{"bob", true}, {"zed", false}}}}}));
  say(alice1, json{{"type", "join"}, {"id", 2}, {"group", "g"}});
  say(bob, json{{"type", "join"}, {"id", 3}, {"group", "g"}});
  CAF_CHECK_EQUAL(alice1.received().size(), 1u);
  CAF_CHECK_EQUAL(bob.received().size(), 1u);
  say(alice1,
      json{{"type", "publish"}, {"id", 4}, {"group", "g"}, {"data", "hi"}});
  // Every connection of every member, the sender's own included.
  auto own = alice1.received();
  CAF_REQUIRE_EQUAL(own.size(), 2u);
  CAF_CHECK_EQUAL(own[0]["type"], "group");
  CAF_CHECK_EQUAL(own[1]["type"], "ack");
  for (auto* c : {&alice2, &bob}) {
    auto got = c->received();
    CAF_REQUIRE_EQUAL(got.size(), 1u);
    CAF_CHECK_EQUAL(got[0]["type"], "group");
    CAF_CHECK_EQUAL(got[0]["group"], "g");
    CAF_CHECK_EQUAL(got[0]["from"], "alice");
  }
  CAF_CHECK_EQUAL(dave.received().size(), 0u);
  say(dave, json{{"type", "publish"}, {"id", 5}, {"group", "g"}, {"data", 1}});
  auto refused = dave.received();
  CAF_REQUIRE_EQUAL(refused.size(), 1u);
  CAF_CHECK_EQUAL(refused[0]["code"], "not_member");
  say(dave, json{{"type", "members"}, {"id", 6}, {"group", "g"}});
  auto members = dave.received();
  CAF_REQUIRE_EQUAL(members.size(), 1u);
  CAF_CHECK_EQUAL(members[0]["uids"], (json{"alice", "bob"}));
  say(bob, json{{"type", "leave"}, {"id", 7}, {"group", "g"}});
  bob.received();
  say(dave, json{{"type", "members"}, {"id", 8}, {"group", "g"}});
  auto after_leave = dave.received();
  CAF_REQUIRE_EQUAL(after_leave.size(), 1u);
  CAF_CHECK_EQUAL(after_leave[0].dump(),
                  R"({"group":"g","id":8,"type":"members","uids":["alice"]})");
}

CAF_TEST(persistent groups keep offline members) {
  auto alice = open("alice");
  auto bob = open("bob");
  say(alice, json{{"type", "join"}, {"group", "g"}});
  say(bob, json{{"type", "join"}, {"group", "g"}});
  caf::anon_send(bob.handle, atom::closed_v);
  run();
  say(alice, json{{"type", "members"}, {"id", 2}, {"group", "g"}});
  auto got = alice.received();
  CAF_REQUIRE_EQUAL(got.size(), 2u); // ack, members
  CAF_CHECK_EQUAL(got[1]["uids"], (json{"alice", "bob"}));
}

CAF_TEST(the memory store ends session groups with the last connection) {
  for (bool session : {false, true}) {
    memory_store_state st;
    st.cfg.session_groups = session;
    binding b1{"ann", "n1", "c1", 1};
    binding b2{"ann", "n1", "c2", 1};
    st.bindings["ann"].emplace(b1.conn, b1);
    st.bindings["ann"].emplace(b2.conn, b2);
    CAF_REQUIRE(st.join("ann", "g", 10));
    CAF_CHECK(!st.unbind(b1));
    CAF_CHECK_EQUAL(st.members["g"].count("ann"), 1u); // still connected
    CAF_CHECK(st.unbind(b2));                          // went offline
    auto member = st.members.count("g") > 0 && st.members["g"].count("ann");
    CAF_CHECK_EQUAL(member, !session);
    CAF_CHECK_EQUAL(st.groups_of.count("ann") > 0, !session);
  }
}

CAF_TEST(group limit and bad names) {
  deref<registry_actor::stateful_base<registry_state>>(registry)
      .state.cfg.max_groups = 2;
  auto alice = open("alice");
  say(alice, json{{"type", "join"}, {"id", 1}, {"group", "a"}});
  say(alice, json{{"type", "join"}, {"id", 2}, {"group", "b"}});
  say(alice, json{{"type", "join"}, {"id", 3}, {"group", "b"}});
  say(alice, json{{"type", "join"}, {"id", 4}, {"group", "c"}});
  say(alice, json{{"type", "join"}, {"id", 5}, {"group", "bad name"}});
  auto got = alice.received();
  CAF_REQUIRE_EQUAL(got.size(), 5u);
  CAF_CHECK_EQUAL(got[2]["type"], "ack");
  CAF_CHECK_EQUAL(got[3]["code"], "too_many_groups");
  CAF_CHECK_EQUAL(got[4]["code"], "bad_frame");
}

CAF_TEST(events follow connections) {
  auto log = std::make_shared<std::vector<std::string>>();
  auto rec = track(sys.spawn(recorder, log));
  caf::anon_send(events, atom::subscribe_v, uint32_t{on_all_events}, rec);
  run();
  auto bob1 = open("bob");
  auto bob2 = open("bob");
  say(bob1, json{{"type", "ping"}});
  caf::anon_send(bob1.handle, atom::closed_v);
  run();
  caf::anon_send(bob2.handle, atom::closed_v);
  run();
  CAF_CHECK_EQUAL(*log, std::vector<std::string>(
                            {"REGISTER bob", "ONLINE bob", "REGISTER bob",
                             R"(RECV {"type":"ping"})", "LOGOUT bob",
                             "LOGOUT bob", "OFFLINE bob"}));
  // A dead subscriber is dropped and costs nothing afterwards.
  caf::anon_send_exit(rec, caf::exit_reason::user_shutdown);
  run();
  CAF_CHECK_EQUAL(subscribed->load(), 0u);
}

CAF_TEST(a connection closed during its replay gets its LOGOUT) {
  // REGISTER goes out once the first page of a replay is read, LOGOUT went
  // out only for a connection whose replay had finished (review helper-46).
  auto log = std::make_shared<std::vector<std::string>>();
  auto rec = track(sys.spawn(recorder, log));
  caf::anon_send(events, atom::subscribe_v, uint32_t{on_all_events}, rec);
  run();
  store_for("bob", 3, "1");
  auto sink = std::make_shared<test::recording_sink>();
  sink->queued = 1ull << 40; // a client that reads nothing: the replay waits
  open_context opening{
      conn_ref{who.id, conn_ids.next(), "bob", "phone"}, {}, {}};
  auto hdl = track(sys.spawn(connection, connection_setup(), sink, opening));
  // Not run(): it would fire the replay's polls for ever (the client never
  // reads); sched.run() leaves timers alone.
  sched.run();
  caf::anon_send(hdl, atom::closed_v);
  sched.run();
  CAF_CHECK_EQUAL(*log,
                  std::vector<std::string>({"REGISTER bob", "ONLINE bob",
                                            "LOGOUT bob", "OFFLINE bob"}));
}

CAF_TEST(deliveries for other nodes go out as one batch per node) {
  std::vector<delivery_batch> received;
  auto peer = spawn_peer(received, true);
  caf::anon_send(endpoint, atom::peer_up_v, local_only{}, std::string{"n2"},
                 peer);
  for (auto uid : {"carol", "dan"})
    self->send(store, atom::bind_v,
               binding{uid, "n2", std::string{uid} + ".c", 7});
  run();
  auto alice = open("alice");
  auto bob = open("bob");
  for (int i = 0; i < 3; ++i)
    caf::anon_send(
        alice.handle, atom::frame_v,
        json{{"type", "send"}, {"to", {"bob", "carol", "dan"}}, {"data", i}}
            .dump());
  run();
  CAF_CHECK_EQUAL(bob.received().size(), 3u);
  size_t items = 0;
  for (auto& batch : received) {
    CAF_CHECK_EQUAL(batch.origin, "n1");
    for (auto& d : batch.items) {
      CAF_CHECK_EQUAL(d.uids, std::vector<std::string>({"carol", "dan"}));
      CAF_CHECK_EQUAL(d.data, std::to_string(items));
      ++items;
    }
  }
  CAF_CHECK_EQUAL(items, 3u);
  CAF_CHECK_LESS_OR_EQUAL(received.size(), 3u);
  // A batch from a peer reaches the local receivers.
  auto d = frames::make_delivery(delivery_kind::message, "zed", "42");
  d.uids = {"bob"};
  caf::anon_send(registry, atom::remote_v, delivery_batch{"n2", {d}});
  run();
  auto got = bob.received();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK_EQUAL(got[0]["from"], "zed");
  CAF_CHECK_EQUAL(got[0]["data"], 42);
}

CAF_TEST(a peer that stops confirming batches gets no more than the credit) {
  std::vector<delivery_batch> received;
  auto peer = spawn_peer(received, false); // never confirms
  caf::anon_send(endpoint, atom::peer_up_v, local_only{}, std::string{"n2"},
                 peer);
  self->send(store, atom::bind_v, binding{"carol", "n2", "c1", 7});
  sched.run();
  auto alice = open("alice");
  for (int i = 0; i < 200; ++i) {
    caf::anon_send(alice.handle, atom::frame_v,
                   json{{"type", "send"}, {"to", "carol"}, {"data", i}}.dump());
    sched.run(); // no timeouts fire: the peer stays silent
  }
  CAF_CHECK_EQUAL(received.size(), size_t{peer_state::max_in_flight});
  size_t items = 0;
  for (auto& batch : received)
    items += batch.items.size();
  CAF_CHECK_LESS(items, 200u);
  // Nothing is lost for the sender: every send was acknowledged (stored).
  size_t acks = 0;
  for (auto& frame : alice.received())
    acks += frame["type"] == "ack";
  CAF_CHECK_EQUAL(acks, 200u);
}

CAF_TEST(deliveries for a node without a connection go to the relay) {
  std::vector<std::pair<std::string, delivery_batch>> relayed;
  auto relay = track(sys.spawn([&relayed]() -> relay_actor::behavior_type {
    return {
        [&relayed](atom::relay, std::string& node, delivery_batch& batch) {
          relayed.emplace_back(std::move(node), std::move(batch));
        },
    };
  }));
  caf::anon_send(endpoint, atom::relay_v, local_only{}, relay);
  // carol is bound to n2, which this node has no CAF connection to.
  self->send(store, atom::bind_v, binding{"carol", "n2", "c1", 7});
  run();
  auto alice = open("alice");
  caf::anon_send(alice.handle, atom::frame_v,
                 json{{"type", "send"}, {"to", "carol"}, {"data", 1}}.dump());
  run();
  CAF_REQUIRE_EQUAL(relayed.size(), 1u);
  CAF_CHECK_EQUAL(relayed[0].first, "n2");
  CAF_CHECK_EQUAL(relayed[0].second.origin, "n1");
  CAF_REQUIRE_EQUAL(relayed[0].second.items.size(), 1u);
  CAF_CHECK_EQUAL(relayed[0].second.items[0].uids,
                  std::vector<std::string>{"carol"});
  CAF_CHECK_EQUAL(relayed[0].second.items[0].seqs, std::vector<uint64_t>{1});
  // A peer that stops confirming, then is declared lost: what waited for
  // its credit goes to the relay instead of being dropped.
  std::vector<delivery_batch> unconfirmed;
  auto peer = spawn_peer(unconfirmed, false);
  caf::anon_send(endpoint, atom::peer_up_v, local_only{}, std::string{"n2"},
                 peer);
  sched.run();
  auto sends = peer_state::max_in_flight + 5;
  for (uint32_t i = 0; i < sends; ++i) {
    caf::anon_send(alice.handle, atom::frame_v,
                   json{{"type", "send"}, {"to", "carol"}, {"data", i}}.dump());
    sched.run();
  }
  CAF_CHECK_EQUAL(relayed.size(), 1u);
  caf::anon_send(endpoint, atom::peer_down_v, local_only{}, std::string{"n2"});
  sched.run();
  CAF_REQUIRE_EQUAL(relayed.size(), 2u);
  CAF_CHECK_EQUAL(relayed[1].second.items.size(), 5u);
  CAF_CHECK_EQUAL(relayed[1].second.items.back().seqs,
                  std::vector<uint64_t>{sends + 1});
}

CAF_TEST(broadcasts reach cluster nodes without a link through the relay) {
  std::vector<std::pair<std::string, delivery_batch>> relayed;
  auto relay = track(sys.spawn([&relayed]() -> relay_actor::behavior_type {
    return {
        [&relayed](atom::relay, std::string& node, delivery_batch& batch) {
          relayed.emplace_back(std::move(node), std::move(batch));
        },
    };
  }));
  caf::anon_send(endpoint, atom::relay_v, local_only{}, relay);
  std::vector<delivery_batch> linked;
  caf::anon_send(endpoint, atom::peer_up_v, local_only{}, std::string{"n2"},
                 spawn_peer(linked, true));
  // DISCOVERY lists n2 (linked), n3 (cut off) and this node itself.
  caf::anon_send(endpoint, atom::nodes_v, local_only{},
                 std::vector<std::string>{"n1", "n2", "n3"});
  run();
  auto d = frames::make_delivery(delivery_kind::broadcast, {}, "\"all\"");
  self->send(registry, atom::broadcast_v, d);
  run();
  CAF_REQUIRE_EQUAL(linked.size(), 1u);
  CAF_CHECK_EQUAL(linked[0].items.size(), 1u);
  CAF_REQUIRE_EQUAL(relayed.size(), 1u);
  CAF_CHECK_EQUAL(relayed[0].first, "n3");
  CAF_REQUIRE_EQUAL(relayed[0].second.items.size(), 1u);
  CAF_CHECK(relayed[0].second.items[0].kind == delivery_kind::broadcast);
  // n3 dropped out of the cluster: no more relaying to it.
  caf::anon_send(endpoint, atom::nodes_v, local_only{},
                 std::vector<std::string>{"n2"});
  run();
  self->send(registry, atom::broadcast_v, d);
  run();
  CAF_CHECK_EQUAL(relayed.size(), 1u);
  CAF_CHECK_EQUAL(linked.size(), 2u);
}

CAF_TEST(except skips connections and keeps durable numbering) {
  auto alice = open("alice");
  auto bob = open("bob");
  auto bob2 = open("bob");
  say(alice, json{{"type", "send"},
                  {"to", "bob"},
                  {"data", 1},
                  {"except", {bob2.conn}}});
  CAF_CHECK_EQUAL(bob.received().size(), 1u);
  CAF_CHECK_EQUAL(bob2.received().size(), 0u);
  say(alice, json{{"type", "send"},
                  {"to", "bob"},
                  {"data", 3},
                  {"except", json::array({"x.y.1", bob.conn, bob2.conn})}});
  CAF_CHECK_EQUAL(bob.received().size(), 0u);
  CAF_CHECK_EQUAL(bob2.received().size(), 0u);
  auto acks = alice.received();
  CAF_REQUIRE_EQUAL(acks.size(), 2u);
  CAF_CHECK_EQUAL(acks[0]["type"], "ack");
  CAF_CHECK_EQUAL(acks[1]["type"], "ack");
  // Durable copies the excluded connections skipped do not come back as a
  // gap: the next message is just the next one.
  say(alice, json{{"type", "send"}, {"to", "bob"}, {"data", 8}});
  CAF_CHECK_EQUAL(bob.received().size(), 1u);
  CAF_CHECK_EQUAL(bob2.received().size(), 1u);
  alice.received();
  for (auto bad : {json("x.y.1"), json::array({"nodots"}), json::array({7})}) {
    say(alice,
        json{{"type", "send"}, {"to", "bob"}, {"data", 4}, {"except", bad}});
    auto answer = alice.received();
    CAF_REQUIRE_EQUAL(answer.size(), 1u);
    CAF_CHECK_EQUAL(answer[0]["code"], "bad_frame");
  }
}

CAF_TEST(except lists count against the batch size) {
  std::vector<delivery_batch> received;
  caf::anon_send(endpoint, atom::peer_up_v, local_only{}, std::string{"n2"},
                 spawn_peer(received, true));
  self->send(store, atom::bind_v, binding{"carol", "n2", "c1", 7});
  run();
  auto alice = open("alice");
  // 256 ids of 120 bytes: ~33 KB per delivery, so a 4 MiB batch holds ~125.
  auto except = json::array();
  for (int i = 0; i < 256; ++i)
    except.push_back("n3.0." + std::to_string(i) + std::string(110, 'x'));
  for (int i = 0; i < 150; ++i) // within the rate limit's burst
    caf::anon_send(
        alice.handle, atom::frame_v,
        json{{"type", "send"}, {"to", "carol"}, {"data", i}, {"except", except}}
            .dump());
  run();
  size_t items = 0;
  for (auto& batch : received) {
    size_t bytes = 0;
    for (auto& d : batch.items)
      for (auto& conn : d.except)
        bytes += conn.size();
    CAF_CHECK_LESS_OR_EQUAL(bytes, peer_state::max_batch_bytes);
    items += batch.items.size();
  }
  CAF_CHECK_EQUAL(items, 150u);
  CAF_CHECK_GREATER_OR_EQUAL(received.size(), 2u); // ~5 MB: two batches
}

CAF_TEST(to_conn reaches one local connection or says why not ) {
  auto alice = open("alice");
  auto bob = open("bob");
  auto bob2 = open("bob");
  say(alice,
      json{{"type", "send"}, {"id", 1}, {"to_conn", bob2.conn}, {"data", 5}});
  auto got = bob2.received();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK_EQUAL(got[0]["to"], "bob");
  CAF_CHECK_EQUAL(got[0]["data"], 5);
  CAF_CHECK_EQUAL(bob.received().size(), 0u);
  auto ack = alice.received();
  CAF_REQUIRE_EQUAL(ack.size(), 1u);
  CAF_CHECK_EQUAL(ack[0]["delivered"], true);
  // Unknown here, and a node that is not in the cluster: gone.
  for (auto target : {who.id + ".0.999", std::string{"n9.0.1"}}) {
    say(alice, json{{"type", "send"}, {"to_conn", target}, {"data", 6}});
    auto answer = alice.received();
    CAF_REQUIRE_EQUAL(answer.size(), 1u);
    CAF_CHECK_EQUAL(answer[0]["delivered"], false);
    CAF_CHECK_EQUAL(answer[0]["reason"], "gone");
  }
  // A peer's connection: asked of that peer, which answers.
  std::vector<delivery_batch> received;
  caf::anon_send(endpoint, atom::peer_up_v, local_only{}, std::string{"n2"},
                 spawn_peer(received, true));
  run();
  say(alice, json{{"type", "send"}, {"to_conn", "n2.0.1"}, {"data", 7}});
  CAF_REQUIRE_EQUAL(received.size(), 1u);
  CAF_CHECK_EQUAL(received[0].items[0].to_conn, "n2.0.1");
  CAF_CHECK(received[0].items[0].uids.empty());
  auto answer = alice.received();
  CAF_REQUIRE_EQUAL(answer.size(), 1u);
  CAF_CHECK_EQUAL(answer[0]["delivered"], true);
}

CAF_TEST(disconnect and drain close connections) {
  auto bob1 = open("bob");
  auto bob2 = open("bob");
  auto carol = open("carol");
  self->send(registry, atom::disconnect_v, std::string{"bob"}, uint16_t{4001});
  run();
  CAF_CHECK_EQUAL(bob1.sink->close_code, 4001);
  CAF_CHECK_EQUAL(bob2.sink->close_code, 4001);
  CAF_CHECK_EQUAL(carol.sink->close_code, 0);
  self->send(registry, atom::drain_v, uint32_t{1000});
  run();
  auto bye = carol.received();
  CAF_REQUIRE_EQUAL(bye.size(), 1u);
  CAF_CHECK_EQUAL(bye[0]["type"], "bye");
  CAF_CHECK_EQUAL(bye[0]["reason"], "shutdown");
  CAF_CHECK_LESS_OR_EQUAL(bye[0]["reconnect_after_ms"].get<int>(), 1000);
  CAF_CHECK_EQUAL(carol.sink->close_code, 1001);
}

CAF_TEST(the rate limiter refuses then asks to close) {
  using clock = rate_limiter::clock;
  auto t0 = clock::now();
  CAF_CHECK(!rate_limiter{0, t0}.limits()); // rate-limit=0: none
  rate_limiter limiter{10, t0};
  CAF_CHECK(limiter.limits());
  for (int i = 0; i < 20; ++i)
    CAF_CHECK(limiter.take(t0) == rate_limiter::verdict::pass);
  for (int i = 0; i < 10; ++i)
    CAF_CHECK(limiter.take(t0) == rate_limiter::verdict::refuse);
  CAF_CHECK(limiter.take(t0) == rate_limiter::verdict::close);
  rate_limiter refilled{10, t0};
  for (int i = 0; i < 20; ++i)
    refilled.take(t0);
  CAF_CHECK(refilled.take(t0 + std::chrono::milliseconds(150)) ==
            rate_limiter::verdict::pass);
}

CAF_TEST(a flooding client gets rate_limited then 1008) {
  opts.rate_limit = 5;
  auto alice = open("alice");
  for (int i = 0; i < 30; ++i)
    caf::anon_send(alice.handle, atom::frame_v,
                   json{{"type", "ping"}, {"id", i}}.dump());
  run();
  auto got = alice.received();
  size_t pongs = 0;
  size_t limited = 0;
  for (auto& frame : got) {
    pongs += frame["type"] == "pong";
    limited += frame["type"] == "error" && frame["code"] == "rate_limited";
  }
  CAF_CHECK_EQUAL(pongs, 10u);
  CAF_CHECK_EQUAL(limited, 5u);
  CAF_CHECK_EQUAL(alice.sink->close_code, 1008);
}

CAF_TEST(a member list costs rate by its length) {
  // Found by a probe review: a 35-byte `members` frame of a large group
  // cost one frame of rate-limit and up to 1.6 ms of Redis.
  opts.rate_limit = 10; // a burst of 20 frames
  for (int i = 0; i < 500; ++i)
    caf::anon_send(store, atom::join_v, "m" + std::to_string(i),
                   std::string{"big"}, uint32_t{100});
  run();
  auto alice = open("alice");
  for (int i = 0; i < 6; ++i)
    say(alice, json{{"type", "members"}, {"id", i}, {"group", "big"}});
  size_t lists = 0;
  size_t limited = 0;
  for (auto& frame : alice.received()) {
    if (frame.contains("uids")) {
      ++lists;
      CAF_CHECK_EQUAL(frame["uids"].size(), 500u);
    }
    limited += frame["type"] == "error" && frame["code"] == "rate_limited";
  }
  // Each list of 500 costs 1 + 4 frames: four take the burst (a fifth
  // only if the bucket refilled meanwhile), the rest are refused.
  CAF_CHECK_GREATER_OR_EQUAL(lists, 4u);
  CAF_CHECK_LESS(lists, 6u);
  CAF_CHECK_GREATER_OR_EQUAL(limited, 1u);
}

CAF_TEST(volatile deliveries of a uid are bounded by the receivers looked up) {
  // Found by a probe review: a frame costs one of rate-limit however many
  // members the store reads for it, and 95 volatile publishes a second to
  // a 10,000-member group took others' send->ack from 2 to 760 ms.
  opts.rate_limit = 0;
  opts.volatile_types = {"publish"};
  for (int i = 0; i < 5000; ++i)
    caf::anon_send(store, atom::join_v, "m" + std::to_string(i),
                   std::string{"big"}, uint32_t{100});
  caf::anon_send(store, atom::join_v, std::string{"alice"}, std::string{"big"},
                 uint32_t{100});
  run();
  auto alice = open("alice");
  size_t acked = 0;
  size_t limited = 0;
  for (int i = 0; i < 40; ++i) {
    say(alice,
        json{{"type", "publish"}, {"id", i}, {"group", "big"}, {"data", "hi"}});
    for (auto& frame : alice.received()) {
      acked += frame["type"] == "ack";
      if (frame["type"] == "error") {
        CAF_CHECK_EQUAL(frame["code"], "rate_limited");
        CAF_CHECK_NOT_EQUAL(
            frame["message"].get<std::string>().find("looked up more than"),
            std::string::npos);
        ++limited;
      }
    }
  }
  // 5,001 lookups each: the burst of 100,000 takes 19 (the 20th runs it
  // into debt), the refill of 20,000 a second a few more while the test
  // runs; then publishes are refused until the bucket is out of debt.
  CAF_CHECK_GREATER_OR_EQUAL(acked, 19u);
  CAF_CHECK_LESS(acked, 35u);
  CAF_CHECK_EQUAL(acked + limited, 40u);
  // Another uid is not affected, nor are alice's durable sends.
  auto bob = open("bob");
  say(bob, json{{"type", "send"}, {"id", "b"}, {"to", "m1"}, {"data", 1}});
  auto to_bob = bob.received();
  CAF_REQUIRE_EQUAL(to_bob.size(), 1u);
  CAF_CHECK_EQUAL(to_bob[0]["type"], "ack");
  say(alice, json{{"type", "send"}, {"id", "a"}, {"to", "m1"}, {"data", 1}});
  auto to_alice = alice.received();
  CAF_REQUIRE_EQUAL(to_alice.size(), 1u);
  CAF_CHECK_EQUAL(to_alice[0]["type"], "ack");
}

CAF_TEST(volatile publishes of a uid waiting for the store are bounded) {
  // A publish's members are known only from the store's answer: without a
  // bound, everything a uid's connections have in flight passes the check
  // of a full bucket (review helper-43: up to 16 frames of 64 connections).
  caf::anon_send(store, atom::join_v, std::string{"alice"}, std::string{"g"},
                 uint32_t{100});
  run();
  messaging_actor messaging = registry;
  auto d = frames::make_delivery(delivery_kind::group, "alice", "1");
  d.group = "g";
  auto [delivered, waiting] = publish_all_at_once(
      std::vector<delivery>(20, d), "publishes waiting for the store");
  CAF_CHECK_EQUAL(delivered, store_budgets::max_publishes_in_flight);
  CAF_CHECK_EQUAL(waiting, 20u - store_budgets::max_publishes_in_flight);
  // Once answered, alice publishes again.
  d.data = "2";
  auto again = self->request(messaging, caf::infinite, atom::publish_v, d);
  run();
  again.receive([](delivery_report&) {},
                [](caf::error& err) { CAF_FAIL("refused: " << err); });
}

CAF_TEST(the uids of one client address share its store budget) {
  // helper-51's probe: under auth=none one address took 2,417 uids, each
  // with a full budget of its own, and filled Redis (1.17 GB in 8 s).
  opts.stored_bytes_rate = 64 << 20;         // per uid: far from binding here
  opts.stored_bytes_rate_per_address = 1024; // burst: 2 x max-fanout-bytes
  auto messaging = spawn_registry();
  // Each send reserves 100 x (10,002 + 64) + 100 x 4,400 = 1,446,600 bytes
  // of the address' 2 MiB: the second runs it into debt, the third is
  // refused, whichever uid sends it. An IPv6 host counts by its /64.
  CAF_CHECK_EQUAL(send_100(messaging, "a1", "2001:db8::1"), "ack");
  CAF_CHECK_EQUAL(send_100(messaging, "a2", "2001:db8::2"), "ack");
  auto refused = send_100(messaging, "a3", "2001:db8::3");
  CAF_CHECK_NOT_EQUAL(refused.find("this client address"), std::string::npos);
  CAF_CHECK_NOT_EQUAL(refused.find("stored-bytes-rate-per-address"),
                      std::string::npos);
  // Another address, and the API (no address), are not affected.
  CAF_CHECK_EQUAL(send_100(messaging, "a3", "2001:db8:0:1::3"), "ack");
  CAF_CHECK_EQUAL(send_100(messaging, "a4", ""), "ack");
}

CAF_TEST(what one client address keeps is bounded and rate 0 turns both off) {
  opts.stored_bytes_rate = 64 << 20;
  opts.stored_bytes_rate_per_address = 64 << 20;
  opts.stored_bytes_kept_per_address = 1'000'000;
  auto kept = spawn_registry();
  // 1,446,600 bytes per send: the first runs the kept bucket into debt.
  CAF_CHECK_EQUAL(send_100(kept, "a1", "10.0.0.1"), "ack");
  auto refused = send_100(kept, "a2", "10.0.0.1");
  CAF_CHECK_NOT_EQUAL(refused.find("stored-bytes-kept-per-address"),
                      std::string::npos);
  opts.stored_bytes_rate_per_address = 0;
  auto off = spawn_registry();
  for (int i = 0; i < 3; ++i)
    CAF_CHECK_EQUAL(send_100(off, "a" + std::to_string(i), "10.0.0.1"), "ack");
}

CAF_TEST(durable publishes of one client address waiting for the store are bounded) {
  // helper-54: a publish is charged for its members only once stored, and
  // the cap of publishes waiting was per uid: 120 uids of one address with
  // 8 publishes each stored 223 MB in 3.4 s past the address' 8 MiB burst.
  auto limit = registry_state::max_address_publishes_in_flight;
  for (uint32_t i = 0; i < limit + 8; ++i) // a publisher must be a member
    caf::anon_send(store, atom::join_v, "u" + std::to_string(i),
                   std::string{"g"}, uint32_t{100});
  run();
  auto publish_of = [](uint32_t from) {
    auto d = frames::make_delivery(delivery_kind::group,
                                   "u" + std::to_string(from), "1", true);
    d.group = "g";
    d.sender_address = "10.0.0.1";
    return d;
  };
  // One publish of each of limit + 8 uids.
  std::vector<delivery> publishes;
  for (uint32_t i = 0; i < limit + 8; ++i)
    publishes.push_back(publish_of(i));
  auto [stored, waiting] = publish_all_at_once(
      publishes, "this client address has 32 durable publishes waiting");
  CAF_CHECK_EQUAL(stored, limit);
  CAF_CHECK_EQUAL(waiting, 8u);
  // Once answered, the address publishes again.
  messaging_actor messaging = registry;
  auto again =
      self->request(messaging, caf::infinite, atom::publish_v, publish_of(0));
  run();
  again.receive([](delivery_report&) {},
                [](caf::error& err) { CAF_FAIL("refused: " << err); });
}

CAF_TEST(a uid whose replays read much gets no new resume for a while) {
  // Found by a probe review: each resume costs the store about the bytes of
  // its page, and one uid reconnecting with device= 132 times a second took
  // 0.62 of Redis' core. What a uid's replays read is budgeted in bytes.
  store_for("bob", 4, "\"" + std::string(200 * 1024, 'x') + "\"");
  auto resume = [this](const std::string& device) {
    auto sink = std::make_shared<test::recording_sink>();
    open_context opening{
        conn_ref{who.id, conn_ids.next(), "bob", device}, {}, {}};
    auto hdl = track(sys.spawn(connection, connection_setup(), sink, opening));
    run();
    auto frames = sink->take();
    bool welcomed =
        !frames.empty() && json::parse(frames[0])["type"] == "welcome";
    caf::anon_send_exit(hdl, caf::exit_reason::user_shutdown);
    run();
    return welcomed;
  };
  // Each resume's first read returns the whole inbox here (the memory store
  // leaves cutting pages to the node; Redis cuts them too): 800 KB charged
  // each, the 16 MiB burst lasts for about 20, then resumes are refused
  // until the bucket refills (4 MiB a second).
  size_t welcomed = 0;
  for (int i = 0; i < 200 && resume("d" + std::to_string(i % 50)); ++i)
    ++welcomed;
  CAF_CHECK_GREATER_OR_EQUAL(welcomed, 15u);
  CAF_CHECK_LESS(welcomed, 200u);
  // A plain connection of bob is not affected.
  open("bob");
}

CAF_TEST(malformed deliveries from a peer are dropped and the registry lives) {
  auto bob = open("bob");
  auto valid = frames::make_delivery(delivery_kind::message, "zed", "1");
  valid.uids = {"bob"};
  auto bad_kind = valid;
  bad_kind.kind = static_cast<delivery_kind>(99);
  auto bad_uid = valid;
  bad_uid.uids = {"\xff"};
  caf::anon_send(registry, atom::remote_v,
                 delivery_batch{"n2", {bad_kind, bad_uid, valid}});
  run();
  auto got = bob.received();
  CAF_REQUIRE_EQUAL(got.size(), 1u);
  CAF_CHECK_EQUAL(got[0]["from"], "zed");
  CAF_CHECK_EQUAL(metrics->rejected_deliveries.load(), 2u);
  // Still serving: a new connection opens and messages flow.
  auto carol = open("carol");
  say(carol, json{{"type", "send"}, {"id", 1}, {"to", "bob"}, {"data", 2}});
  auto acks = carol.received();
  CAF_REQUIRE_EQUAL(acks.size(), 1u);
  CAF_CHECK_EQUAL(acks[0]["type"], "ack");
  CAF_CHECK_EQUAL(bob.received().size(), 1u);
}

CAF_TEST(malformed deliveries of an embedder are refused and reach nobody) {
  // A behaviour of the application talks to the REGISTRY directly (the
  // `messaging_actor`): what it hands over is checked like a peer's.
  auto bob = open("bob");
  auto members = open("bob");
  say(members, json{{"type", "join"}, {"id", 1}, {"group", "g"}});
  CAF_REQUIRE_EQUAL(members.received().size(), 1u);
  auto not_json = frames::make_delivery(delivery_kind::message, "bot",
                                        "hello, not JSON", true);
  not_json.uids = {"bob"};
  auto bad_uid = frames::make_delivery(delivery_kind::message, "bot", "1");
  bad_uid.uids = {"bob", std::string{"\xff"}};
  auto bad_group = not_json;
  bad_group.data = "2";
  bad_group.group = "no spaces allowed";
  messaging_actor messaging = registry;
  CAF_CHECK(refused<delivery_report>(
      sched, self->request(messaging, caf::infinite, atom::send_v, not_json)));
  CAF_CHECK(refused<delivery_report>(
      sched, self->request(messaging, caf::infinite, atom::send_v, bad_uid)));
  CAF_CHECK(refused<delivery_report>(
      sched,
      self->request(messaging, caf::infinite, atom::publish_v, bad_group)));
  auto long_idem = not_json;
  long_idem.data = "3";
  long_idem.idem = std::string(65, 'k');
  CAF_CHECK(refused<delivery_report>(
      sched, self->request(messaging, caf::infinite, atom::send_v, long_idem)));
  auto to_conn = not_json;
  to_conn.uids.clear();
  to_conn.to_conn = bob.conn;
  CAF_CHECK(refused<delivery_report>(
      sched, self->request(messaging, caf::infinite, atom::send_v, to_conn)));
  CAF_CHECK(
      refused<atom::ok>(sched, self->request(messaging, caf::infinite,
                                             atom::broadcast_v, not_json)));
  CAF_CHECK(bob.received().empty());
  CAF_CHECK(members.received().empty());
  // Well formed, the same sends go through.
  auto valid = not_json;
  valid.data = R"({"text":"hello"})";
  auto sent = self->request(messaging, caf::infinite, atom::send_v, valid);
  sched.run();
  sent.receive(
      [](delivery_report& report) { CAF_CHECK(!report.msg_id.empty()); },
      [](caf::error& err) { CAF_FAIL("send failed: " << err); });
  CAF_CHECK_EQUAL(bob.received().size(), 1u);
}

CAF_TEST(a send over the fan - out budget is too_large and stores nothing) {
  opts.max_message_bytes = opts.max_fanout_bytes;
  auto alice = open("alice");
  auto bob = open("bob");
  std::string big(opts.max_fanout_bytes / 2, 'x');
  say(alice, json{{"type", "send"},
                  {"id", 1},
                  {"to", {"bob", "carol", "dan"}},
                  {"data", big}});
  auto answer = alice.received();
  CAF_REQUIRE_EQUAL(answer.size(), 1u);
  CAF_CHECK_EQUAL(answer[0]["code"], "too_large");
  CAF_CHECK(bob.received().empty());
  // A uid named many times counts once.
  say(alice, json{{"type", "send"},
                  {"id", 2},
                  {"to", std::vector<std::string>(1000, "bob")},
                  {"data", big}});
  auto acks = alice.received();
  CAF_REQUIRE_EQUAL(acks.size(), 1u);
  CAF_CHECK_EQUAL(acks[0]["type"], "ack");
  CAF_CHECK_EQUAL(bob.received().size(), 1u);
}

CAF_TEST(a replay waiting for a client that reads nothing looks rarely) {
  // Found by a probe review: the REGISTRY looked every 20 ms for as long as
  // the client did not read (50 messages a second per stalled resume).
  store_for("bob", 20, "\"x\"");
  auto sink = std::make_shared<test::recording_sink>();
  sink->queued = opts.send_queue_bytes;
  track(
      sys.spawn(connection, connection_setup(), sink,
                open_context{conn_ref{who.id, conn_ids.next(), "bob", "phone"},
                             {},
                             {{"since", "0"}}}));
  sched.run();
  size_t looks = 0;
  for (int i = 0; i < 1000; ++i) { // 10 s
    sched.advance_time(std::chrono::milliseconds{10});
    looks += sched.run();
  }
  CAF_CHECK_LESS(looks, 60u); // 20 ms doubling to 250 ms: ~43
  CAF_MESSAGE(looks << " looks in 10 s");
  // The client reads again: the replay goes on and ends.
  sink->queued = 0;
  sched.advance_time(std::chrono::seconds{1});
  run();
  size_t replayed = 0;
  for (auto& text : sink->take())
    if (json::parse(text)["type"] == "message")
      ++replayed;
  CAF_CHECK_EQUAL(replayed, 20u);
}

CAF_TEST_FIXTURE_SCOPE_END()
