#pragma once

#include "actors/actors.hpp"
#include "actors/metrics.hpp"
#include "actors/node_identity.hpp"
#include "config/options.hpp"

#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include <memory>

namespace wsc {

/// What the RELAY needs of its node.
struct relay_setup {
  /// The Redis settings (`redis*`) and `cluster-secret`.
  options opts;
  node_identity who;
  /// Gets what other nodes relay to this one.
  registry_actor registry;
  std::shared_ptr<node_metrics> metrics;
};

using relay_setup_ptr = std::shared_ptr<const relay_setup>;

/// Spawns the RELAY of a Redis cluster: the REGISTRY hands it the deliveries
/// for peers it has no CAF connection to, and it publishes them on the
/// peer's channel `<prefix>:relay:<node>`; what other nodes publish on this
/// node's channel goes to this node's REGISTRY, as if it came over BASP.
/// Fails with a one-line reason when Redis is unreachable at start; later
/// outages drop relayed deliveries (durable ones stay in the receivers'
/// inboxes).
caf::expected<relay_actor> spawn_redis_relay(caf::actor_system& sys,
                                             relay_setup setup);

} // namespace wsc
