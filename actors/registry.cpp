#include "actors/registry.hpp"

#include "actors/frames.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <random>
#include <string_view>
#include <unordered_set>

namespace wsc {

// -- registry_state -----------------------------------------------------------

namespace {

/// The answer to a send whose `idem` an earlier send still holds (being
/// stored): nothing was stored or delivered, so not even locally.
caf::error idem_pending_error() {
  return make_error(ec::unavailable, "an earlier send with this idem is "
                                     "still being stored; send it again "
                                     "later");
}

/// Messages of an inbox read per request of a replay: a page is held in
/// memory until the client drained enough of its queue to take it.
constexpr uint32_t replay_page = 64;

/// How often a replay waiting for a client to drain its queue looks again.
constexpr auto replay_poll = std::chrono::milliseconds(20);

} // namespace

void registry_state::write(local_connection& conn, uint64_t seq,
                           const frame_ptr& frame) {
  auto next = conn.order.on_live(seq, frame, node->opts.send_queue_limit);
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
  auto done = [this, conn_id](const inbox_replay* page) {
    auto i = connections.find(conn_id);
    if (i == connections.end())
      return;
    auto& c = i->second;
    if (page)
      for (auto& msg : page->messages)
        if (c.order.take(msg))
          write_stored(c, msg);
    if (c.order.on_catch_up_page(page))
      return catch_up(conn_id); // the next page
    write_held(c, c.order.release_held());
  };
  self->request(store, store_timeout, atom::inbox_v, conn.who.uid,
                conn.who.device, static_cast<int64_t>(conn.order.last_seq()),
                replay_page)
      .then([done](inbox_replay& page) { done(&page); },
            [done](caf::error&) { done(nullptr); });
}

namespace {

/// The connections a delivery must skip (`except`): a short list is
/// searched, a long one hashed once per delivery.
class except_filter {
public:
  explicit except_filter(const std::vector<std::string>& except)
      : list_(except) {
    if (list_.size() > 8)
      set_.insert(list_.begin(), list_.end());
  }

