#pragma once

#include "actors/actors.hpp"
#include "actors/node_context.hpp"

#include <vector>

namespace wsc {

/// One subscribed event actor and the events it wants.
struct subscription {
  caf::actor subscriber;
  uint32_t mask = 0;
};

/// The state of the EVENT_BUS actor.
struct event_bus_state {
  static inline const char* name = "event-bus";

  node_context_ptr node;
  std::vector<subscription> subscriptions;

  event_bus_actor::stateful_pointer<event_bus_state> self = nullptr;

  /// Sends `event` to every subscriber of `bit`.
  template<class Event>
  void fan_out(uint32_t bit, const Event& event) {
    for (auto& sub : subscriptions)
      if (sub.mask & bit)
        caf::anon_send(sub.subscriber, event);
  }

  /// Publishes which events have subscribers (node_context).
  void update_mask();
};

/// Spawn arguments: the node whose events this bus carries.
event_bus_actor::behavior_type
event_bus(event_bus_actor::stateful_pointer<event_bus_state> self,
          node_context_ptr node);

} // namespace wsc
