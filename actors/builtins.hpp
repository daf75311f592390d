#pragma once

#include "actors/actors.hpp"
#include "actors/node_context.hpp"

#include <string>
#include <vector>

namespace wsc {

/// The frame types of the contract, handled by one behaviour actor that is
/// registered for each of them exactly as a user's behaviour would be.
const std::vector<std::string>& builtin_frame_types();

/// The state of the BUILTINS behaviour actor.
struct builtins_state {
  static inline const char* name = "builtins";

  node_context_ptr node;
};

/// Spawn arguments: the node whose REGISTRY carries out the operations.
behaviour_actor::behavior_type
builtins(behaviour_actor::stateful_pointer<builtins_state> self,
         node_context_ptr node);

} // namespace wsc
