#include "actors/registry.hpp"

#include "actors/frames.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <random>

namespace wsc {

// -- registry_state
// ------------------------------------------------------------------

void registry_state::write(const local_connection& conn,
                           const frame_ptr& frame) {
  self->send(conn.handle, atom::deliver_v, frame);
}

uint32_t registry_state::deliver_local(const delivery& d,
                                       const std::vector<std::string>* uids) {
  uint32_t written = 0;
  if (d.kind == delivery_kind::disconnect) {
    if (uids)
      for (auto& uid : *uids)
        close_uid(uid, static_cast<uint16_t>(d.ts));
    return 0;
  }
  if (!uids) { // broadcast: one frame for every open connection
    auto frame = std::make_shared<const std::string>(frames::encode(d, {}));
    for (auto& [id, conn] : connections)
      if (conn.open) {
        write(conn, frame);
        ++written;
      }
  } else {
    frame_ptr shared; // groups: one frame for all members
    for (auto& uid : *uids) {
      auto i = conns_by_uid.find(uid);
      if (i == conns_by_uid.end())
        continue;
      frame_ptr frame = shared;
      if (!frame) {
        frame = std::make_shared<const std::string>(frames::encode(d, uid));
        if (d.kind != delivery_kind::message)
          shared = frame;
      }
      for (auto& conn_id : i->second) {
        auto& conn = connections.at(conn_id);
        if (conn.open) {
          write(conn, frame);
          ++written;
        }
      }
    }
  }
  node->metrics.deliveries_local += written;
  return written;
}

void registry_state::enqueue_remote(const std::string& peer, delivery d) {
  auto& batch = outbox[peer];
  if (batch.items.empty() && outbox.size() == 1)
    self->send(self, caf::flush_atom::value);
  batch.items.push_back(std::move(d));
}

void registry_state::route(delivery d, const route_table& routes) {
  for (auto& nr : routes.nodes) {
    if (nr.node == node->node_id) {
      deliver_local(d, &nr.uids);
    } else if (peers.count(nr.node) > 0) {
      auto copy = d;
      copy.uids = nr.uids;
      enqueue_remote(nr.node, std::move(copy));
    } else {
      ++undeliverable;
    }
  }
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
  auto who = std::move(i->second.who);
  bool was_open = i->second.open;
  self->demonitor(i->second.handle.address());
  connections.erase(i);
  auto& ids = conns_by_uid[who.uid];
  ids.erase(std::remove(ids.begin(), ids.end(), conn_id), ids.end());
  if (ids.empty())
    conns_by_uid.erase(who.uid);
  binding b{who.uid, who.node, who.conn, node->incarnation};
  auto events = node->events;
  self->request(store, node->opts.request_timeout, atom::unbind_v, b)
      .then(
          [self = self, events, who](bool went_offline) {
            if (went_offline)
              self->send(events, presence_event{who.uid, false});
          },
          [self = self, who](caf::error& err) {
            // Written back (without this binding) when the store returns.
            log::warn("unbind of {} failed: {}", who.conn, error_message(err));
          });
  if (was_open)
    self->send(events, logout_event{std::move(who)});
}

// -- behaviour
// -------------------------------------------------------------------------

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
  // Replies with a route table for `uids`, or with the store's error.
  auto timeout = st.node->opts.request_timeout;
  return {
      // -- connections
      // -------------------------------------------------------------
      [self, timeout](atom::register_conn, conn_ref& who,
                      connection_actor& handle) -> caf::result<atom::ok> {
        auto& st = self->state;
        self->monitor(handle);
        st.connections.emplace(who.conn, local_connection{who, handle, false});
        st.conns_by_uid[who.uid].push_back(who.conn);
        auto rp = self->make_response_promise<atom::ok>();
        binding b{who.uid, who.node, who.conn, st.node->incarnation};
        // Opens the connection whether or not the store answers: during an
        // outage local clients are served and bindings written back later.
        auto open = [self, rp, who](bool came_online) mutable {
          auto& st = self->state;
          auto i = st.connections.find(who.conn);
          if (i == st.connections.end()) {
            rp.deliver(make_error(ec::internal, "connection closed"));
            return;
          }
          i->second.open = true;
          st.write(i->second,
                   std::make_shared<const std::string>(frames::welcome(who)));
          rp.deliver(atom::ok_v);
          self->send(st.node->events, register_event{who});
          if (came_online)
            self->send(st.node->events, presence_event{who.uid, true});
        };
        self->request(st.store, timeout, atom::bind_v, b)
            .then([open](bool came_online) mutable { open(came_online); },
                  [open, who](caf::error& err) mutable {
                    log::warn("bind of {} failed: {}", who.conn,
                              error_message(err));
                    open(false);
                  });
        return rp;
      },
      [self](atom::unregister, conn_ref& who) { self->state.remove(who.conn); },
      // -- messaging
      // -----------------------------------------------------------------
      [self, timeout](atom::send, delivery& d) -> caf::result<delivery_report> {
        auto rp = self->make_response_promise<delivery_report>();
        auto uids = d.uids;
        self->request(self->state.store, timeout, atom::route_v,
                      std::move(uids))
            .then(
                [self, rp, d](route_table& routes) mutable {
                  delivery_report report;
                  for (auto& nr : routes.nodes)
                    for (size_t i = 0; i < nr.uids.size(); ++i) {
                      report.uids.push_back(nr.uids[i]);
                      report.connections.push_back(
                          i < nr.connections.size() ? nr.connections[i] : 0);
                    }
                  for (auto& uid : routes.offline) {
                    report.uids.push_back(uid);
                    report.connections.push_back(0);
                  }
                  self->state.route(std::move(d), routes);
                  rp.deliver(std::move(report));
                },
                [self, rp, d](caf::error& err) mutable {
                  // Without the store only this node's connections are known:
                  // serve them, and tell the sender the rest of the cluster was
                  // not.
                  auto local = self->state.deliver_local(d, &d.uids);
                  rp.deliver(make_error(
                      ec::unavailable,
                      "state store unreachable (" + error_message(err) +
                          "); delivered to " + std::to_string(local) +
                          " local connection(s) only"));
                });
        return rp;
      },
      [self](atom::broadcast, delivery& d) -> atom::ok {
        auto& st = self->state;
        d.kind = delivery_kind::broadcast;
        d.uids.clear();
        st.deliver_local(d, nullptr);
        for (auto& [peer, handle] : st.peers)
          st.enqueue_remote(peer, d);
        return atom::ok_v;
      },
      [self, timeout](atom::publish, delivery& d) -> caf::result<atom::ok> {
        auto rp = self->make_response_promise<atom::ok>();
        d.kind = delivery_kind::group;
        auto group = d.group;
        auto from = d.from;
        self->request(self->state.store, timeout, atom::group_route_v,
                      std::move(group), std::move(from))
            .then(
                [self, rp, d](route_table& routes) mutable {
                  self->state.route(std::move(d), routes);
                  rp.deliver(atom::ok_v);
                },
                [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
        return rp;
      },
      [self, timeout](atom::join, conn_ref& who,
                      std::string& group) -> caf::result<atom::ok> {
        auto rp = self->make_response_promise<atom::ok>();
        auto max_groups =
            static_cast<uint32_t>(self->state.node->opts.max_groups);
        self->request(self->state.store, timeout, atom::join_v, who.uid,
                      std::move(group), max_groups)
            .then(
                [rp](uint32_t) mutable { rp.deliver(atom::ok_v); },
                [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
        return rp;
      },
      [self, timeout](atom::leave, conn_ref& who,
                      std::string& group) -> caf::result<atom::ok> {
        return self->delegate(self->state.store, atom::leave_v, who.uid,
                              std::move(group));
      },
      [self](atom::members,
             std::string& group) -> caf::result<std::vector<std::string>> {
        // One more than the limit tells the caller the list was cut.
        auto limit =
            static_cast<uint32_t>(self->state.node->opts.members_limit + 1);
        return self->delegate(self->state.store, atom::members_v,
                              std::move(group), limit);
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
      // -- peers
      // -----------------------------------------------------------------------
      [self](atom::remote, delivery_batch& batch) {
        auto& st = self->state;
        st.node->metrics.count_remote_in(batch.origin, batch.items.size());
        for (auto& d : batch.items)
          st.deliver_local(d, d.kind == delivery_kind::broadcast ? nullptr
                                                                 : &d.uids);
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
        self->state.peers.erase(peer);
        self->state.outbox.erase(peer);
      },
      [self](caf::flush_atom) {
        auto& st = self->state;
        for (auto& [peer, batch] : st.outbox) {
          auto i = st.peers.find(peer);
          if (i == st.peers.end()) {
            st.undeliverable += batch.items.size();
            continue;
          }
          batch.origin = st.node->node_id;
          st.node->metrics.count_remote(peer, batch.items.size());
          self->send(i->second, atom::remote_v, std::move(batch));
        }
        st.outbox.clear();
      },
      // -- lifecycle
      // -------------------------------------------------------------------
      [self](atom::drain, uint32_t period_ms) -> atom::ok {
        auto& st = self->state;
        std::mt19937 rng{std::random_device{}()};
        std::uniform_int_distribution<uint32_t> spread{0, period_ms};
        for (auto& [id, conn] : st.connections) {
          st.write(conn, std::make_shared<const std::string>(
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
