#pragma once

#include "actors/actors.hpp"
#include "actors/node_context.hpp"

#include <caf/expected.hpp>

#include <nlohmann/json_fwd.hpp>

#include <functional>
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

/// Gets the answer of a built-in frame: null for `ack`, or an error.
using builtin_done = std::function<void(caf::expected<json_ptr>)>;

/// Carries out a built-in frame inside the CONNECTION actor that read it: the
/// same code the BUILTINS actor runs, one thread hand-off less per frame.
void run_builtin(connection_actor::pointer self, const node_context& node,
                 const frame_context& ctx, const nlohmann::json& frame,
                 builtin_done reply);

/// Spawn arguments: the node whose REGISTRY carries out the operations.
behaviour_actor::behavior_type
builtins(behaviour_actor::stateful_pointer<builtins_state> self,
         node_context_ptr node);

} // namespace wsc
