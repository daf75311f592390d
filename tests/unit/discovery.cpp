#define CAF_SUITE discovery

// DISCOVERY among the real actors of node n1 (REGISTRY, PEER, EVENT_BUS) on
// a memory store it shares with node n0, which the test plays: n0's
// heartbeats and bindings are written to the store as its DISCOVERY and
// REGISTRY would, its hello comes as over CAF, its link dies with a stand-in
// actor. n0 < n1, so n1 waits to be dialed (the smaller id dials) and no
// middleman is needed.

#include "actors/discovery.hpp"

#include "fixture.hpp"

#include <caf/test/dsl.hpp>

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

using namespace wsc;
using namespace std::chrono_literals;

namespace {

/// The cluster events n1 fired.
struct event_log {
  std::vector<std::string> discovered;
  std::vector<shutdown_event> shut_down;
  std::vector<presence_event> presence;
};

struct fixture : test::builtins_fixture {
  static constexpr uint64_t other_incarnation = 42;

  fixture() {
    opts.node_timeout = 60s;
    auto recorder = track(sys.spawn([this](caf::event_based_actor*) {
      return caf::behavior{
          [this](discover_event& ev) { fired.discovered.push_back(ev.node); },
          [this](shutdown_event& ev) { fired.shut_down.push_back(ev); },
          [this](presence_event& ev) { fired.presence.push_back(ev); },
      };
    }));
    caf::anon_send(events, atom::subscribe_v,
                   uint32_t{on_discover | on_shutdown | on_presence}, recorder);
    discovery_ =
        track(sys.spawn(discovery, settings::discovery(opts, who, true), store,
                        registry, events, health, metrics, cluster_events));
    caf::anon_send(discovery_, atom::peer_v, local_only{}, endpoint);
    sched.run();
  }

  /// n0 renews its entry; `uid` is bound on it.
  void other_node_alive(const std::string& uid) {
    caf::anon_send(
        store, atom::node_v,
        node_info{"n0", "127.0.0.1:1", "127.0.0.1:2", other_incarnation, 0, 0});
    caf::anon_send(store, atom::bind_v,
                   binding{uid, "n0", "c1", other_incarnation});
    sched.run();
  }

  /// n0's PEER as n1 sees it over CAF: it answers nothing.
  peer_actor other_peer() {
    return caf::actor_cast<peer_actor>(
        track(sys.spawn([](caf::event_based_actor*) {
          return caf::behavior{[](atom::ok) {
          }};
        })));
  }

  void tick() {
    caf::anon_send(discovery_, atom::tick_v);
    sched.run();
  }

