#pragma once

#include "actors/actors.hpp"
#include "actors/node_context.hpp"

#include <caf/expected.hpp>
#include <caf/fwd.hpp>

namespace wsc {

/// Spawns the RELAY of a Redis cluster: the REGISTRY hands it the deliveries
/// for peers it has no CAF connection to, and it publishes them on the
/// peer's channel `<prefix>:relay:<node>`; what other nodes publish on this
/// node's channel goes to this node's REGISTRY, as if it came over BASP.
/// Needs `node->registry`. Fails with a one-line reason when Redis is
/// unreachable at start; later outages drop relayed deliveries (durable ones
/// stay in the receivers' inboxes).
caf::expected<relay_actor> spawn_redis_relay(caf::actor_system& sys,
                                             const node_context_ptr& node);

} // namespace wsc
