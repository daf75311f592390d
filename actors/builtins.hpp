#pragma once

#include "actors/actors.hpp"
#include "actors/message_settings.hpp"

#include <caf/expected.hpp>

#include <nlohmann/json_fwd.hpp>

#include <functional>
#include <string>
#include <vector>

namespace wsc {

/// The frame types of the contract, handled by one behaviour actor that is
/// registered for each of them exactly as a user's behaviour would be.
const std::vector<std::string>& builtin_frame_types();

/// The settings of the built-in behaviours.
struct builtins_config {
  message_settings messages;
  /// `client-broadcast`: clients may send `broadcast`.
  bool client_broadcast = false;
  /// `group-join`: `open`, or `token` (only the groups of the token).
  std::string group_join = "open";
  /// `auth`: `refresh` needs `jwt`, and verifies with the `jwt-*` settings.
  std::string auth = "none";
  std::string jwt_secret;
  std::string jwt_audience;
  std::string jwt_issuer;
};

/// The state of the BUILTINS behaviour actor.
struct builtins_state {
  static inline const char* name = "builtins";

  builtins_config cfg;
  registry_actor registry;
};

/// Gets the answer of a built-in frame: null for `ack`, or an error.
using builtin_done = std::function<void(caf::expected<json_ptr>)>;

/// Carries out a built-in frame inside the CONNECTION actor that read it: the
/// same code the BUILTINS actor runs, one thread hand-off less per frame.
void run_builtin(connection_actor::pointer self, const builtins_config& cfg,
                 const registry_actor& registry, const frame_context& ctx,
                 const nlohmann::json& frame, builtin_done reply);

/// Spawn arguments: the settings, and the REGISTRY that carries out the
/// operations.
behaviour_actor::behavior_type
builtins(behaviour_actor::stateful_pointer<builtins_state> self,
         builtins_config cfg, registry_actor registry);

} // namespace wsc
