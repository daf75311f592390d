#pragma once

#include "actors/actors.hpp"
#include "actors/behaviour_table.hpp"
#include "actors/node_health.hpp"

#include <caf/actor_clock.hpp>
#include <caf/fwd.hpp>
#include <caf/typed_actor.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>

namespace wsc {

/// Makes a behaviour actor; called again to replace one that failed.
using behaviour_factory = std::function<behaviour_actor(caf::actor_system&)>;

// TODO: move into actors.hpp with the other interfaces (a file the lead was
// editing when this was written).
/// Watches one behaviour actor, for every frame type it is registered for.
/// When the behaviour terminates (it threw, was killed, or quit), the
/// SUPERVISOR logs an error and spawns a replacement from the factory, which
/// takes the old handle's place in the behaviour table; without a factory it
/// removes the behaviour's registrations. Stopping the SUPERVISOR stops the
/// behaviour it watches.
using supervisor_actor = caf::typed_actor<
    // Answers how many times the behaviour has been replaced.
    caf::replies_to<atom::status>::with<uint32_t>,
    // The back-off after repeated failures is over: replace the behaviour.
    caf::reacts_to<atom::tick>>;

/// The state of a SUPERVISOR.
struct supervisor_state {
  static inline const char* name = "supervisor";

  /// Failures within `failure_window` that are replaced at once; beyond
  /// them, each replacement waits `backoff` (a behaviour that fails on every
  /// frame, or at start, must not make the node spin).
  static constexpr size_t burst = 5;
  static constexpr std::chrono::seconds failure_window{10};
  static constexpr std::chrono::seconds backoff{1};

  /// The table holding `current` (the node's).
  std::shared_ptr<behaviour_table> behaviours;
  /// Nothing is replaced while the node drains.
  node_health_ptr health;
  behaviour_actor current;
  behaviour_factory factory;
  /// Replacements so far.
  uint32_t restarts = 0;
  /// Times of the recent failures, oldest first.
  std::deque<caf::actor_clock::time_point> failures;
  /// A replacement is scheduled (back-off).
  bool waiting = false;
};

/// Spawn arguments: the behaviour table that holds `handler`, the node's
/// health (no restarts while it drains), the behaviour, and how to make a
/// new one (may be empty).
supervisor_actor::behavior_type
supervisor(supervisor_actor::stateful_pointer<supervisor_state> self,
           std::shared_ptr<behaviour_table> behaviours, node_health_ptr health,
           behaviour_actor handler, behaviour_factory factory);

} // namespace wsc
