#pragma once

#include "actors/actors.hpp"
#include "actors/behaviour_table.hpp"
#include "actors/cluster_event_log.hpp"
#include "actors/event_bus.hpp"
#include "actors/metrics.hpp"
#include "actors/node_health.hpp"
#include "actors/node_identity.hpp"
#include "actors/supervisor.hpp"
#include "config/options.hpp"
#include "middleware/middleware.hpp"
#include "protocol/codec.hpp"

#include <caf/actor_addr.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace wsc {

class server;

/// Makes a node's STATE_STORE instead of the built-in ones. The store must
/// implement every message of `state_store_actor` with the duties written
/// there (atomic multi-key changes, one answer per request, `unavailable`
/// while its backend is unreachable); adapters/memory_store.cpp and
/// adapters/redis_store.cpp are the two reference implementations.
struct state_store_factory {
  std::function<caf::expected<state_store_actor>(caf::actor_system&,
                                                 const options&)>
      make;
  /// The store is shared by several nodes: the node joins a cluster
  /// (publishes itself on cluster-listen, finds peers in the store).
  bool shared = false;
};

/// A running node: its actors, its state store, its listener, its lifecycle.
/// The node binary is this class plus the built-in behaviours; embedding
/// applications use it the same way.
class node {
public:
  ~node();

  /// Starts a node on `sys` (whose config is an actor_config). Fails with a
  /// one-line reason: a port in use, an unreachable Redis, a bad chain.
  /// A `store` with a `make` function replaces the built-in state stores
  /// (memory, Redis) with the application's own. `frame-codec` names a
  /// codec of `codecs` (json and swoft are built in; an unknown name fails).
  static caf::expected<std::unique_ptr<node>>
  start(caf::actor_system& sys, options opts,
        const middleware_registry& middlewares = middleware_registry{},
        const state_store_factory& store = state_store_factory{},
        const codec_registry& codecs = codec_registry{});

  /// The options the node runs with.
  const options& settings() const { return opts_; }

  /// The REGISTRY's operations, for behaviours of the application.
  messaging_actor messaging() const { return messaging_actor{registry_}; }

  /// The bound HTTP and WebSocket port.
  uint16_t port() const;

  /// Whether one of the node's long-lived actors (REGISTRY, STORE, ...)
  /// ended while the node ran: it then stops itself.
  bool failed() const;

  /// Subscribes an event actor to the events of `mask` (see event_mask).
  /// The node stops the actor when it stops.
  void subscribe(caf::actor subscriber, uint32_t mask);

  /// Drops the subscription of an event actor (it keeps running).
  void unsubscribe(const caf::actor& subscriber);

  /// Registers a behaviour for a frame type or a `prefix.*` (an exact type
  /// wins over a prefix, a longer prefix over a shorter one; a later
  /// registration of the same key replaces an earlier one). A SUPERVISOR
  /// watches the actor: when it fails (throws, is killed, quits), the client
  /// whose frame it was handling gets `internal` ("behaviour for '<type>'
  /// failed"), an error is logged, and the actor is replaced by a new one
  /// from `restart` for every type it was registered for; without `restart`
  /// its registrations are removed (`unknown_type` from then on). The node
  /// stops the actor when it stops. Registering one actor for several types
  /// is fine: it is watched once, with the first call's `restart`.
  void add_behaviour(const std::string& type, behaviour_actor handler,
                     behaviour_factory restart = {});

  /// Spawns `fun(self, args...)` as a behaviour for `type` and registers it
  /// with a factory that spawns it again from copies of `args` when it
  /// fails. Returns the first actor.
  template<class F, class... Ts>
  behaviour_actor spawn_behaviour(const std::string& type, F fun, Ts... args) {
    behaviour_factory factory = [fun, args...](caf::actor_system& sys) {
      return behaviour_actor{sys.spawn(fun, args...)};
    };
    auto handler = factory(sys_);
    add_behaviour(type, handler, std::move(factory));
    return handler;
  }

  /// The actor system the node runs on.
  caf::actor_system& system() const { return sys_; }

  /// Makes the node stop `hdl` when it stops (the actor system waits for
  /// every actor before it can end).
  void adopt(caf::actor hdl);

  /// Drains and stops: /healthz 503, `bye` and close 1001 to every client,
  /// SHUTDOWN to the peers, this node's state removed from the store.
  void stop();

private:
  node(caf::actor_system& sys, options opts);

  /// Spawns the EVENT_BUS, the WEBHOOK, the UNREAD checker and the REGISTRY.
  caf::error spawn_core(bool custom_store);

  /// Spawns the built-in behaviours and the HTTP_API and binds the listener
  /// (not accepting yet).
  caf::error spawn_front(open_chain open, handshake_chain chain,
                         frame_codec_ptr codec);

  /// Spawns what joins the node to a cluster (the control store, DISCOVERY,
  /// the PEER, the relay) and publishes the PEER: its address, or empty for
  /// a node of its own.
  caf::expected<std::string>
  spawn_cluster(const state_store_factory& custom_store);

  /// Has every long-lived actor watched (see `failed`).
  void watch_actors();

  caf::actor_system& sys_;
  options opts_;
  node_identity who_;
  node_health_ptr health_;
  std::shared_ptr<node_metrics> metrics_;
  std::shared_ptr<cluster_event_log> cluster_events_;
  std::shared_ptr<behaviour_table> behaviours_;
  subscribed_events_ptr subscribed_events_;
  registry_actor registry_;
  /// This node's endpoint in the cluster (published on cluster-listen).
  peer_endpoint_actor peer_;
  event_bus_actor events_;
  /// Checks stored messages for `unread` (null while unread-after is 0).
  unread_actor unread_;
  state_store_actor store_;
  /// The store's second connection for heartbeats (Redis only).
  state_store_actor control_store_;
  /// Deliveries to peers without a CAF connection (Redis clusters only).
  relay_actor relay_;
  discovery_actor discovery_;
  http_api_actor api_;
  /// Null without webhook-url.
  webhook_actor webhook_;
  std::unique_ptr<server> server_;
  std::vector<caf::actor> adopted_;
  /// The SUPERVISOR of each behaviour registered so far.
  std::map<caf::actor_addr, supervisor_actor> supervisors_;
  bool stopped_ = false;
};

} // namespace wsc
