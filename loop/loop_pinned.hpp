#pragma once

// An actor that always runs on one event loop of the loop_coordinator.
//
// The loop_coordinator runs an actor on the loop of whoever woke it (the
// sender's execution unit), so an actor may move between loops. An actor
// that shares state with handlers of one loop's io_context (a socket it
// reads and writes there, timers) must not: pinned, every wake-up goes to
// its home loop (a queue push when the sender runs there, a post otherwise),
// so the actor and those handlers never run at the same time.
//
// CAF 0.17.6 schedules an actor in two places only: `launch` (spawn) and
// `enqueue` when a message finds the mailbox blocked (scheduled_actor.cpp);
// both hand the actor to the execution unit they are given, which here is
// always `home`.

#include <caf/actor_config.hpp>
#include <caf/execution_unit.hpp>
#include <caf/mailbox_element.hpp>

#include <utility>

namespace wsc {

template<class Base>
class loop_pinned : public Base {
public:
  template<class... Ts>
  loop_pinned(caf::actor_config& cfg, caf::execution_unit* home, Ts&&... xs)
      : Base(cfg, std::forward<Ts>(xs)...), home_(home) {
    // nop
  }

  using Base::enqueue;

  void enqueue(caf::mailbox_element_ptr ptr, caf::execution_unit*) override {
    Base::enqueue(std::move(ptr), home_);
  }

  void launch(caf::execution_unit*, bool lazy, bool hide) override {
    Base::launch(home_, lazy, hide);
  }

private:
  caf::execution_unit* home_;
};

} // namespace wsc
