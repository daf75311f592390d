#pragma once

#include "config/options.hpp"

#include <caf/actor_system_config.hpp>

namespace wsc {

/// The CAF configuration of every wscluster process (node binary, tests,
/// embedding applications): registers all message types and the error
/// category, loads the middleman.
class actor_config : public caf::actor_system_config {
public:
  /// With `with_network` false the middleman is not loaded (deterministic
  /// tests of one node).
  explicit actor_config(bool with_network = true);

  /// Applies the node's settings: scheduler threads and policy (with
  /// `scheduler-policy=loop` the loop_coordinator, loop/), and CAF's
  /// own transport liveness between nodes (heartbeat, connection timeout).
  void apply(const options& opts);
};

} // namespace wsc
