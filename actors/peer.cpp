#include "actors/peer.hpp"

#include "protocol/frames.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <iterator>

namespace wsc {

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

// -- outgoing: the REGISTRY's deliveries for other nodes ----------------------

void peer_state::route(const delivery& d, const route_table& routes) {
  for (auto& nr : routes.nodes) {
    if (nr.node == cfg.who.id)
      continue; // the REGISTRY delivered these
    // A node without a CAF connection gets it through the RELAY on flush.
    auto copy = d;
    copy.uids = nr.uids;
    copy.seqs = nr.seqs;
    enqueue(nr.node, std::move(copy));
  }
}

void peer_state::broadcast(const delivery& d) {
  // Peers without a CAF connection get it through the RELAY on flush.
  for (auto& [peer, handle] : peers)
    enqueue(peer, d);
  for (auto& peer : cluster_nodes)
    if (peers.count(peer) == 0)
      enqueue(peer, d);
}

caf::result<delivery_report> peer_state::send_to_conn(delivery d) {
  auto target = std::string{frames::node_of_conn(d.to_conn)};
  auto p = peers.find(target);
  if (p == peers.end()) {
    if (!relay || cluster_nodes.count(target) == 0)
      return delivery_report::to_conn(0, "gone");
    // Alive but cut off: the RELAY carries it, at most once, unconfirmed.
    enqueue(target, std::move(d));
    return delivery_report::to_conn(0, "unconfirmed");
  }
  auto rp = self->make_response_promise<delivery_report>();
  self->request(p->second, cfg.request_timeout, atom::deliver_v, std::move(d))
      .then(
          [rp](uint32_t connections) mutable {
            rp.deliver(delivery_report::to_conn(connections, "gone"));
          },
          [rp](caf::error&) mutable {
            rp.deliver(delivery_report::to_conn(0, "unconfirmed"));
          });
  return rp;
}

void peer_state::enqueue(const std::string& peer, delivery d) {
  auto& batch = outbox[peer];
  auto& bytes = outbox_bytes[peer];
  auto size = wire_bytes(d);
  if (batch.items.size() >= max_queued || bytes + size > max_queued_bytes) {
    // A peer that stopped confirming: do not grow forever.
    ++metrics->undeliverable;
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

void peer_state::flush() {
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

void peer_state::send_batch(const std::string& peer, const peer_actor& handle,
                            delivery_batch& pending) {
  size_t bytes = 0;
  auto batch = take_batch(pending, max_batch_bytes, bytes);
  auto& queued = outbox_bytes[peer];
  queued -= std::min(queued, bytes);
  batch.origin = cfg.who.id;
  metrics->count_remote(peer, batch.items.size());
  ++in_flight[peer];
  auto name = peer;
  self->request(handle, cfg.request_timeout, atom::remote_v, std::move(batch))
      .then([this, name](atom::ok) { batch_done(name); },
            [this, name](caf::error& err) {
              log::warn("delivery batch to node {} failed: {}", name,
                        error_message(err));
              // What waits for this peer goes on: it would otherwise wait
              // for the next delivery to that node.
              batch_done(name);
            });
}

void peer_state::batch_done(const std::string& peer) {
  if (in_flight[peer] > 0)
    --in_flight[peer];
  if (auto i = outbox.find(peer);
      i != outbox.end() && !i->second.items.empty() && !flush_scheduled)
    flush();
}

void peer_state::relay_batch(const std::string& peer, delivery_batch batch) {
  if (batch.items.empty())
    return;
  if (!relay) {
    metrics->undeliverable += batch.items.size();
    return;
  }
  batch.origin = cfg.who.id;
  self->send(relay, atom::relay_v, peer, std::move(batch));
}

void peer_state::peer_down(const std::string& peer) {
  peers.erase(peer);
  in_flight.erase(peer);
  outbox_bytes.erase(peer);
  if (auto i = outbox.find(peer); i != outbox.end()) {
    relay_batch(peer, std::move(i->second));
    outbox.erase(i);
  }
}

// -- behaviour ----------------------------------------------------------------

peer_endpoint_actor::behavior_type
peer_endpoint(peer_endpoint_actor::stateful_pointer<peer_state> self,
              peer_config cfg, registry_actor registry,
              discovery_actor discovery,
              std::shared_ptr<node_metrics> metrics) {
  auto& st = self->state;
  st.self = self;
  st.cfg = std::move(cfg);
  st.registry = std::move(registry);
  st.discovery = std::move(discovery);
  st.metrics = std::move(metrics);
  return {
      // -- from peers (published) ---------------------------------------------
      [self](atom::remote, delivery_batch& batch) -> caf::result<atom::ok> {
        // The REGISTRY answers: the peer's credit comes back once the batch
        // is written to the local connections.
        return self->delegate(self->state.registry, atom::remote_v,
                              std::move(batch));
      },
      [self](atom::deliver, delivery& d) -> caf::result<uint32_t> {
        return self->delegate(self->state.registry, atom::deliver_v,
                              std::move(d));
      },
      [self](shutdown_event& ev) {
        // DISCOVERY decides what a peer's SHUTDOWN means for this node.
        self->send(self->state.discovery, std::move(ev));
      },
      [self](atom::ping) -> caf::result<std::string, uint64_t> {
        return {self->state.cfg.who.id, self->state.cfg.who.incarnation};
      },
      [self](atom::hello, std::string& peer, uint64_t incarnation,
             caf::actor& handle) {
        self->send(self->state.discovery, atom::hello_v, std::move(peer),
                   incarnation, caf::actor_cast<peer_actor>(std::move(handle)));
      },
      // -- from the REGISTRY --------------------------------------------------
      [self](atom::route, local_only, delivery& d, route_table& routes) {
        self->state.route(d, routes);
      },
      [self](atom::broadcast, local_only, delivery& d) {
        self->state.broadcast(d);
      },
      [self](atom::send, local_only,
             delivery& d) -> caf::result<delivery_report> {
        return self->state.send_to_conn(std::move(d));
      },
      [self](caf::flush_atom) { self->state.flush(); },
      // -- from DISCOVERY and the node ----------------------------------------
      [self](atom::peer_up, local_only, std::string& peer, peer_actor& handle) {
        self->state.peers[peer] = std::move(handle);
      },
      [self](atom::peer_down, local_only, std::string& peer) {
        self->state.peer_down(peer);
      },
      [self](atom::relay, local_only, relay_actor& relay) {
        self->state.relay = std::move(relay);
      },
      [self](atom::nodes, local_only, std::vector<std::string>& alive) {
        auto& st = self->state;
        st.cluster_nodes.clear();
        for (auto& id : alive)
          if (id != st.cfg.who.id)
            st.cluster_nodes.insert(std::move(id));
      },
  };
}

} // namespace wsc
