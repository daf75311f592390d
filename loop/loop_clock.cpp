#include "loop/loop_clock.hpp"

#include <caf/group.hpp>
#include <caf/mailbox_element.hpp>

#include <vector>

namespace wsc {

template<class F>
void loop_clock::add(time_point t, F change) {
  std::unique_lock<std::mutex> guard{mtx_};
  change();
  if (t < sleeps_until_) {
    // The thread recomputes its deadline; until then nobody else wakes it.
    sleeps_until_ = t;
    guard.unlock();
    cv_.notify_one();
  }
}

template<class F>
void loop_clock::remove(F change) {
  std::lock_guard<std::mutex> guard{mtx_};
  change();
}

void loop_clock::set_ordinary_timeout(time_point t, caf::abstract_actor* self,
                                      caf::atom_value type, uint64_t id) {
  add(t, [&] { super::set_ordinary_timeout(t, self, type, id); });
}

loop_clock::time_point loop_clock::coarse(time_point t) const {
  using namespace std::chrono_literals;
  auto slack = std::min<duration_type>((t - now()) / 8, max_slack);
  if (slack < 1ms)
    return t;
  duration_type grid = 1ms;
  while (grid * 2 <= slack)
    grid *= 2;
  auto since = t.time_since_epoch();
  return time_point{((since + grid - duration_type{1}) / grid) * grid};
}

void loop_clock::set_request_timeout(time_point t, caf::abstract_actor* self,
                                     caf::message_id id) {
  t = coarse(t);
  add(t, [&] { super::set_request_timeout(t, self, id); });
}

void loop_clock::set_multi_timeout(time_point t, caf::abstract_actor* self,
                                   caf::atom_value type, uint64_t id) {
  add(t, [&] { super::set_multi_timeout(t, self, type, id); });
}

void loop_clock::cancel_ordinary_timeout(caf::abstract_actor* self,
                                         caf::atom_value type) {
  remove([&] { super::cancel_ordinary_timeout(self, type); });
}

void loop_clock::cancel_request_timeout(caf::abstract_actor* self,
                                        caf::message_id id) {
  remove([&] { super::cancel_request_timeout(self, id); });
}

void loop_clock::cancel_timeouts(caf::abstract_actor* self) {
  remove([&] { super::cancel_timeouts(self); });
}

void loop_clock::schedule_message(time_point t, caf::strong_actor_ptr receiver,
                                  caf::mailbox_element_ptr content) {
  add(t, [&] {
    super::schedule_message(t, std::move(receiver), std::move(content));
  });
}

void loop_clock::schedule_message(time_point t, caf::group target,
                                  caf::strong_actor_ptr sender,
                                  caf::message content) {
  add(t, [&] {
    super::schedule_message(t, std::move(target), std::move(sender),
                            std::move(content));
  });
}

void loop_clock::cancel_all() {
  // Destroyed outside the lock: releasing an event's actor may end that
  // actor, whose cleanup cancels its timeouts here.
  schedule_map dropped;
  {
    std::lock_guard<std::mutex> guard{mtx_};
    dropped.swap(schedule_);
    actor_lookup_.clear();
  }
}

void loop_clock::run_dispatch_loop() {
  std::vector<unique_delayed_event_ptr> due;
  std::unique_lock<std::mutex> guard{mtx_};
  while (!done_) {
    // What is due leaves the schedule under the lock and is shipped without
    // it (as in simple_actor_clock::trigger_expired_timeouts): shipping and
    // dropping an event may end an actor, whose cleanup calls this clock.
    auto t = now();
    for (auto i = schedule_.begin(); i != schedule_.end() && i->first <= t;) {
      if (i->second->backlink != actor_lookup_.end())
        actor_lookup_.erase(i->second->backlink);
      due.push_back(std::move(i->second));
      i = schedule_.erase(i);
    }
    if (!due.empty()) {
      guard.unlock();
      for (auto& event : due)
        ship(*event);
      due.clear();
      guard.lock();
      continue;
    }
    sleeps_until_ =
        schedule_.empty() ? time_point::max() : schedule_.begin()->first;
    if (sleeps_until_ == time_point::max())
      cv_.wait(guard);
    else
      cv_.wait_until(guard, sleeps_until_);
    ++wake_ups_;
  }
  schedule_map dropped;
  dropped.swap(schedule_);
  actor_lookup_.clear();
  guard.unlock();
}

void loop_clock::cancel_dispatch_loop() {
  {
    std::lock_guard<std::mutex> guard{mtx_};
    done_ = true;
  }
  cv_.notify_all();
}

size_t loop_clock::wake_ups() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return wake_ups_;
}

} // namespace wsc