  discovery_actor discovery_;
  event_log fired;
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(discovery_tests, fixture)

CAF_TEST(nothing happens before start) {
  other_node_alive("bob");
  // No heartbeat yet: n1 is not in the store.
  auto nodes = self->request(store, caf::infinite, atom::nodes_v);
  sched.run();
  nodes.receive(
      [](std::vector<node_info>& xs) {
        CAF_REQUIRE_EQUAL(xs.size(), 1u);
        CAF_CHECK_EQUAL(xs[0].id, "n0");
      },
      [](caf::error& err) { CAF_FAIL("nodes failed: " << err); });
  caf::anon_send(discovery_, atom::start_v, std::string{"127.0.0.1:3"});
  sched.run();
  nodes = self->request(store, caf::infinite, atom::nodes_v);
  sched.run();
  nodes.receive(
      [](std::vector<node_info>& xs) {
        CAF_REQUIRE_EQUAL(xs.size(), 2u);
        auto me = xs[0].id == "n1" ? xs[0] : xs[1];
        CAF_CHECK_EQUAL(me.cluster, "127.0.0.1:3");
      },
      [](caf::error& err) { CAF_FAIL("nodes failed: " << err); });
}

CAF_TEST(a peer is discovered by its hello and declared down by its silence) {
  other_node_alive("bob");
  caf::anon_send(discovery_, atom::start_v, std::string{"127.0.0.1:3"});
  sched.run();
  // n0 is listed and alive, but no link yet: no DISCOVER.
  CAF_CHECK(fired.discovered.empty());
  auto link = other_peer();
  caf::anon_send(discovery_, atom::hello_v, std::string{"n0"},
                 other_incarnation, link);
  sched.run();
  CAF_CHECK_EQUAL(fired.discovered, std::vector<std::string>{"n0"});
  // A second hello (n0 re-announcing itself) is no second DISCOVER.
  caf::anon_send(discovery_, atom::hello_v, std::string{"n0"},
                 other_incarnation, link);
  sched.run();
  CAF_CHECK_EQUAL(fired.discovered.size(), 1u);
  // The link breaks while n0 still heartbeats: not a death.
  caf::anon_send_exit(link, caf::exit_reason::user_shutdown);
  sched.run();
  tick();
  CAF_CHECK(fired.shut_down.empty());
  // n0 falls silent for longer than node-timeout: n1 wins the claim, fires
  // SHUTDOWN and reports n0's uids offline.
  deref<discovery_actor::stateful_base<discovery_state>>(discovery_)
      .state.cfg.node_timeout = 1ms;
  std::this_thread::sleep_for(5ms);
  tick();
  CAF_REQUIRE_EQUAL(fired.shut_down.size(), 1u);
  CAF_CHECK_EQUAL(fired.shut_down[0].node, "n0");
  CAF_CHECK_EQUAL(fired.shut_down[0].reason, "timeout");
  CAF_REQUIRE_EQUAL(fired.presence.size(), 1u);
  CAF_CHECK_EQUAL(fired.presence[0].uid, "bob");
  CAF_CHECK(!fired.presence[0].online);
  CAF_CHECK_EQUAL(fired.presence[0].reason, "node_lost");
  // Once only.
  tick();
  CAF_CHECK_EQUAL(fired.shut_down.size(), 1u);
}

CAF_TEST(a graceful stop of a peer fires SHUTDOWN once) {
  other_node_alive("bob");
  caf::anon_send(discovery_, atom::start_v, std::string{"127.0.0.1:3"});
  sched.run();
  caf::anon_send(discovery_, atom::hello_v, std::string{"n0"},
                 other_incarnation, other_peer());
  sched.run();
  caf::anon_send(discovery_, shutdown_event{"n0", "graceful"});
  caf::anon_send(discovery_, shutdown_event{"n0", "graceful"});
  sched.run();
  CAF_REQUIRE_EQUAL(fired.shut_down.size(), 1u);
  CAF_CHECK_EQUAL(fired.shut_down[0].reason, "graceful");
  // A hello from this node's own id is no peer.
  caf::anon_send(discovery_, atom::hello_v, std::string{"n1"}, uint64_t{1},
                 other_peer());
  sched.run();
  CAF_CHECK_EQUAL(fired.discovered, std::vector<std::string>{"n0"});
}

CAF_TEST(a shutdown of a node never discovered fires nothing) {
  // Found by a probe review: SHUTDOWN events for invented ids were reported
  // (and remembered, without bound) like those of real peers.
  caf::anon_send(discovery_, atom::start_v, std::string{"127.0.0.1:3"});
  sched.run();
  for (int i = 0; i < 100; ++i)
    caf::anon_send(discovery_,
                   shutdown_event{"ghost" + std::to_string(i), "graceful"});
  sched.run();
  CAF_CHECK(fired.shut_down.empty());
}

CAF_TEST_FIXTURE_SCOPE_END()

namespace {

/// What the STORE stand-in does with DISCOVERY's requests.
struct store_proxy_state {
  size_t rebinds = 0;
  /// The next rebinds that fail (as ones that time out in a failover).
  size_t failing_rebinds = 0;
  /// The next rebind waits for `release`.
  bool hold_next_rebind = false;
  /// Heartbeats answer "fresh" (as after a Redis Cluster promotion).
  bool fresh = false;
  /// Reads of the nodes answer this sample (as when others wrote more ids
  /// into the store than a cluster has nodes).
  std::optional<std::vector<node_info>> sample;
  caf::response_promise held;
};

/// Forwards DISCOVERY's requests to the real store, except as told.
caf::behavior store_proxy(caf::stateful_actor<store_proxy_state>* self,
                          state_store_actor real) {
  return {
      [=](atom::node, node_info& info) -> caf::result<bool> {
        if (self->state.fresh)
          return true;
        return self->delegate(real, atom::node_v, std::move(info));
      },
      [=](atom::nodes) -> caf::result<std::vector<node_info>> {
        if (self->state.sample)
          return partial_nodes(*self->state.sample);
        return self->delegate(real, atom::nodes_v);
      },
      [=](atom::rebind, std::vector<binding>& bs) -> caf::result<atom::ok> {
        ++self->state.rebinds;
        if (self->state.failing_rebinds > 0) {
          --self->state.failing_rebinds;
          return caf::make_error(caf::sec::request_timeout);
        }
        if (std::exchange(self->state.hold_next_rebind, false)) {
          self->state.held = self->make_response_promise();
          return self->state.held;
        }
        return self->delegate(real, atom::rebind_v, std::move(bs));
      },
      [=](atom::ok) { self->state.held.deliver(atom::ok_v); }, // release
  };
}

struct write_back_fixture : fixture {
  write_back_fixture() {
    proxy = track(sys.spawn(store_proxy, store));
    watched =
        track(sys.spawn(discovery, settings::discovery(opts, who, true),
                        caf::actor_cast<state_store_actor>(proxy), registry,
                        events, health, metrics, cluster_events));
    caf::anon_send(watched, atom::peer_v, local_only{}, endpoint);
    sched.run();
  }

  store_proxy_state& proxied() {
    return deref<caf::stateful_actor<store_proxy_state>>(proxy).state;
  }

  std::map<std::string, known_peer>& watched_peers() {
    return deref<discovery_actor::stateful_base<discovery_state>>(watched)
        .state.peers;
  }

  void tick_watched() {
    caf::anon_send(watched, atom::tick_v);
    sched.run();
  }