  bool operator()(const std::string& conn_id) const {
    if (list_.empty())
      return false;
    if (!set_.empty())
      return set_.count(conn_id) > 0;
    return std::find(list_.begin(), list_.end(), conn_id) != list_.end();
  }

private:
  const std::vector<std::string>& list_;
  std::unordered_set<std::string_view> set_;
};

} // namespace

uint32_t registry_state::deliver_local(const delivery& d,
                                       const std::vector<std::string>* uids) {
  uint32_t written = 0;
  if (d.kind == delivery_kind::disconnect) {
    if (uids)
      for (auto& uid : *uids)
        close_uid(uid, static_cast<uint16_t>(d.ts));
    return 0;
  }
  except_filter excluded{d.except};
  if (!d.to_conn.empty()) {
    auto i = connections.find(d.to_conn);
    if (i == connections.end() || excluded(d.to_conn))
      return 0;
    write(i->second, 0,
          std::make_shared<const std::string>(
              frames::encode(d, i->second.who.uid)));
    written = 1;
  } else if (!uids) { // broadcast: one frame for every connection
    auto frame = std::make_shared<const std::string>(frames::encode(d, {}));
    for (auto& [id, conn] : connections) {
      if (excluded(id))
        continue;
      write(conn, 0, frame);
      ++written;
    }
  } else {
    // Volatile group messages share one frame; durable ones carry each
    // receiver's own seq, messages each receiver's own `to`.
    frame_ptr shared;
    for (size_t n = 0; n < uids->size(); ++n) {
      auto& uid = (*uids)[n];
      auto i = conns_by_uid.find(uid);
      if (i == conns_by_uid.end())
        continue;
      auto seq = d.durable && n < d.seqs.size() ? d.seqs[n] : 0;
      frame_ptr frame = shared;
      if (!frame) {
        frame =
            std::make_shared<const std::string>(frames::encode(d, uid, seq));
        if (d.kind == delivery_kind::group && seq == 0)
          shared = frame;
      }
      for (auto& conn_id : i->second) {
        if (excluded(conn_id)) {
          // A durable copy still advances the connection's seq, or the
          // next one would look like a gap and fetch this one back.
          if (seq != 0)
            write(connections.at(conn_id), seq, nullptr);
          continue;
        }
        write(connections.at(conn_id), seq, frame);
        ++written;
      }
    }
  }
  node->metrics.deliveries_local += written;
  if (auto kind = static_cast<size_t>(d.kind);
      kind < node->metrics.deliveries_by_kind.size())
    node->metrics.deliveries_by_kind[kind] += written;
  return written;
}

namespace {

/// What a delivery costs in a batch, roughly: its payload, names, seqs and
/// excluded connections (up to 256 ids of 128 bytes: counted, or a batch of
/// small messages with long `except` lists would outgrow the batch limit).
size_t wire_bytes(const delivery& d) {
  auto bytes = 64 + d.data.size() + d.from.size() + d.group.size() +
               d.msg_id.size() + d.to_conn.size() + 8 * d.seqs.size();
  for (auto& uid : d.uids)
    bytes += uid.size() + 8;
  for (auto& conn : d.except)
    bytes += conn.size() + 8;
  return bytes;
}

/// Moves the first deliveries of `from`, at most `max_bytes` of them (at
/// least one), into a batch of their own.
delivery_batch take_batch(delivery_batch& from, size_t max_bytes,
                          size_t& taken_bytes) {
  size_t n = 0;
  taken_bytes = 0;
  while (n < from.items.size() &&
         (n == 0 || taken_bytes + wire_bytes(from.items[n]) <= max_bytes))
    taken_bytes += wire_bytes(from.items[n++]);
  if (n == from.items.size()) {
    auto all = std::move(from);
    from.items.clear();
    return all;
  }
  delivery_batch result;
  result.items.assign(std::make_move_iterator(from.items.begin()),
                      std::make_move_iterator(from.items.begin() + n));
  from.items.erase(from.items.begin(), from.items.begin() + n);
  return result;
}

} // namespace

void registry_state::enqueue_remote(const std::string& peer, delivery d) {
  auto& batch = outbox[peer];
  auto& bytes = outbox_bytes[peer];
  auto size = wire_bytes(d);
  if (batch.items.size() >= max_queued || bytes + size > max_queued_bytes) {
    ++undeliverable; // a peer that stopped confirming: do not grow forever
    return;
  }
  bytes += size;
  batch.items.push_back(std::move(d));
  if (!flush_scheduled) {
    // Everything routed in this turn of the mailbox goes in one batch.
    flush_scheduled = true;
    self->send(self, caf::flush_atom::value);
  }
}

void registry_state::flush() {
  flush_scheduled = false;
  for (auto i = outbox.begin(); i != outbox.end();) {
    auto& [peer, batch] = *i;
    auto p = peers.find(peer);
    if (p == peers.end()) {
      relay_batch(peer, std::move(batch));
      outbox_bytes.erase(peer);
      i = outbox.erase(i);
      continue;
    }
    while (!batch.items.empty() && in_flight[peer] < max_in_flight)
      send_batch(peer, p->second, batch);
    if (!batch.items.empty()) {
      ++i;
      continue;
    }
    outbox_bytes.erase(peer);
    i = outbox.erase(i);
  }
}

void registry_state::send_batch(const std::string& peer,
                                const peer_actor& handle,
                                delivery_batch& pending) {
  size_t bytes = 0;
  auto batch = take_batch(pending, max_batch_bytes, bytes);
  auto& queued = outbox_bytes[peer];
  queued -= std::min(queued, bytes);
  batch.origin = node->node_id;
  node->metrics.count_remote(peer, batch.items.size());
  ++in_flight[peer];
  auto name = peer;
  self->request(handle, node->opts.request_timeout, atom::remote_v,
                std::move(batch))
      .then(
          [this, name](atom::ok) {
            if (in_flight[name] > 0)
              --in_flight[name];
            if (auto j = outbox.find(name); j != outbox.end() &&
                                            !j->second.items.empty() &&
                                            !flush_scheduled)
              flush();
          },
          [this, name](caf::error& err) {
            if (in_flight[name] > 0)
              --in_flight[name];
            log::warn("delivery batch to node {} failed: {}", name,
                      error_message(err));
          });
}

void registry_state::relay_batch(const std::string& peer,
                                 delivery_batch batch) {
  if (batch.items.empty())
    return;
  if (!relay) {
    undeliverable += batch.items.size();
    return;
  }
  batch.origin = node->node_id;
  self->send(relay, atom::relay_v, peer, std::move(batch));
}

void registry_state::route(delivery d, const route_table& routes) {
  for (auto& nr : routes.nodes) {
    if (nr.node == node->node_id) {
      auto local = d;
      local.seqs = nr.seqs;
      deliver_local(local, &nr.uids);
    } else {
      // A node without a CAF connection gets it through the RELAY on flush.
      auto copy = d;
      copy.uids = nr.uids;
      copy.seqs = nr.seqs;
      enqueue_remote(nr.node, std::move(copy));
    }
  }
}

void registry_state::watch_unread(const delivery& d,
                                  const route_table& routes) {
  if (!d.durable || !node->unread)
    return;
  unread_watch w;
  w.msg_id = d.msg_id;
  w.from = d.from;
  w.group = d.kind == delivery_kind::group ? d.group : std::string{};
  auto add = [&](const std::vector<std::string>& uids,
                 const std::vector<uint64_t>& seqs) {
    for (size_t i = 0; i < uids.size() && i < seqs.size(); ++i) {
      if (seqs[i] == 0)
        continue; // not stored
      w.uids.push_back(uids[i]);
      w.seqs.push_back(seqs[i]);
    }
  };
  for (auto& nr : routes.nodes)
    add(nr.uids, nr.seqs);
  add(routes.offline, routes.offline_seqs);
  if (!w.uids.empty())
    self->send(node->unread, std::move(w));
}

std::string registry_state::make_msg_id() {
  return node->node_id + "-" + std::to_string(node->incarnation) + "-" +
         std::to_string(++next_msg);
}

namespace {

caf::error store_rate_exceeded(const std::string& uid) {
  return make_error(ec::rate_limited,
                    "'" + uid +
                        "' stores more bytes per second than "
                        "stored-bytes-rate allows; try again shortly");
}

size_t receivers_of(const route_table& routes) {
  auto n = routes.offline.size();
  for (auto& nr : routes.nodes)
    n += nr.uids.size();
  return n;
}

} // namespace

caf::result<delivery_report> registry_state::send_to_conn(delivery d) {
  // One connection: volatile, no store round trip (its node is in its id).
  d.durable = false;
  d.idem.clear();
  d.uids.clear();
  auto answer = [](uint32_t connections, const char* not_delivered) {
    delivery_report report;
    report.connections.push_back(connections);
    report.not_delivered = connections > 0 ? "" : not_delivered;
    return report;
  };
  auto target = std::string{frames::node_of_conn(d.to_conn)};
  if (target == node->node_id)
    return answer(deliver_local(d, nullptr), "gone");
  auto p = peers.find(target);
  if (p == peers.end()) {
    if (!relay || cluster_nodes.count(target) == 0)
      return answer(0, "gone");
    // Alive but cut off: the RELAY carries it, at most once, unconfirmed.
    enqueue_remote(target, std::move(d));
    return answer(0, "unconfirmed");
  }
  auto rp = self->make_response_promise<delivery_report>();
  self->request(p->second, node->opts.request_timeout, atom::deliver_v,
                std::move(d))
      .then(
          [rp, answer](uint32_t connections) mutable {
            rp.deliver(answer(connections, "gone"));
          },
          [rp, answer](caf::error&) mutable {
            rp.deliver(answer(0, "unconfirmed"));
          });
  return rp;
}

caf::result<delivery_report> registry_state::send(delivery d) {
  if (!d.to_conn.empty())
    return send_to_conn(std::move(d));
  if (d.durable && !budgets.may_store(d.from, store_budgets::clock::now()))
    return store_rate_exceeded(d.from);
  auto rp = self->make_response_promise<delivery_report>();
  if (d.durable)
    d.msg_id = make_msg_id();
  if (!d.durable || node->opts.idempotency_window.count() <= 0)
    d.idem.clear(); // volatile: at most once anyway, nothing to look up
  auto on_routes = [this, rp, d](route_table& routes) mutable {
    // One entry per uid, its connections on every node added up.
    delivery_report report;
    report.msg_id = d.msg_id;
    if (routes.idem_pending) {
      rp.deliver(idem_pending_error());
      return;
    }
    if (!routes.duplicate_of.empty()) {
      // The sender said this before (same idem): the earlier message was
      // stored for, and routed to, the same receivers.
      report.msg_id = std::move(routes.duplicate_of);
      report.duplicate = true;
      report.uids = std::move(d.uids);
      report.connections.assign(report.uids.size(), 0);
      report.stored.assign(report.uids.size(), true);
      rp.deliver(std::move(report));
      return;
    }
    d.idem.clear(); // the receivers need no idem
    std::unordered_map<std::string, size_t> index;
    auto add = [&](const std::string& uid, uint32_t connections, bool stored) {
      auto [i, added] = index.emplace(uid, report.uids.size());
      if (!added) {
        report.connections[i->second] += connections;
        return;
      }
      report.uids.push_back(uid);
      report.connections.push_back(connections);
      report.stored.push_back(stored);
    };
    for (auto& nr : routes.nodes)
      for (size_t i = 0; i < nr.uids.size(); ++i)
        add(nr.uids[i], i < nr.connections.size() ? nr.connections[i] : 0,
            d.durable);
    for (auto& uid : routes.offline)
      add(uid, 0, d.durable);
    for (auto& uid : routes.unavailable)
      add(uid, 0, false);
    report.unavailable = routes.unavailable;
    if (d.durable)
      budgets.charge(d.from, report.uids.size(), d.data.size());
    watch_unread(d, routes);
    route(std::move(d), routes);
    rp.deliver(std::move(report));
  };
  auto on_error = [this, rp, d](caf::error& err) mutable {
    // Without the store only this node's connections are known: serve them
    // (at most once, nothing stored) and tell the sender the rest was not.
    d.durable = false;
    auto local = deliver_local(d, &d.uids);
    rp.deliver(make_error(ec::unavailable, "state store unreachable (" +
                                               error_message(err) +
                                               "); not stored, delivered to " +
                                               std::to_string(local) +
                                               " local connection(s) only"));
  };
  auto timeout = store_timeout;
  if (d.durable) {
    self->request(store, timeout, atom::append_v, d).then(on_routes, on_error);
  } else {
    self->request(store, timeout, atom::route_v, d.uids)
        .then(on_routes, on_error);
  }
  return rp;
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
  auto budget = node->opts.send_queue_bytes;
  while (sink->queued_bytes() < budget) {
    auto msg = conn.order.next_replayed();
    if (!msg)
      break;
    write_stored(conn, *msg);
  }
  if (!conn.order.replay_page_written()) {
    // The client has not read what it got yet: look again shortly.
    self->delayed_send(self, replay_poll, atom::replay_v, conn_id);
    return;
  }
  if (!conn.order.replay_more())
    return finish_open(conn, true);
  self->request(store, store_timeout, atom::inbox_v, conn.who.uid,
                conn.who.device,
                static_cast<int64_t>(conn.order.replay_after()), replay_page)
      .then(
          [this, conn_id](inbox_replay& page) {
            auto i = connections.find(conn_id);
            if (i == connections.end())
              return;
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

void registry_state::end_resume(local_connection& conn) {
  if (!conn.resuming)
    return;
  conn.resuming = false;
  if (auto i = resumes.find(conn.who.uid);
      i != resumes.end() && --i->second == 0)
    resumes.erase(i);
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

void registry_state::remove(const std::string& conn_id) {
  auto i = connections.find(conn_id);
  if (i == connections.end())
    return;
  end_resume(i->second);
  auto who = std::move(i->second.who);
  bool was_open = i->second.order.is_open();
  self->demonitor(i->second.handle.address());
  connections.erase(i);
  auto& ids = conns_by_uid[who.uid];
  ids.erase(std::remove(ids.begin(), ids.end(), conn_id), ids.end());
  if (ids.empty()) {
    conns_by_uid.erase(who.uid);
    budgets.prune(
        conns_by_uid.size(),
        [this](const std::string& uid) { return conns_by_uid.count(uid) > 0; },
        store_budgets::clock::now());
  }
  binding b{who.uid, who.node, who.conn, node->incarnation};
  auto events = node->events;
  self->request(store, store_timeout, atom::unbind_v, b)
      .then(
          [self = self, events, who](bool went_offline) {
            if (went_offline)
              self->send(events, presence_event{who.uid, false, "closed"});
          },
          [self = self, who](caf::error& err) {
            // Written back (without this binding) when the store returns.
            log::warn("unbind of {} failed: {}", who.conn, error_message(err));
          });
  if (was_open)
    self->send(events, logout_event{std::move(who)});
}

// -- behaviour ----------------------------------------------------------------

registry_actor::behavior_type
registry(registry_actor::stateful_pointer<registry_state> self,
         node_context_ptr node, state_store_actor store) {
  auto& st = self->state;
  st.self = self;
  st.node = std::move(node);
  st.store = std::move(store);
  self->set_down_handler([self](caf::down_msg& dm) {
    // A connection actor died without saying goodbye.
    auto& st = self->state;
    for (auto& [id, conn] : st.connections)
      if (conn.handle.address() == dm.source) {
        st.remove(std::string{id});
        return;
      }
  });
  // The built-in stores answer every request (their I/O has deadlines of
  // its own): no timeout to arm per message. A custom store gets one.
  st.store_timeout = st.node->custom_store
                         ? caf::duration{st.node->opts.request_timeout}
                         : caf::duration{caf::infinite};
  auto rate = static_cast<double>(st.node->opts.stored_bytes_rate);
  auto burst =
      2.0 * std::max(rate, static_cast<double>(st.node->opts.max_fanout_bytes));
  st.budgets = store_budgets{rate, burst};
  auto timeout = st.store_timeout;
  return {
      // -- connections --------------------------------------------------------
      [self, timeout](atom::register_conn, conn_ref& who,
                      connection_actor& handle, sink_ref& sink,
                      int64_t since) -> caf::result<atom::ok> {
        auto& st = self->state;
        bool resuming = !who.device.empty();
        if (resuming) {
          // Each replay holds a page and a queue: bound them per uid.
          auto& running = st.resumes[who.uid];
          if (running >= st.node->opts.max_resumes_per_uid) {
            if (running == 0)
              st.resumes.erase(who.uid);
            self->send(handle, atom::disconnect_v, uint16_t{1013},
                       std::string{"too many resumes of this uid in "
                                   "progress, try again later"});
            return make_error(ec::unavailable, "too many resumes");
          }
          ++running;
        }
        self->monitor(handle);
        st.connections.emplace(
            who.conn, local_connection{who, handle, std::move(sink),
                                       frame_order{resuming}, resuming});
        st.conns_by_uid[who.uid].push_back(who.conn);
        auto rp = self->make_response_promise<atom::ok>();
        // Opens the connection whether or not the store answers: during an
        // outage local clients are served and bindings written back later.
        auto opened = [self, rp, who](bool came_online) mutable {
          auto& st = self->state;
          auto online = [&] {
            if (came_online)
              self->send(st.node->events, presence_event{who.uid, true, ""});
          };
          if (st.connections.count(who.conn) == 0) {
            // Closed meanwhile: its unbind answers after this, so OFFLINE
            // still follows ONLINE.
            online();
            rp.deliver(make_error(ec::internal, "connection closed"));
            return;
          }
          rp.deliver(atom::ok_v);
          self->send(st.node->events, register_event{who});
          online();
        };
        auto bound = [self, timeout, who, since,
                      opened](bool came_online) mutable {
          auto& st = self->state;
          if (st.connections.count(who.conn) == 0) {
            // Closed before the bind answered: its unbind is queued at the
            // store already, so no replay, and ONLINE goes out now.
            opened(came_online);
            return;
          }
          if (who.device.empty()) {
            st.open(who.conn, nullptr, false);
            opened(came_online);
            return;
          }
          // Bound first, then read: a message stored after the read is
          // routed here and held until the replay went out.
          self->request(st.store, timeout, atom::inbox_v, who.uid, who.device,
                        since, replay_page)
              .then(
                  [self, who, came_online,
                   opened](inbox_replay& replay) mutable {
                    self->state.open(who.conn, &replay, false);
                    opened(came_online);
                  },
                  [self, who, came_online, opened](caf::error&) mutable {
                    self->state.open(who.conn, nullptr, true);
                    opened(came_online);
                  });
        };
        binding b{who.uid, who.node, who.conn, st.node->incarnation};
        self->request(st.store, timeout, atom::bind_v, b)
            .then([bound](bool came_online) mutable { bound(came_online); },
                  [bound, who](caf::error& err) mutable {
                    log::warn("bind of {} failed: {}", who.conn,
                              error_message(err));
                    bound(false);
                  });
        return rp;
      },
      [self](atom::unregister, conn_ref& who) { self->state.remove(who.conn); },
      // -- messaging ----------------------------------------------------------
      [self](atom::send, delivery& d) -> caf::result<delivery_report> {
        return self->state.send(std::move(d));
      },
      [self](atom::broadcast, delivery& d) -> atom::ok {
        auto& st = self->state;
        d.kind = delivery_kind::broadcast;
        d.uids.clear();
        d.to_conn.clear();
        st.deliver_local(d, nullptr);
        // Peers without a CAF connection get it through the RELAY on flush.
        for (auto& [peer, handle] : st.peers)
          st.enqueue_remote(peer, d);
        for (auto& peer : st.cluster_nodes)
          if (st.peers.count(peer) == 0)
            st.enqueue_remote(peer, d);
        return atom::ok_v;
      },
      [self, timeout](atom::publish,
                      delivery& d) -> caf::result<delivery_report> {
        if (d.durable &&
            !self->state.budgets.may_store(d.from, store_budgets::clock::now()))
          return store_rate_exceeded(d.from);
        auto rp = self->make_response_promise<delivery_report>();
        d.kind = delivery_kind::group;
        if (d.durable)
          d.msg_id = self->state.make_msg_id();
        if (!d.durable ||
            self->state.node->opts.idempotency_window.count() <= 0)
          d.idem.clear(); // volatile: at most once anyway
        auto on_routes = [self, rp, d](route_table& routes) mutable {
          delivery_report report;
          report.msg_id = d.msg_id;
          if (routes.idem_pending) {
            rp.deliver(idem_pending_error());
            return;
          }
          if (!routes.duplicate_of.empty()) {
            // A repeat (same sender, same idem): nothing stored or routed.
            report.msg_id = std::move(routes.duplicate_of);
            report.duplicate = true;
            rp.deliver(std::move(report));
            return;
          }
          d.idem.clear();
          report.unavailable = routes.unavailable;
          if (d.durable)
            self->state.budgets.charge(d.from, receivers_of(routes),
                                       d.data.size());
          self->state.watch_unread(d, routes);
          self->state.route(std::move(d), routes);
          rp.deliver(std::move(report));
        };
        auto on_error = [rp](caf::error& err) mutable {
          rp.deliver(std::move(err));
        };
        if (d.durable) {
          self->request(self->state.store, timeout, atom::group_append_v, d)
              .then(on_routes, on_error);
        } else {
          self->request(self->state.store, timeout, atom::group_route_v,
                        d.group, d.from)
              .then(on_routes, on_error);
        }
        return rp;
      },
      [self](atom::read, conn_ref& who, uint64_t seq) -> caf::result<atom::ok> {
        if (who.device.empty())
          return make_error(ec::bad_frame,
                            "read needs a connection with device=<id>");
        return self->delegate(self->state.store, atom::read_v, who.uid,
                              who.device, seq);
      },
      [self, timeout](atom::join, conn_ref& who,
                      std::string& group) -> caf::result<atom::ok> {
        auto rp = self->make_response_promise<atom::ok>();
        auto max_groups =
            static_cast<uint32_t>(self->state.node->opts.max_groups);
        self->request(self->state.store, timeout, atom::join_v, who.uid, group,
                      max_groups)
            .then(
                [self, rp, uid = who.uid, group](uint32_t) mutable {
                  self->send(self->state.node->events, join_event{uid, group});
                  rp.deliver(atom::ok_v);
                },
                [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
        return rp;
      },
      [self, timeout](atom::leave, conn_ref& who,
                      std::string& group) -> caf::result<atom::ok> {
        auto rp = self->make_response_promise<atom::ok>();
        self->request(self->state.store, timeout, atom::leave_v, who.uid, group)
            .then(
                [self, rp, uid = who.uid, group](atom::ok) mutable {
                  self->send(self->state.node->events, leave_event{uid, group});
                  rp.deliver(atom::ok_v);
                },
                [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
        return rp;
      },
      [self](atom::members,
             std::string& group) -> caf::result<std::vector<std::string>> {
        // One more than the limit tells the caller the list was cut.
        auto limit =
            static_cast<uint32_t>(self->state.node->opts.members_limit + 1);
        return self->delegate(self->state.store, atom::members_v,
                              std::move(group), limit);
      },
      [self](atom::is_member, std::string& group,
             std::string& uid) -> caf::result<bool> {
        return self->delegate(self->state.store, atom::is_member_v,
                              std::move(group), std::move(uid));
      },
      [self, timeout](atom::presence, std::vector<std::string>& uids)
          -> caf::result<std::vector<bool>> {
        auto rp = self->make_response_promise<std::vector<bool>>();
        self->request(self->state.store, timeout, atom::route_v, uids)
            .then(
                [rp, uids](route_table& routes) mutable {
                  std::vector<bool> online(uids.size(), false);
                  for (size_t i = 0; i < uids.size(); ++i)
                    for (auto& nr : routes.nodes)
                      if (std::find(nr.uids.begin(), nr.uids.end(), uids[i]) !=
                          nr.uids.end())
                        online[i] = true;
                  rp.deliver(std::move(online));
                },
                [rp](caf::error& err) mutable {
                  rp.deliver(make_error(ec::unavailable, error_message(err)));
                });
        return rp;
      },
      [self, timeout](atom::disconnect, std::string& uid,
                      uint16_t code) -> caf::result<atom::ok> {
        auto rp = self->make_response_promise<atom::ok>();
        self->request(self->state.store, timeout, atom::route_v,
                      std::vector<std::string>{uid})
            .then(
                [self, rp, code](route_table& routes) mutable {
                  delivery d;
                  d.kind = delivery_kind::disconnect;
                  d.ts = code;
                  self->state.route(std::move(d), routes);
                  rp.deliver(atom::ok_v);
                },
                [rp](caf::error& err) mutable {
                  rp.deliver(make_error(ec::unavailable, error_message(err)));
                });
        return rp;
      },
      // -- peers --------------------------------------------------------------
      [self](atom::remote, delivery_batch& batch) {
        auto& st = self->state;
        st.node->metrics.count_remote_in(batch.origin, batch.items.size());
        for (auto& d : batch.items) {
          // A peer (or whoever reached the cluster port) is no excuse for
          // undefined behaviour: malformed deliveries are dropped.
          if (auto err = frames::check(d)) {
            if (st.node->metrics.rejected_deliveries++ % 1000 == 0)
              log::warn("dropped a delivery from {}: {}",
                        batch.origin.substr(0, 64), error_message(err));
            continue;
          }
          st.deliver_local(d, d.kind == delivery_kind::broadcast ? nullptr
                                                                 : &d.uids);
        }
        return atom::ok_v;
      },
      [self](atom::deliver, delivery& d) -> uint32_t {
        // A `send` with `to_conn` for a connection of this node.
        auto& st = self->state;
        if (d.to_conn.empty() || frames::check(d))
          return 0;
        return st.deliver_local(d, nullptr);
      },
      [self](atom::replay, std::string& conn_id) {
        self->state.pump_replay(conn_id);
      },
      [self](shutdown_event& ev) {
        // DISCOVERY decides what a peer's SHUTDOWN means for this node.
        self->send(self->state.node->discovery, std::move(ev));
      },
      [self](atom::ping) -> caf::result<std::string, uint64_t> {
        return {self->state.node->node_id, self->state.node->incarnation};
      },
      [self](atom::hello, std::string& peer, uint64_t incarnation,
             caf::actor& handle) {
        self->send(self->state.node->discovery, atom::hello_v, std::move(peer),
                   incarnation, caf::actor_cast<peer_actor>(std::move(handle)));
      },
      [self](atom::peer_up, std::string& peer, peer_actor& handle) {
        self->state.peers[peer] = std::move(handle);
      },
      [self](atom::peer_down, std::string& peer) {
        auto& st = self->state;
        st.peers.erase(peer);
        st.in_flight.erase(peer);
        st.outbox_bytes.erase(peer);
        if (auto i = st.outbox.find(peer); i != st.outbox.end()) {
          st.relay_batch(peer, std::move(i->second));
          st.outbox.erase(i);
        }
      },
      [self](atom::relay, relay_actor& relay) {
        self->state.relay = std::move(relay);
      },
      [self](atom::nodes, std::vector<std::string>& alive) {
        auto& st = self->state;
        st.cluster_nodes.clear();
        for (auto& id : alive)
          if (id != st.node->node_id)
            st.cluster_nodes.insert(std::move(id));
      },
      [self](caf::flush_atom) { self->state.flush(); },
      // -- lifecycle ----------------------------------------------------------
      [self](atom::drain, uint32_t period_ms) -> atom::ok {
        auto& st = self->state;
        std::mt19937 rng{std::random_device{}()};
        std::uniform_int_distribution<uint32_t> spread{0, period_ms};
        for (auto& [id, conn] : st.connections) {
          st.write(conn, 0,
                   std::make_shared<const std::string>(
                       frames::bye("shutdown", spread(rng))));
          self->send(conn.handle, atom::disconnect_v, uint16_t{1001},
                     std::string{"node stopping"});
        }
        return atom::ok_v;
      },
      [self](atom::rebind) -> std::vector<binding> {
        auto& st = self->state;
        std::vector<binding> result;
        result.reserve(st.connections.size());
        for (auto& [id, conn] : st.connections)
          result.push_back(binding{conn.who.uid, conn.who.node, conn.who.conn,
                                   st.node->incarnation});
        return result;
      },
      [self](atom::status) -> uint32_t {
        return static_cast<uint32_t>(self->state.connections.size());
      },
  };
}

} // namespace wsc
