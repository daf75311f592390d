#pragma once

#include "actors/actors.hpp"

#include <caf/send.hpp>

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace wsc {

/// The events that have at least one subscriber (bits of event_mask):
/// written by the EVENT_BUS, read from any thread by those that raise events
/// (connections, the UNREAD checker), so they skip building events nobody
/// wants.
using subscribed_events_ptr = std::shared_ptr<std::atomic<uint32_t>>;

/// One subscribed event actor and the events it wants.
struct subscription {
  caf::actor subscriber;
  uint32_t mask = 0;
};

/// The state of the EVENT_BUS actor.
struct event_bus_state {
  static inline const char* name = "event-bus";

  subscribed_events_ptr subscribed;
  std::vector<subscription> subscriptions;

  event_bus_actor::stateful_pointer<event_bus_state> self = nullptr;

  /// Sends `event` to every subscriber of `bit`.
  template<class Event>
  void fan_out(uint32_t bit, const Event& event) {
    for (auto& sub : subscriptions)
      if (sub.mask & bit)
        caf::anon_send(sub.subscriber, event);
  }

  /// Publishes which events have subscribers (`subscribed`).
  void update_mask();
};

/// Spawn arguments: where to publish which events have subscribers.
event_bus_actor::behavior_type
event_bus(event_bus_actor::stateful_pointer<event_bus_state> self,
          subscribed_events_ptr subscribed);

} // namespace wsc