  caf::actor proxy;
  discovery_actor watched;
};

} // namespace

CAF_TEST_FIXTURE_SCOPE(write_back_tests, write_back_fixture)

CAF_TEST(a write back that failed is retried at the next heartbeat) {
  // A failover can make the write-back after a promotion fail; the
  // bindings it restores were lost all the same.
  proxied().failing_rebinds = 1;
  caf::anon_send(watched, atom::start_v, std::string{"127.0.0.1:3"});
  sched.run(); // the first heartbeat writes back (a fresh entry)
  CAF_CHECK_EQUAL(proxied().rebinds, 1u);
  tick_watched();
  CAF_CHECK_EQUAL(proxied().rebinds, 2u);
  tick_watched(); // done: no third
  CAF_CHECK_EQUAL(proxied().rebinds, 2u);
}

CAF_TEST(failed write backs are retried ever less often) {
  // A write-back that never finishes in time must not rewrite every binding
  // at every heartbeat: after 1, 2, 4, 8 ... (at most 32) heartbeats.
  proxied().failing_rebinds = 1000;
  caf::anon_send(watched, atom::start_v, std::string{"127.0.0.1:3"});
  sched.run(); // heartbeat 1
  std::vector<size_t> tried_at{1};
  for (size_t heartbeat = 2; heartbeat <= 40; ++heartbeat) {
    auto before = proxied().rebinds;
    tick_watched();
    if (proxied().rebinds > before)
      tried_at.push_back(heartbeat);
  }
  CAF_CHECK_EQUAL(tried_at, (std::vector<size_t>{1, 2, 4, 8, 16, 32}));
  // The store recovers: the next due try succeeds and resets the backoff.
  proxied().failing_rebinds = 0;
  for (size_t heartbeat = 41; heartbeat <= 64; ++heartbeat)
    tick_watched();
  CAF_CHECK_EQUAL(proxied().rebinds, 7u); // at heartbeat 64
  CAF_CHECK(health->store_healthy);
  tick_watched();
  CAF_CHECK_EQUAL(proxied().rebinds, 7u);
}

CAF_TEST(a lost entry writes back at once despite failures) {
  proxied().failing_rebinds = 3;
  caf::anon_send(watched, atom::start_v, std::string{"127.0.0.1:3"});
  sched.run();    // 1: fails
  tick_watched(); // 2: fails, the next try waits for heartbeat 4
  CAF_CHECK_EQUAL(proxied().rebinds, 2u);
  proxied().fresh = true; // 3: the store lost this node's entry
  tick_watched();
  proxied().fresh = false;
  CAF_CHECK_EQUAL(proxied().rebinds, 3u);
}

CAF_TEST(a write back asked for while one is under way follows it) {
  // The bindings the first one read may predate the loss the second
  // answers (heartbeats of a stalled store batch come back together).
  proxied().hold_next_rebind = true;
  caf::anon_send(watched, atom::start_v, std::string{"127.0.0.1:3"});
  sched.run();
  CAF_CHECK_EQUAL(proxied().rebinds, 1u);
  proxied().fresh = true; // a promotion, reported while the first waits
  tick_watched();
  proxied().fresh = false;
  CAF_CHECK_EQUAL(proxied().rebinds, 1u);
  caf::anon_send(proxy, atom::ok_v); // the first one answers
  sched.run();
  CAF_CHECK_EQUAL(proxied().rebinds, 2u);
  tick_watched();
  CAF_CHECK_EQUAL(proxied().rebinds, 2u);
}

CAF_TEST(a sample of the nodes gives up no peer it misses) {
  other_node_alive("bob");
  caf::anon_send(watched, atom::start_v, std::string{"127.0.0.1:3"});
  sched.run();
  CAF_REQUIRE_EQUAL(watched_peers().count("n0"), 1u);
  // The store reads a sample that misses n0 but finds m0 (m0 < n1: n1 does
  // not dial it, no middleman needed).
  auto fresh = [](std::string id) {
    return node_info{
        std::move(id), "127.0.0.1:1", "127.0.0.1:2", 7, frames::now_ms(), 0};
  };
  proxied().sample = std::vector<node_info>{fresh("m0")};
  for (int i = 0; i < 3; ++i)
    tick_watched();
  CAF_CHECK_EQUAL(watched_peers().count("n0"), 1u);
  CAF_CHECK_EQUAL(watched_peers().count("m0"), 1u);
  // Samples of invented entries do not grow the table without bound.
  for (int round = 0; round < 3; ++round) {
    std::vector<node_info> xs;
    for (size_t i = 0; i < max_peers; ++i)
      xs.push_back(
          fresh("l" + std::to_string(round) + "-" + std::to_string(i)));
    proxied().sample = std::move(xs);
    tick_watched();
  }
  CAF_CHECK_EQUAL(watched_peers().size(), max_peers);
  CAF_CHECK_EQUAL(watched_peers().count("n0"), 1u);
  // The whole list again: what it does not list (and has no link) goes.
  proxied().sample.reset();
  tick_watched();
  CAF_CHECK_EQUAL(watched_peers().size(), 1u);
  CAF_CHECK_EQUAL(watched_peers().count("n0"), 1u);
}

CAF_TEST_FIXTURE_SCOPE_END()
