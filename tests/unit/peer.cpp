#define CAF_SUITE peer

// The PEER: what other nodes send this node (batches, `to_conn` sends,
// hello, shutdown, ping) and what the REGISTRY routes to them (batches under
// a credit, the RELAY for nodes without a link).

#include "actors/peer.hpp"

#include "actors/registry.hpp"
#include "fixture.hpp"
#include "protocol/frames.hpp"

#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/test/dsl.hpp>

#include <string>
#include <vector>

using namespace wsc;

namespace {

/// Records what the PEER hands to DISCOVERY.
struct discovery_log {
  std::vector<std::string> hellos;
  std::vector<shutdown_event> shutdowns;
};

/// Batches a remote PEER got, and the credits it has not given back yet.
struct remote_log {
  std::vector<delivery_batch> batches;
  std::vector<caf::typed_response_promise<atom::ok>> credits;
};

struct fixture : test::builtins_fixture {
  /// A DISCOVERY that only records.
  discovery_actor spawn_discovery(discovery_log& log) {
    return track(sys.spawn([&log]() -> discovery_actor::behavior_type {
      return {
          [](atom::peer, local_only, peer_endpoint_actor&) {},
          [](atom::start, std::string&) {},
          [](atom::tick) {},
          [&log](shutdown_event& ev) { log.shutdowns.push_back(ev); },
          [&log](atom::hello, std::string& id, uint64_t, peer_actor&) {
            log.hellos.push_back(id);
          },
          [](atom::shutdown) -> atom::ok { return atom::ok_v; },
      };
    }));
  }

  /// Another node's PEER that keeps every credit until it gets `ok`: then
  /// it gives the oldest one back (a promise is delivered from inside its
  /// actor, not from the test).
  peer_actor spawn_remote(remote_log& log) {
    auto remote = sys.spawn([&log](caf::event_based_actor* self) {
      return caf::behavior{
          [&log, self](atom::remote, delivery_batch& batch) {
            log.batches.push_back(std::move(batch));
            log.credits.push_back(self->make_response_promise<atom::ok>());
            return log.credits.back();
          },
          [&log](atom::ok) {
            log.credits.front().deliver(atom::ok_v);
            log.credits.erase(log.credits.begin());
          },
          [](atom::deliver, delivery&) { return uint32_t{2}; },
      };
    });
    spawned.push_back(remote);
    return caf::actor_cast<peer_actor>(remote);
  }

  /// A route table that sends `uid` on node `node`.
  static route_table route_to(const std::string& node, const std::string& uid) {
    route_table routes;
    node_route nr;
    nr.node = node;
    nr.uids = {uid};
    routes.nodes.push_back(std::move(nr));
    return routes;
  }

