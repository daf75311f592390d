#pragma once

#include "actors/actors.hpp"
#include "config/options.hpp"

#include <caf/expected.hpp>
#include <caf/fwd.hpp>

namespace wsc {

/// Connects to the Redis of `opts.redis` (checking it answers PING, with the
/// password and db of the URL) and spawns the Redis STATE_STORE: a detached
/// actor that owns one hiredis connection and pipelines every request queued
/// at the time into one round trip. Fails with a one-line reason when Redis is
/// unreachable at start; later outages make requests fail with
/// `ec::unavailable` until Redis answers again.
caf::expected<state_store_actor> spawn_redis_store(caf::actor_system& sys,
                                                   const options& opts);

} // namespace wsc
