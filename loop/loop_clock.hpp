#pragma once

// The actor clock of `scheduler-policy=loop`: CAF's timeouts and delayed
// messages on a thread of their own, like CAF's thread_safe_actor_clock,
// but with fewer wake-ups.
//
// CAF 0.17.6's thread_safe_actor_clock (libcaf_core/src/detail/
// thread_safe_actor_clock.cpp) hands every call to its thread through a
// queue, so every request with a timeout wakes that thread twice: once to
// set the timeout and once to cancel it when the answer comes. Here the
// caller changes the schedule itself, under a mutex, and wakes the thread
// only when the new deadline is earlier than the one it sleeps until. A
// cancellation never wakes it: at worst it wakes at a deadline that is gone
// and sleeps again.
//
// CAF 0.17.6 never cancels a request's timeout when the answer comes
// (scheduled_actor.cpp sets it, nothing removes it): each one fires later
// and the actor drops it. So request timeouts are put on a coarse grid,
// late by at most an eighth of the timeout and at most `max_slack`: the
// timeouts of a burst of requests fire in one wake-up, and their actors get
// them in one batch. Other timeouts and delayed messages are exact.

#include <caf/detail/simple_actor_clock.hpp>

#include <condition_variable>
#include <mutex>

namespace wsc {

class loop_clock : public caf::detail::simple_actor_clock {
public:
  using super = caf::detail::simple_actor_clock;

  void set_ordinary_timeout(time_point t, caf::abstract_actor* self,
                            caf::atom_value type, uint64_t id) override;

  void set_request_timeout(time_point t, caf::abstract_actor* self,
                           caf::message_id id) override;

  void set_multi_timeout(time_point t, caf::abstract_actor* self,
                         caf::atom_value type, uint64_t id) override;

  void cancel_ordinary_timeout(caf::abstract_actor* self,
                               caf::atom_value type) override;

  void cancel_request_timeout(caf::abstract_actor* self,
                              caf::message_id id) override;

  void cancel_timeouts(caf::abstract_actor* self) override;

  void schedule_message(time_point t, caf::strong_actor_ptr receiver,
                        caf::mailbox_element_ptr content) override;

  void schedule_message(time_point t, caf::group target,
                        caf::strong_actor_ptr sender,
                        caf::message content) override;

  void cancel_all() override;

  /// The clock's thread: ships what is due until cancel_dispatch_loop().
  void run_dispatch_loop();

  void cancel_dispatch_loop();

  /// How often the thread woke up (for tests and profiles).
  size_t wake_ups() const;

  /// The most a request timeout fires late.
  static constexpr duration_type max_slack = std::chrono::milliseconds(128);

private:
  /// `t` rounded up to a grid of a power of two milliseconds, at most an
  /// eighth of the time left until `t` and at most `max_slack`.
  time_point coarse(time_point t) const;

  /// Runs `change` under the lock; wakes the thread if `t` is earlier than
  /// what it sleeps until.
  template<class F>
  void add(time_point t, F change);

  /// Runs `change` under the lock, without waking the thread.
  template<class F>
  void remove(F change);

  mutable std::mutex mtx_;
  std::condition_variable cv_;
  /// What the thread sleeps until (time_point::max(): until notified).
  time_point sleeps_until_ = time_point::max();
  size_t wake_ups_ = 0;
  bool done_ = false;
};

} // namespace wsc