  static delivery message(int n) {
    auto d =
        frames::make_delivery(delivery_kind::message, "ann", std::to_string(n));
    d.uids = {"bob"};
    return d;
  }
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(peer_tests, fixture)

CAF_TEST(hello and shutdown from a peer go straight to DISCOVERY) {
  discovery_log log;
  auto peer = track(sys.spawn(peer_endpoint, settings::peer(opts, who),
                              registry, spawn_discovery(log), metrics));
  remote_log remote;
  auto other = spawn_remote(remote);
  caf::anon_send(peer, atom::hello_v, std::string{"n2"}, uint64_t{7},
                 caf::actor_cast<caf::actor>(other));
  caf::anon_send(peer, shutdown_event{"n3", "graceful"});
  sched.run();
  CAF_CHECK_EQUAL(log.hellos, std::vector<std::string>{"n2"});
  CAF_REQUIRE_EQUAL(log.shutdowns.size(), 1u);
  CAF_CHECK_EQUAL(log.shutdowns[0].node, "n3");
}

CAF_TEST(ping answers the node id and incarnation) {
  auto answer = self->request(endpoint, caf::infinite, atom::ping_v);
  sched.run();
  answer.receive(
      [&](std::string& id, uint64_t incarnation) {
        CAF_CHECK_EQUAL(id, "n1");
        CAF_CHECK_EQUAL(incarnation, who.incarnation);
      },
      [](caf::error& err) { CAF_FAIL("ping failed: " << to_string(err)); });
}

CAF_TEST(a batch from a peer reaches the connections before its credit) {
  auto bob_sink = std::make_shared<test::recording_sink>();
  spawn_connection("bob", bob_sink);
  sched.run();
  bob_sink->take(); // welcome
  auto bad = message(2);
  bad.kind = static_cast<delivery_kind>(99);
  self->request(endpoint, caf::infinite, atom::remote_v,
                delivery_batch{"n2", {message(1), bad}});
  // The PEER hands the batch on; the REGISTRY answers the peer.
  expect((atom::remote, delivery_batch), from(self).to(endpoint));
  expect((atom::remote, delivery_batch), from(self).to(registry));
  CAF_CHECK_EQUAL(bob_sink->take().size(), 1u);
  expect((atom::ok), from(registry).to(self));
  CAF_CHECK_EQUAL(metrics->rejected_deliveries.load(), 1u);
}

CAF_TEST(a to_conn send from a peer is answered by the REGISTRY) {
  auto bob_sink = std::make_shared<test::recording_sink>();
  auto conn = conn_ids.next();
  spawn_connection("bob", bob_sink, conn);
  sched.run();
  bob_sink->take();
  auto d = message(1);
  d.uids.clear();
  d.to_conn = conn;
  auto answer = self->request(endpoint, caf::infinite, atom::deliver_v, d);
  sched.run();
  answer.receive([](uint32_t n) { CAF_CHECK_EQUAL(n, 1u); },
                 [](caf::error& err) { CAF_FAIL(to_string(err)); });
  CAF_CHECK_EQUAL(bob_sink->take().size(), 1u);
}

CAF_TEST(each confirmed batch gives one credit back) {
  remote_log remote;
  auto remote_handle = spawn_remote(remote);
  caf::anon_send(endpoint, atom::peer_up_v, local_only{}, std::string{"n2"},
                 remote_handle);
  sched.run();
  auto sends = peer_state::max_in_flight + 3;
  for (uint32_t i = 0; i < sends; ++i) {
    caf::anon_send(endpoint, atom::route_v, local_only{},
                   message(static_cast<int>(i)), route_to("n2", "bob"));
    sched.run(); // one batch per turn: nothing else queued
  }
  CAF_CHECK_EQUAL(remote.batches.size(), size_t{peer_state::max_in_flight});
  // One credit back: the three waiting deliveries leave as one batch.
  caf::anon_send(caf::actor_cast<caf::actor>(remote_handle), atom::ok_v);
  sched.run();
  CAF_REQUIRE_EQUAL(remote.batches.size(), peer_state::max_in_flight + 1u);
  CAF_CHECK_EQUAL(remote.batches.back().items.size(), 3u);
  CAF_CHECK_EQUAL(remote.batches.back().origin, "n1");
  CAF_CHECK_EQUAL(remote.batches.back().items.back().data,
                  std::to_string(sends - 1));
}

CAF_TEST(the local part of a route stays with the REGISTRY) {
  remote_log remote;
  caf::anon_send(endpoint, atom::peer_up_v, local_only{}, std::string{"n2"},
                 spawn_remote(remote));
  auto routes = route_to("n1", "bob");
  routes.nodes.push_back(route_to("n2", "carol").nodes[0]);
  caf::anon_send(endpoint, atom::route_v, local_only{}, message(1), routes);
  sched.run();
  CAF_REQUIRE_EQUAL(remote.batches.size(), 1u);
  CAF_REQUIRE_EQUAL(remote.batches[0].items.size(), 1u);
  CAF_CHECK_EQUAL(remote.batches[0].items[0].uids,
                  std::vector<std::string>{"carol"});
}

CAF_TEST(deliveries for a node without a link or relay are counted) {
  caf::anon_send(endpoint, atom::route_v, local_only{}, message(1),
                 route_to("n9", "bob"));
  sched.run();
  CAF_CHECK_EQUAL(metrics->undeliverable.load(), 1u);
  auto text = metrics->render(0, false, true);
  CAF_CHECK(text.find("wscluster_undeliverable_total 1\n") !=
            std::string::npos);
}

CAF_TEST(a batch that times out gives its credit back and the PEER lives) {
  remote_log remote;
  caf::anon_send(endpoint, atom::peer_up_v, local_only{}, std::string{"n2"},
                 spawn_remote(remote));
  for (int i = 0; i < static_cast<int>(peer_state::max_in_flight); ++i) {
    caf::anon_send(endpoint, atom::route_v, local_only{}, message(i),
                   route_to("n2", "bob"));
    sched.run();
  }
  CAF_REQUIRE_EQUAL(remote.batches.size(), size_t{peer_state::max_in_flight});
  // The peer never confirms: every request fails with a timeout.
  sched.trigger_timeouts();
  sched.run();
  caf::anon_send(endpoint, atom::route_v, local_only{}, message(99),
                 route_to("n2", "bob"));
  sched.run();
  CAF_CHECK_EQUAL(remote.batches.size(), peer_state::max_in_flight + 1u);
  auto answer = self->request(endpoint, caf::infinite, atom::ping_v);
  sched.run();
  answer.receive([](std::string&, uint64_t) {},
                 [](caf::error& err) { CAF_FAIL(to_string(err)); });
}

CAF_TEST(deliveries waiting behind batches that time out leave then) {
  remote_log remote;
  caf::anon_send(endpoint, atom::peer_up_v, local_only{}, std::string{"n2"},
                 spawn_remote(remote));
  auto sends = static_cast<int>(peer_state::max_in_flight) + 2;
  for (int i = 0; i < sends; ++i) {
    caf::anon_send(endpoint, atom::route_v, local_only{}, message(i),
                   route_to("n2", "bob"));
    sched.run();
  }
  CAF_REQUIRE_EQUAL(remote.batches.size(), size_t{peer_state::max_in_flight});
  // No new delivery comes: the two waiting ones go once credit is back,
  // whether the batches in flight were confirmed or failed.
  sched.trigger_timeouts();
  sched.run();
  CAF_REQUIRE_EQUAL(remote.batches.size(), peer_state::max_in_flight + 1u);
  CAF_CHECK_EQUAL(remote.batches.back().items.size(), 2u);
  CAF_CHECK_EQUAL(remote.batches.back().items.back().data,
                  std::to_string(sends - 1));
}

CAF_TEST(a to_conn send to another node says whether it arrived) {
  auto ask = [&](const std::string& conn) {
    auto d = message(1);
    d.uids.clear();
    d.to_conn = conn;
    auto answer =
        self->request(endpoint, caf::infinite, atom::send_v, local_only{}, d);
    sched.run();
    delivery_report report;
    answer.receive([&](delivery_report& r) { report = std::move(r); },
                   [](caf::error& err) { CAF_FAIL(to_string(err)); });
    return report;
  };
  // Not linked, not in the cluster: gone.
  auto gone = ask("n3.0.1");
  CAF_CHECK_EQUAL(gone.connections, std::vector<uint32_t>{0});
  CAF_CHECK_EQUAL(gone.not_delivered, "gone");
  // In the cluster without a link: the RELAY carries it, unconfirmed.
  std::vector<std::string> relayed;
  auto relay = track(sys.spawn([&relayed]() -> relay_actor::behavior_type {
    return {
        [&relayed](atom::relay, std::string& node, delivery_batch&) {
          relayed.push_back(node);
        },
    };
  }));
  caf::anon_send(endpoint, atom::relay_v, local_only{}, relay);
  caf::anon_send(endpoint, atom::nodes_v, local_only{},
                 std::vector<std::string>{"n1", "n3"});
  sched.run();
  auto unconfirmed = ask("n3.0.1");
  CAF_CHECK_EQUAL(unconfirmed.not_delivered, "unconfirmed");
  CAF_CHECK_EQUAL(relayed, std::vector<std::string>{"n3"});
  // Linked: the peer answers how many connections got it.
  remote_log remote;
  caf::anon_send(endpoint, atom::peer_up_v, local_only{}, std::string{"n2"},
                 spawn_remote(remote));
  sched.run();
  auto linked = ask("n2.0.1");
  CAF_CHECK_EQUAL(linked.connections, std::vector<uint32_t>{2});
  CAF_CHECK_EQUAL(linked.not_delivered, "");
}

CAF_TEST(the messages for the PEER from this node cannot cross the wire) {
  // The PEER is published: whatever a peer can encode, it can send. The
  // internal messages carry local_only, which has neither a serialization
  // nor a registered name, so no node encodes them and none decodes them.
  auto round_trip = [this](caf::message msg) {
    std::vector<char> buf;
    caf::binary_serializer sink{sys, buf};
    if (sink(msg))
      return false;
    caf::message out;
    caf::binary_deserializer source{sys, buf};
    return !source(out) && out.size() == msg.size();
  };
  CAF_CHECK(sys.types().make_value(typeid(local_only)) == nullptr);
  CAF_CHECK(!round_trip(
      caf::make_message(atom::peer_down_v, local_only{}, std::string{"n2"})));
  // The control: a message of the cluster protocol does cross.
  CAF_CHECK(round_trip(caf::make_message(atom::ping_v)));
}

CAF_TEST_FIXTURE_SCOPE_END()
