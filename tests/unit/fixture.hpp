#pragma once

// Shared fixtures of the deterministic actor tests.

#include "actors/actors.hpp"
#include "actors/builtins.hpp"
#include "actors/connection.hpp"
#include "actors/event_bus.hpp"
#include "actors/node_health.hpp"
#include "actors/node_identity.hpp"
#include "actors/peer.hpp"
#include "actors/registry.hpp"
#include "adapters/memory_store.hpp"
#include "app/actor_config.hpp"
#include "app/node_settings.hpp"

#include <caf/test/dsl.hpp>

#include <atomic>
#include <mutex>
#include <string>
#include <vector>

namespace wsc::test {

/// The actor configuration of the tests: every type registered, no network.
struct test_config : actor_config {
  test_config() : actor_config(false) {
    // nop
  }
};

/// Records what a connection actor writes and closes, instead of a socket.
class recording_sink : public connection_sink {
public:
  void write(frame_ptr frame, bool) override {
    std::lock_guard guard{mtx};
    frames.push_back(*frame);
  }

  void close(uint16_t code, std::string reason) override {
    std::lock_guard guard{mtx};
    close_code = code;
    close_reason = std::move(reason);
  }

  void close_after(std::chrono::milliseconds after, uint16_t code,
                   std::string) override {
    std::lock_guard guard{mtx};
    scheduled_close = after;
    scheduled_code = code;
    ++scheduled_closes;
  }

  /// What the socket holds unwritten, as the REGISTRY sees it (set it to
  /// stall a replay).
  uint64_t queued_bytes() const override { return queued; }

  /// Frames written so far, oldest first; clears the record.
  std::vector<std::string> take() {
    std::lock_guard guard{mtx};
    auto result = std::move(frames);
    frames.clear();
    return result;
  }

  std::mutex mtx;
  std::vector<std::string> frames;
  uint16_t close_code = 0;
  std::string close_reason;
  /// The last close_after and how many there were.
  std::chrono::milliseconds scheduled_close{0};
  uint16_t scheduled_code = 0;
  size_t scheduled_closes = 0;
  std::atomic<uint64_t> queued{0};
};

/// A deterministic scheduler, default options and what a node shares between
/// its actors (as `node::start` makes them).
struct node_fixture : ::test_coordinator_fixture<test_config> {
  /// Actors reference each other: stop them all, or the actor system waits
  /// for them forever.
  ~node_fixture() override {
    for (auto& hdl : spawned)
      caf::anon_send_exit(hdl, caf::exit_reason::user_shutdown);
    for (auto hdl : {caf::actor_cast<caf::actor>(registry),
                     caf::actor_cast<caf::actor>(endpoint),
                     caf::actor_cast<caf::actor>(events)})
      if (hdl)
        caf::anon_send_exit(hdl, caf::exit_reason::user_shutdown);
    run();
  }

  /// Remembers an actor to stop at the end of the test.
  template<class Handle>
  Handle track(Handle hdl) {
    spawned.push_back(caf::actor_cast<caf::actor>(hdl));
    return hdl;
  }

  std::vector<caf::actor> spawned;

  static options make_options() {
    options opts;
    opts.node_id = "n1";
    return opts;
  }

  options opts = make_options();
  node_identity who = node_identity::draw(opts.node_id);
  conn_id_source conn_ids{who};
  node_health_ptr health = std::make_shared<node_health>();
  std::shared_ptr<node_metrics> metrics = std::make_shared<node_metrics>();
  std::shared_ptr<cluster_event_log> cluster_events =
      std::make_shared<cluster_event_log>();
  std::shared_ptr<behaviour_table> behaviours =
      std::make_shared<behaviour_table>();
  subscribed_events_ptr subscribed = std::make_shared<std::atomic<uint32_t>>(0);
  registry_actor registry;
  /// This node's PEER.
  peer_endpoint_actor endpoint;
  event_bus_actor events;
};

/// A node's actors as `node::start` wires them, on the memory store: event
/// bus, REGISTRY, PEER and the built-in behaviours (run inline by the
/// connections, as on a node). Connections come from `spawn_connection`.
struct builtins_fixture : node_fixture {
  builtins_fixture() {
    store = track(sys.spawn(memory_store, size_t{1000}, int64_t{3600000}));
    events = sys.spawn(event_bus, subscribed);
    registry = sys.spawn(wsc::registry, settings::registry(opts, who, false),
                         store, events, unread_actor{}, metrics);
    endpoint = sys.spawn(peer_endpoint, settings::peer(opts, who), registry,
                         discovery_actor{}, metrics);
    caf::anon_send(registry, atom::peer_v, local_only{}, endpoint);
    handler = track(sys.spawn(builtins, settings::builtins(opts), registry));
    inline_builtins = handler;
    for (auto& type : builtin_frame_types())
      behaviours->add(type, handler);
    run();
  }

  /// What the connections share, from the options as they are now.
  connection_env_ptr connection_setup() const {
    return std::make_shared<const connection_env>(
        connection_env{opts.request_timeout, opts.rate_limit,
                       settings::builtins(opts), registry, events, subscribed,
                       behaviours, inline_builtins, metrics, open_chain{}});
  }

  /// A CONNECTION of `uid` writing to `sink`; nothing run yet.
  connection_actor
  spawn_connection(const std::string& uid,
                   std::shared_ptr<connection_sink> sink,
                   const std::string& conn_id = {},
                   std::map<std::string, std::string> attributes = {}) {
    open_context opening{
        conn_ref{who.id, conn_id.empty() ? conn_ids.next() : conn_id, uid, {}},
        {},
        std::move(attributes)};
    return track(
        sys.spawn(connection, connection_setup(), std::move(sink), opening));
  }

  state_store_actor store;
  behaviour_actor handler;
  /// The BUILTINS actor the connections run inline (null: none, they ask it).
  behaviour_actor inline_builtins;
};

} // namespace wsc::test
