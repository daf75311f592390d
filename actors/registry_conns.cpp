// A connection's life in the REGISTRY: bound in the store, welcomed, its
// replay written page by page, live frames in order (frame_order), gaps
// filled from the inbox, and its removal.

#include "actors/registry.hpp"
#include "protocol/frames.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <random>

namespace wsc {

namespace {

/// How often a replay waiting for a client to drain its queue looks again:
/// soon while the client reads, less and less often while it does not (a
/// stalled client costs four looks a second, not fifty). The queue shrinks
/// only when a whole write ends, so a client that reads slowly can look
/// stalled for a while: the longest wait stays short.
constexpr auto replay_poll_min = std::chrono::milliseconds(20);
constexpr auto replay_poll_max = std::chrono::milliseconds(250);

} // namespace

// -- opening ------------------------------------------------------------------

caf::result<atom::ok>
registry_state::register_conn(const conn_ref& who,
                              const connection_actor& handle, sink_ref sink,
                              int64_t since) {
  bool resuming = !who.device.empty();
  if (resuming && !admit_resume(who.uid)) {
    self->send(handle, atom::disconnect_v, uint16_t{1013},
               std::string{"too many resumes of this uid in progress or "
                           "lately, try again later"});
    return make_error(ec::unavailable, "too many resumes");
  }
  self->monitor(handle);
  connections.emplace(who.conn, local_connection{who, handle, std::move(sink),
                                                 frame_order{resuming},
                                                 resuming, inbox_pages{}});
  conns_by_uid[who.uid].push_back(who.conn);
  auto rp = self->make_response_promise<atom::ok>();
  // Opens the connection whether or not the store answers: during an
  // outage local clients are served and bindings written back later.
  binding b{who.uid, who.node, who.conn, cfg.who.incarnation};
  self->request(store, store_timeout, atom::bind_v, b)
      .then([this, who, since,
             rp](bool came_online) { on_bound(who, since, came_online, rp); },
            [this, who, since, rp](caf::error& err) {
              log::warn("bind of {} failed: {}", who.conn, error_message(err));
              on_bound(who, since, false, rp);
            });
  return rp;
}

void registry_state::charge_replay(const std::string& uid,
                                   const inbox_replay& page) {
  size_t bytes = 0;
  for (auto& msg : page.messages)
    bytes += msg.data.size();
  replays.charge(uid, page.messages.size(),
                 bytes / std::max<size_t>(page.messages.size(), 1));
}

bool registry_state::admit_resume(const std::string& uid) {
  // Each replay holds a page and a queue: bound them per uid.
  if (!replays.may_store(uid, store_budgets::clock::now()))
    return false;
  auto& running = resumes[uid];
  if (running >= cfg.max_resumes_per_uid) {
    if (running == 0)
      resumes.erase(uid);
    return false;
  }
  ++running;
  return true;
}

void registry_state::on_bound(const conn_ref& who, int64_t since,
                              bool came_online,
                              caf::typed_response_promise<atom::ok> rp) {
  if (connections.count(who.conn) == 0) {
    // Closed before the bind answered: its unbind is queued at the store
    // already, so no replay, and ONLINE goes out now.
    return on_opened(who, came_online, rp);
  }
  if (who.device.empty()) {
    open(who.conn, nullptr, false);
    return on_opened(who, came_online, rp);
  }
  // Bound first, then read: a message stored after the read is routed here
  // and held until the replay went out.
  self->request(store, store_timeout, atom::inbox_v, who.uid, who.device, since,
                connections.at(who.conn).pages.count())
      .then(
          [this, who, came_online, rp](inbox_replay& replay) mutable {
            // Charged whether or not the client is still there: the store
            // read the page anyway (a client closing at once must pay too).
            charge_replay(who.uid, replay);
            open(who.conn, &replay, false);
            on_opened(who, came_online, rp);
          },
          [this, who, came_online, rp](caf::error&) mutable {
            open(who.conn, nullptr, true);
            on_opened(who, came_online, rp);
          });
}

void registry_state::on_opened(const conn_ref& who, bool came_online,
                               caf::typed_response_promise<atom::ok>& rp) {
  auto online = [&] {
    if (came_online)
      self->send(events, presence_event{who.uid, true, ""});
  };
  if (connections.count(who.conn) == 0) {
    // Closed meanwhile: its unbind answers after this, so OFFLINE still
    // follows ONLINE.
    online();
    rp.deliver(make_error(ec::internal, "connection closed"));
    return;
  }
  rp.deliver(atom::ok_v);
  connections.at(who.conn).registered = true;
  self->send(events, register_event{who});
  online();
}

void registry_state::open(const std::string& conn_id, inbox_replay* replay,
                          bool store_failed) {
  auto i = connections.find(conn_id);
  if (i == connections.end())
    return;
  auto& conn = i->second;
  auto send_now = [&](std::string text) {
    write_replay(conn, std::make_shared<const std::string>(std::move(text)));
  };
  if (!replay) {
    if (conn.who.device.empty())
      send_now(frames::welcome(conn.who));
    else
      send_now(frames::welcome(
          conn.who, false, store_failed ? "unavailable" : "no_inbox", 0, 0));
    return finish_open(conn, false);
  }
  auto from = replay->messages.empty() ? replay->cursor + 1
                                       : replay->messages.front().seq;
  send_now(frames::welcome(conn.who, !replay->too_old,
                           replay->too_old ? "too_old" : "", from,
                           replay->last_seq));
  conn.pages.fit(*replay);
  conn.order.begin_replay(*replay);
  pump_replay(conn_id);
}

void registry_state::pump_replay(const std::string& conn_id) {
  auto i = connections.find(conn_id);
  if (i == connections.end())
    return;
  auto& conn = i->second;
  auto sink = conn.sink.lock();
  if (!sink)
    return; // closed: its unregister follows
  auto reading = sink->queued_bytes() < conn.replay_queued;
  auto budget = cfg.send_queue_bytes;
  while (sink->queued_bytes() < budget) {
    auto msg = conn.order.next_replayed();
    if (!msg)
      break;
    write_stored(conn, *msg);
  }
  if (!conn.order.replay_page_written()) {
    // The client has not read what it got yet: look again later.
    conn.replay_wait = reading || conn.replay_wait.count() == 0
                           ? replay_poll_min
                           : std::min(conn.replay_wait * 2, replay_poll_max);
    conn.replay_queued = sink->queued_bytes();
    self->delayed_send(self, conn.replay_wait, atom::replay_v, conn_id);
    return;
  }
  if (!conn.order.replay_more())
    return finish_open(conn, true);
  self->request(
          store, store_timeout, atom::inbox_v, conn.who.uid, conn.who.device,
          static_cast<int64_t>(conn.order.replay_after()), conn.pages.count())
      .then(
          [this, conn_id](inbox_replay& page) {
            auto i = connections.find(conn_id);
            if (i == connections.end())
              return;
            if (page.cursor > i->second.order.replay_started_after() &&
                overtaken_by_retention(i->second, page))
              return;
            i->second.pages.fit(page);
            i->second.order.on_replay_page(page);
            pump_replay(conn_id);
          },
          [this, conn_id](caf::error& err) {
            // The rest comes with the next resume (or a gap's catch-up).
            log::warn("replay of {} stopped: {}", conn_id, error_message(err));
            auto i = connections.find(conn_id);
            if (i != connections.end())
              finish_open(i->second, false);
          });
}

void registry_state::finish_open(local_connection& conn, bool complete) {
  end_resume(conn);
  write_held(conn, conn.order.open(complete));
}

bool registry_state::overtaken_by_retention(local_connection& conn,
                                            const inbox_replay& page) {
  if (!page.too_old)
    return false;
  log::info("retention dropped messages of {}'s replay before it was "
            "written: closing it with 1013",
            conn.who.conn);
  end_resume(conn);
  self->send(conn.handle, atom::disconnect_v, uint16_t{1013},
             std::string{"messages of this replay were dropped by retention "
                         "meanwhile; reconnect to resume"});
  return true;
}

void registry_state::end_resume(local_connection& conn) {
  if (!conn.resuming)
    return;
  conn.resuming = false;
  if (auto i = resumes.find(conn.who.uid);
      i != resumes.end() && --i->second == 0)
    resumes.erase(i);
}

// -- writing ------------------------------------------------------------------

void registry_state::write(local_connection& conn, uint64_t seq,
                           const frame_ptr& frame, std::string_view msg_id) {
  auto next = conn.order.on_live(
      seq, frame, {cfg.send_queue_limit, cfg.send_queue_bytes}, msg_id);
  if (next == frame_order::step::write) {
    if (auto sink = conn.sink.lock())
      sink->write(frame, true);
  } else if (next == frame_order::step::catch_up) {
    catch_up(conn.who.conn);
  }
}

void registry_state::write_replay(local_connection& conn, frame_ptr frame) {
  if (auto sink = conn.sink.lock())
    sink->write(std::move(frame), false);
}

void registry_state::write_stored(local_connection& conn,
                                  const stored_message& msg) {
  write_replay(conn, std::make_shared<const std::string>(
                         frames::encode(msg, conn.who.uid)));
}

void registry_state::write_held(local_connection& conn,
                                std::vector<frame_ptr> held) {
  for (auto& frame : held)
    write_replay(conn, std::move(frame));
}

void registry_state::catch_up(const std::string& conn_id) {
  auto& conn = connections.at(conn_id);
  auto done = [this, conn_id](inbox_replay* page) {
    auto i = connections.find(conn_id);
    if (i == connections.end())
      return;
    auto& c = i->second;
    // From nothing (the store failed at the welcome) every trimmed inbox
    // reads as too old: no close for what no welcome promised. Nor for the
    // jump to the inbox's new life when none of it is missing (a device
    // connected while its inbox expired: review helper-55, H1).
    if (page && page->cursor > 0 && !only_new_life_ahead(*page) &&
        overtaken_by_retention(c, *page))
      return;
    if (page) {
      c.pages.fit(*page);
      for (auto& msg : page->messages)
        if (c.order.take(msg))
          write_stored(c, msg);
    }
    if (c.order.on_catch_up_page(page))
      return catch_up(conn_id); // the next page
    write_held(c, c.order.release_held());
  };
  self->request(store, store_timeout, atom::inbox_v, conn.who.uid,
                conn.who.device, static_cast<int64_t>(conn.order.last_seq()),
                conn.pages.count())
      .then([done](inbox_replay& page) { done(&page); },
            [done](caf::error&) { done(nullptr); });
}

// -- closing ------------------------------------------------------------------

void registry_state::remove(const std::string& conn_id) {
  auto i = connections.find(conn_id);
  if (i == connections.end())
    return;
  end_resume(i->second);
  auto who = std::move(i->second.who);
  bool registered = i->second.registered;
  self->demonitor(i->second.handle.address());
  connections.erase(i);
  auto& ids = conns_by_uid[who.uid];
  ids.erase(std::remove(ids.begin(), ids.end(), conn_id), ids.end());
  if (ids.empty()) {
    conns_by_uid.erase(who.uid);
    auto connected = [this](const std::string& uid) {
      return conns_by_uid.count(uid) > 0;
    };
    auto now = store_budgets::clock::now();
    budgets.prune(conns_by_uid.size(), connected, now);
    replays.prune(conns_by_uid.size(), connected, now);
    lookups.prune(conns_by_uid.size(), connected, now);
    // Which addresses are connected is the sessions' to know: only full
    // buckets go, as good as none.
    address_budgets.prune(
        connections.size(), [](const std::string&) { return false; }, now);
  }
  binding b{who.uid, who.node, who.conn, cfg.who.incarnation};
  self->request(store, store_timeout, atom::unbind_v, b)
      .then(
          [self = self, events = events, who](bool went_offline) {
            if (went_offline)
              self->send(events, presence_event{who.uid, false, "closed"});
          },
          [who](caf::error& err) {
            // Written back (without this binding) when the store returns.
            log::warn("unbind of {} failed: {}", who.conn, error_message(err));
          });
  if (registered)
    self->send(events, logout_event{std::move(who)});
}

void registry_state::close_uid(const std::string& uid, uint16_t code) {
  auto i = conns_by_uid.find(uid);
  if (i == conns_by_uid.end())
    return;
  auto reason = code == 4001 ? "disconnected by the API" : "disconnected";
  for (auto& conn_id : i->second)
    self->send(connections.at(conn_id).handle, atom::disconnect_v, code,
               std::string{reason});
}

atom::ok registry_state::drain(uint32_t period_ms) {
  std::mt19937 rng{std::random_device{}()};
  std::uniform_int_distribution<uint32_t> spread{0, period_ms};
  for (auto& [id, conn] : connections) {
    write(conn, 0,
          std::make_shared<const std::string>(
              frames::bye("shutdown", spread(rng))));
    self->send(conn.handle, atom::disconnect_v, uint16_t{1001},
               std::string{"node stopping"});
  }
  return atom::ok_v;
}

std::vector<binding> registry_state::bindings() const {
  std::vector<binding> result;
  result.reserve(connections.size());
  for (auto& [id, conn] : connections)
    result.push_back(binding{conn.who.uid, conn.who.node, conn.who.conn,
                             cfg.who.incarnation});
  return result;
}

} // namespace wsc
