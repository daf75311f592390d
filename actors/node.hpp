#pragma once

#include "actors/actors.hpp"
#include "actors/node_context.hpp"
#include "config/options.hpp"
#include "middleware/middleware.hpp"

#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include <memory>
#include <string>
#include <vector>

namespace wsc {

class server;

/// A running node: its actors, its state store, its listener, its lifecycle.
/// The node binary is this class plus the built-in behaviours; embedding
/// applications use it the same way.
class node {
public:
  ~node();

  /// Starts a node on `sys` (whose config is an actor_config). Fails with a
  /// one-line reason: a port in use, an unreachable Redis, a bad chain.
  static caf::expected<std::unique_ptr<node>>
  start(caf::actor_system& sys, options opts,
        const middleware_registry& middlewares = middleware_registry{});

  const node_context_ptr& context() const { return ctx_; }

  /// The bound HTTP and WebSocket port.
  uint16_t port() const;

  /// Subscribes an event actor to the events of `mask` (see event_mask).
  /// The node stops the actor when it stops.
  void subscribe(caf::actor subscriber, uint32_t mask);

  /// Registers a behaviour for a frame type or a `prefix.*`. The node stops
  /// the actor when it stops.
  void add_behaviour(const std::string& type, behaviour_actor handler);

  /// Makes the node stop `hdl` when it stops (the actor system waits for
  /// every actor before it can end).
  void adopt(caf::actor hdl);

  /// Drains and stops: /healthz 503, `bye` and close 1001 to every client,
  /// SHUTDOWN to the peers, this node's state removed from the store.
  void stop();

private:
  node(caf::actor_system& sys, node_context_ptr ctx);

  caf::actor_system& sys_;
  node_context_ptr ctx_;
  state_store_actor store_;
  discovery_actor discovery_;
  behaviour_actor builtins_;
  http_api_actor api_;
  std::unique_ptr<server> server_;
  std::vector<caf::actor> adopted_;
  bool stopped_ = false;
};

} // namespace wsc
