#include "actors/supervisor.hpp"

#include "util/log.hpp"

#include <caf/all.hpp>

#include <exception>
#include <string>
#include <utility>

namespace wsc {

namespace {

using supervisor_ptr = supervisor_actor::stateful_pointer<supervisor_state>;

/// The frame types and prefixes `handler` is registered for, for logs.
std::string keys_of(const behaviour_table& behaviours,
                    const behaviour_actor& handler) {
  std::string result;
  for (auto& [key, hdl] : behaviours.snapshot()) {
    if (hdl != handler)
      continue;
    if (!result.empty())
      result += ", ";
    result += "'" + key + "'";
  }
  return result;
}

/// Gives up on the behaviour: frames of its types get `unknown_type` from
/// now on.
void give_up(supervisor_ptr self) {
  auto& st = self->state;
  st.behaviours->remove_all(st.current);
  self->quit();
}

/// Spawns a replacement from the factory and puts it in the old handle's
/// place for every type the old one was registered for.
void replace(supervisor_ptr self) {
  auto& st = self->state;
  st.waiting = false;
  if (st.health->draining)
    return;
  auto keys = keys_of(*st.behaviours, st.current);
  if (keys.empty()) {
    // Someone registered other handlers for all its types meanwhile.
    self->quit();
    return;
  }
  behaviour_actor fresh;
  try {
    fresh = st.factory(self->system());
  } catch (const std::exception& ex) {
    log::error("cannot restart the behaviour for {}: its factory threw: {}",
               keys, ex.what());
  }
  if (!fresh) {
    log::error("cannot restart the behaviour for {}; frames of these types "
               "are no longer handled",
               keys);
    give_up(self);
    return;
  }
  auto table = st.behaviours->snapshot();
  for (auto& [key, hdl] : table)
    if (hdl == st.current)
      st.behaviours->add(key, fresh);
  st.current = std::move(fresh);
  self->monitor(st.current);
  ++st.restarts;
  log::info("behaviour for {} restarted ({} restarts so far)", keys,
            st.restarts);
}

} // namespace

supervisor_actor::behavior_type
supervisor(supervisor_actor::stateful_pointer<supervisor_state> self,
           std::shared_ptr<behaviour_table> behaviours, node_health_ptr health,
           behaviour_actor handler, behaviour_factory factory) {
  auto& st = self->state;
  st.behaviours = std::move(behaviours);
  st.health = std::move(health);
  st.current = std::move(handler);
  st.factory = std::move(factory);
  self->monitor(st.current);
  self->set_down_handler([self](caf::down_msg& msg) {
    auto& st = self->state;
    if (msg.source != st.current.address())
      return; // a handle replaced before
    auto keys = keys_of(*st.behaviours, st.current);
    auto reason = self->system().render(msg.reason);
    if (st.health->draining) {
      log::warn("behaviour for {} stopped while the node drains: {}", keys,
                reason);
      return;
    }
    if (!st.factory) {
      log::error("behaviour for {} stopped: {}; frames of these types are no "
                 "longer handled (register it with a factory to have it "
                 "restarted)",
                 keys, reason);
      give_up(self);
      return;
    }
    auto now = self->clock().now();
    while (!st.failures.empty() &&
           now - st.failures.front() > supervisor_state::failure_window)
      st.failures.pop_front();
    st.failures.push_back(now);
    if (st.failures.size() <= supervisor_state::burst) {
      log::error("behaviour for {} failed: {}; restarting it", keys, reason);
      replace(self);
      return;
    }
    log::error("behaviour for {} failed: {}; {} failures within {} s, "
               "restarting it in {} s",
               keys, reason, st.failures.size(),
               supervisor_state::failure_window.count(),
               supervisor_state::backoff.count());
    st.waiting = true;
    self->delayed_send(self, supervisor_state::backoff, atom::tick_v);
  });
  // The node stops: the behaviour stops with its SUPERVISOR.
  self->set_exit_handler([self](caf::exit_msg& msg) {
    self->send_exit(self->state.current, msg.reason);
    self->quit(std::move(msg.reason));
  });
  return {
      [self](atom::status) { return self->state.restarts; },
      [self](atom::tick) {
        if (self->state.waiting)
          replace(self);
      },
  };
}

} // namespace wsc
