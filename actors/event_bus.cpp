#include "actors/event_bus.hpp"

#include <caf/all.hpp>

#include <algorithm>

namespace wsc {

void event_bus_state::update_mask() {
  uint32_t mask = 0;
  for (auto& sub : subscriptions)
    mask |= sub.mask;
  subscribed->store(mask);
}

event_bus_actor::behavior_type
event_bus(event_bus_actor::stateful_pointer<event_bus_state> self,
          subscribed_events_ptr subscribed) {
  self->state.self = self;
  self->state.subscribed = std::move(subscribed);
  // An event actor that dies is dropped, never waited for.
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& subs = self->state.subscriptions;
    subs.erase(std::remove_if(subs.begin(), subs.end(),
                              [&](const subscription& sub) {
                                return sub.subscriber.address() == dm.source;
                              }),
               subs.end());
    self->state.update_mask();
  });
  return {
      [self](atom::subscribe, uint32_t mask, caf::actor& subscriber) {
        auto& subs = self->state.subscriptions;
        auto i = std::find_if(subs.begin(), subs.end(), [&](auto& sub) {
          return sub.subscriber == subscriber;
        });
        if (i != subs.end()) {
          i->mask = mask;
        } else {
          self->monitor(subscriber);
          subs.push_back(subscription{std::move(subscriber), mask});
        }
        self->state.update_mask();
      },
      [self](atom::unsubscribe, caf::actor& subscriber) {
        auto& subs = self->state.subscriptions;
        subs.erase(std::remove_if(subs.begin(), subs.end(),
                                  [&](const subscription& sub) {
                                    return sub.subscriber == subscriber;
                                  }),
                   subs.end());
        self->demonitor(subscriber.address());
        self->state.update_mask();
      },
      [self](register_event& ev) { self->state.fan_out(on_register, ev); },
      [self](logout_event& ev) { self->state.fan_out(on_logout, ev); },
      [self](discover_event& ev) { self->state.fan_out(on_discover, ev); },
      [self](shutdown_event& ev) { self->state.fan_out(on_shutdown, ev); },
      [self](recv_message_event& ev) {
        self->state.fan_out(on_recv_message, ev);
      },
      [self](presence_event& ev) { self->state.fan_out(on_presence, ev); },
      [self](join_event& ev) { self->state.fan_out(on_join, ev); },
      [self](leave_event& ev) { self->state.fan_out(on_leave, ev); },
      [self](unread_event& ev) { self->state.fan_out(on_unread, ev); },
  };
}

} // namespace wsc
