#include "actors/discovery.hpp"

#include "config/options.hpp"
#include "protocol/frames.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

namespace wsc {

void discovery_state::heartbeat() {
  self_info.connections =
      static_cast<uint32_t>(health->open_connections.load());
  self_info.last_heartbeat_ms = frames::now_ms();
  auto sent = std::chrono::steady_clock::now();
  self->request(store, cfg.request_timeout, atom::node_v, self_info)
      .then(
          [this, sent](bool fresh) {
            metrics->observe_store_rtt(
                std::chrono::duration<double, std::milli>(
                    std::chrono::steady_clock::now() - sent)
                    .count());
            // The store lost this node's entry, was unreachable, or (Redis
            // Cluster) failed over to a replica since the last heartbeat:
            // it may have lost bindings too. Rebinding is idempotent.
            if (!health->store_healthy || (fresh && heartbeats > 0)) {
              // Every lease ran out while the store was away, or (a
              // failover) the leases on the failed shard did while its
              // replica took over, though this node's own shard answered
              // all along: give the peers a full timeout to renew theirs
              // before judging them.
              claims_allowed_after = frames::now_ms() +
                                     cfg.node_timeout.count() +
                                     cfg.heartbeat.count();
            }
            if (fresh)
              write_back();
            else if (!health->store_healthy || write_back_due)
              retry_write_back();
            if (fresh && heartbeats > 0)
              reintroduce();
            ++heartbeats;
            if (cfg.clustered)
              read_nodes();
          },
          [this](caf::error& err) {
            if (health->store_healthy)
              log::error("state store unreachable: {}", error_message(err));
            health->store_healthy = false;
          });
}

void discovery_state::read_nodes() {
  // A store that fails now (e.g. Redis went away since the heartbeat) is
  // the heartbeat's business: without an error handler the error would end
  // this actor, and with it the node.
  self->request(store, cfg.request_timeout, atom::nodes_v)
      .then([this](
                std::vector<node_info>& nodes) { reconcile(std::move(nodes)); },
            [this](caf::error& err) {
              // Ids written into the store by others: it read a sample and
              // removes the ids without an entry until all fit in a read.
              if (auto sample = sample_of(err)) {
                log::debug("the store lists more than {} node ids; read "
                           "{} entries",
                           max_node_ids, sample->size());
                reconcile(std::move(*sample), false);
                return;
              }
              log::debug("reading the nodes failed: {}", error_message(err));
            });
}

void discovery_state::reintroduce() {
  // The store lost this node's entry (a peer claimed it while it was alive,
  // or the store lost its data, e.g. in a failover): peers that dropped it
  // take it back. Peers that kept it ignore the repeated hello.
  log::warn("this node's entry may be gone from the state store (lost, or "
            "a failover); re-announcing it to {} peers",
            peers.size());
  for (auto& [id, peer] : peers)
    if (peer.handle)
      self->send(peer.handle, atom::hello_v, cfg.who.id, cfg.who.incarnation,
                 caf::actor_cast<caf::actor>(endpoint));
}

void discovery_state::write_back() {
  // One at a time; one asked for meanwhile follows, as the bindings it must
  // restore may have been read before the loss it answers.
  if (writing_back) {
    write_back_due = true;
    return;
  }
  writing_back = true;
  write_back_due = false;
  auto failed = [this](caf::error& err) {
    writing_back = false;
    write_back_due = true; // retried at a later heartbeat
    ++write_back_failures;
    write_back_skips = (1u << std::min(write_back_failures - 1, 5u)) - 1;
    log::warn("writing back this node's bindings failed ({} in a row): {}",
              write_back_failures, error_message(err));
  };
  auto timeout = cfg.request_timeout;
  self->request(registry, timeout, atom::rebind_v)
      .then(
          [this, timeout, failed](std::vector<binding>& bindings) {
            auto n = bindings.size();
            // The store writes every binding: give a large node time for
            // that on top of the round trip (20 µs each, a pipelined write
            // takes a few).
            auto store_timeout = timeout + std::chrono::microseconds(20) *
                                               static_cast<int64_t>(n);
            self->request(store, store_timeout, atom::rebind_v,
                          std::move(bindings))
                .then(
                    [this, n](atom::ok) {
                      writing_back = false;
                      write_back_failures = 0;
                      write_back_skips = 0;
                      if (!health->store_healthy || n > 0)
                        log::info("state store in sync: wrote back {} "
                                  "bindings",
                                  n);
                      health->store_healthy = true;
                      if (write_back_due)
                        write_back();
                    },
                    failed);
          },
          failed);
}

void discovery_state::retry_write_back() {
  if (write_back_skips > 0)
    --write_back_skips;
  else
    write_back();
}

void discovery_state::reconcile(std::vector<node_info> nodes, bool complete) {
  if (stopping)
    return;
  auto now = frames::now_ms();
  auto timeout_ms = static_cast<int64_t>(cfg.node_timeout.count());
  std::set<std::string> listed;
  std::vector<std::string> alive;
  for (auto& info : nodes) {
    if (info.id == cfg.who.id)
      continue;
    // Entries written into the store by others must not grow the table
    // without bound either (a sample lists other ids each time).
    if (peers.size() >= max_peers && peers.count(info.id) == 0)
      continue;
    listed.insert(info.id);
    metrics->set_peer_heartbeat_age(info.id, now - info.last_heartbeat_ms);
    auto& peer = peers[info.id];
    if (peer.info.incarnation != info.incarnation) {
      // A new node, or a restart under the same id.
      if (peer.handle)
        self->send(endpoint, atom::peer_down_v, local_only{}, info.id);
      peer = known_peer{};
    }
    peer.info = info;
    if (now - info.last_heartbeat_ms > timeout_ms &&
        now >= claims_allowed_after) {
      // Silent: exactly one survivor wins the claim and cleans up.
      auto id = info.id;
      auto inc = info.incarnation;
      self->request(store, cfg.request_timeout, atom::claim_v, id, inc,
                    timeout_ms)
          .then(
              [this, id, inc](bool claimed, std::vector<std::string>& offline) {
                if (!claimed)
                  return;
                log::warn(
                    "node {} silent for longer than {}ms: declared down ({} "
                    "uids offline)",
                    id, cfg.node_timeout.count(), offline.size());
                // This node won the claim: it alone tells that these uids went
                // offline with the dead node.
                for (auto& uid : offline)
                  self->send(events, presence_event{std::move(uid), false,
                                                    "node_lost"});
                shutdown_event ev{id, "timeout"};
                for (auto& [pid, p] : peers)
                  if (pid != id && p.handle)
                    self->send(p.handle, ev);
                peer_gone(id, inc, "timeout");
              },
              [id](caf::error& err) {
                // The next heartbeat's sweep claims it again.
                log::debug("claim of node {} failed: {}", id,
                           error_message(err));
              });
      continue;
    }
    alive.push_back(info.id);
    // One side of each pair dials: the node with the smaller id.
    if (!peer.handle && !peer.connecting && cfg.who.id < info.id)
      connect(info);
  }
  if (!complete) {
    // A sample: the peers it missed stay as they are.
    for (auto& [id, peer] : peers)
      if (listed.count(id) == 0)
        alive.push_back(id);
  }
  // Broadcasts go to these, through the RELAY where the link is down.
  self->send(endpoint, atom::nodes_v, local_only{}, std::move(alive));
  if (!complete)
    return;
  // Entries that left the store: removed by a survivor's claim or a graceful
  // stop (both also send SHUTDOWN), or lost by the store itself. A peer whose
  // CAF connection is alive re-registers at its next heartbeat; it is only
  // given up when the connection is gone or it stays unlisted too long.
  for (auto i = peers.begin(); i != peers.end();) {
    auto& [id, peer] = *i;
    if (listed.count(id) > 0) {
      peer.missing_since = 0;
      ++i;
      continue;
    }
    if (peer.missing_since == 0)
      peer.missing_since = now;
    if (peer.handle && now - peer.missing_since <= 2 * timeout_ms) {
      ++i;
      continue;
    }
    auto gone = id;
    auto inc = peer.info.incarnation;
    ++i;
    peer_gone(gone, inc, "timeout");
  }
}

void discovery_state::connect(const node_info& info) {
  auto ep = parse_endpoint(info.cluster);
  if (!ep) {
    log::warn("node {} advertises a bad cluster address '{}'", info.id,
              info.cluster);
    return;
  }
  auto& peer = peers[info.id];
  peer.connecting = true;
  auto& sys = self->home_system();
  // With cluster-tls-* the middleman's connections speak TLS
  // (net/cluster_tls.hpp).
  auto mm = sys.middleman().actor_handle();
  auto id = info.id;
  auto inc = info.incarnation;
  self->request(mm, cfg.request_timeout, caf::connect_atom::value, ep->host,
                ep->port)
      .then(
          [this, id, inc](const caf::node_id&, caf::strong_actor_ptr& ptr,
                          const std::set<std::string>&) {
            auto i = peers.find(id);
            if (i == peers.end() || i->second.info.incarnation != inc || !ptr)
              return;
            auto handle = caf::actor_cast<peer_actor>(std::move(ptr));
            // Introduce this node: the peer routes back over this connection
            // instead of dialing a second one.
            self->send(handle, atom::hello_v, cfg.who.id, cfg.who.incarnation,
                       caf::actor_cast<caf::actor>(endpoint));
            attach(id, inc, std::move(handle));
          },
          [this, id](caf::error& err) {
            if (auto i = peers.find(id); i != peers.end())
              i->second.connecting = false;
            log::debug("cannot reach node {} yet: {}", id, error_message(err));
          });
}

void discovery_state::attach(const std::string& id, uint64_t incarnation,
                             peer_actor handle) {
  auto& peer = peers[id];
  if (peer.info.incarnation != incarnation) {
    // Dialed us before this node saw it in the store.
    if (peer.handle)
      self->demonitor(peer.handle.address());
    peer = known_peer{};
    peer.info.id = id;
    peer.info.incarnation = incarnation;
  }
  peer.connecting = false;
  if (peer.handle == handle)
    return;
  if (peer.handle)
    self->demonitor(peer.handle.address());
  peer.handle = std::move(handle);
  self->monitor(peer.handle);
  // Alive after all (e.g. claimed during a store outage): a later death is
  // reported again.
  reported_down.erase({id, incarnation});
  self->send(endpoint, atom::peer_up_v, local_only{}, id, peer.handle);
  if (!peer.announced) {
    peer.announced = true;
    log::info("DISCOVER node {}", id);
    cluster_events->record("DISCOVER", id);
    self->send(events, discover_event{id});
  } else {
    log::info("connected to node {} again", id);
  }
}

void discovery_state::peer_gone(const std::string& id, uint64_t incarnation,
                                const std::string& reason) {
  auto i = peers.find(id);
  if (i != peers.end()) {
    if (i->second.handle)
      self->demonitor(i->second.handle.address());
    peers.erase(i);
  }
  self->send(endpoint, atom::peer_down_v, local_only{}, id);
  metrics->forget_peer(id);
  if (!reported_down.emplace(id, incarnation).second)
    return;
  if (reported_down.size() > max_peers)
    reported_down.erase(reported_down.begin()); // bounded; any one may go
  log::info("SHUTDOWN node {} ({})", id, reason);
  cluster_events->record("SHUTDOWN", id, reason);
  self->send(events, shutdown_event{id, reason});
}

discovery_actor::behavior_type
discovery(discovery_actor::stateful_pointer<discovery_state> self,
          discovery_config cfg, state_store_actor store,
          registry_actor registry, event_bus_actor events,
          node_health_ptr health, std::shared_ptr<node_metrics> metrics,
          std::shared_ptr<cluster_event_log> cluster_events) {
  auto& st = self->state;
  st.self = self;
  st.cfg = std::move(cfg);
  st.store = std::move(store);
  st.registry = std::move(registry);
  st.events = std::move(events);
  st.health = std::move(health);
  st.metrics = std::move(metrics);
  st.cluster_events = std::move(cluster_events);
  st.self_info =
      node_info{st.cfg.who.id, st.cfg.listen, {}, st.cfg.who.incarnation, 0, 0};
  self->set_down_handler([self](caf::down_msg& dm) {
    // The CAF connection to a peer broke. Stop routing to it and look at the
    // store at once: only a silent heartbeat declares the node down.
    auto& st = self->state;
    for (auto& [id, peer] : st.peers)
      if (peer.handle && peer.handle.address() == dm.source) {
        log::info("lost the connection to node {}; checking its heartbeat", id);
        peer.handle = nullptr;
        self->send(st.endpoint, atom::peer_down_v, local_only{}, id);
        break;
      }
    if (!st.stopping && st.cfg.clustered)
      st.read_nodes();
  });
  return {
      [self](atom::peer, local_only, peer_endpoint_actor& peer) {
        self->state.endpoint = std::move(peer);
      },
      [self](atom::start, std::string& cluster_address) {
        auto& st = self->state;
        if (st.started)
          return;
        st.started = true;
        st.self_info.cluster = std::move(cluster_address);
        self->send(self, atom::tick_v);
      },
      [self](atom::tick) {
        auto& st = self->state;
        if (st.stopping)
          return;
        st.heartbeat();
        self->delayed_send(self, st.cfg.heartbeat, atom::tick_v);
      },
      [self](atom::hello, std::string& id, uint64_t incarnation,
             peer_actor& handle) {
        auto& st = self->state;
        if (st.stopping || id == st.cfg.who.id)
          return;
        // A cluster has a few nodes: a flood of hellos with invented ids
        // must not grow the table without bound.
        if (st.peers.size() >= max_peers && st.peers.count(id) == 0)
          return;
        st.attach(id, incarnation, std::move(handle));
      },
      [self](shutdown_event& ev) {
        auto& st = self->state;
        auto i = st.peers.find(ev.node);
        // Unknown: gone and told already (a repeat, or a survivor's echo),
        // or never seen (no DISCOVER, so no SHUTDOWN either; an invented id
        // must not grow reported_down).
        if (i == st.peers.end())
          return;
        st.peer_gone(ev.node, i->second.info.incarnation, ev.reason);
      },
      [self](atom::shutdown) -> caf::result<atom::ok> {
        auto& st = self->state;
        st.stopping = true;
        shutdown_event ev{st.cfg.who.id, "graceful"};
        for (auto& [id, peer] : st.peers)
          if (peer.handle)
            self->send(peer.handle, ev);
        auto rp = self->make_response_promise<atom::ok>();
        self->request(st.store, st.cfg.request_timeout, atom::shutdown_v,
                      st.cfg.who.id, st.cfg.who.incarnation)
            .then(
                [self, rp](std::vector<std::string>& offline) mutable {
                  // Connections the drain did not close in time.
                  for (auto& uid : offline)
                    self->send(self->state.events,
                               presence_event{std::move(uid), false, "closed"});
                  rp.deliver(atom::ok_v);
                },
                [rp](caf::error& err) mutable {
                  log::warn("could not remove this node's state: {}",
                            error_message(err));
                  rp.deliver(atom::ok_v);
                });
        return rp;
      },
  };
}

} // namespace wsc
