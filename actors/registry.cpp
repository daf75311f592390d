#include "actors/registry.hpp"

#include "protocol/frames.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <string_view>
#include <unordered_set>

namespace wsc {

// -- local delivery -----------------------------------------------------------

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
            write(connections.at(conn_id), seq, nullptr, d.msg_id);
          continue;
        }
        write(connections.at(conn_id), seq, frame, d.msg_id);
        ++written;
      }
    }
  }
  metrics->deliveries_local += written;
  if (auto kind = static_cast<size_t>(d.kind);
      kind < metrics->deliveries_by_kind.size())
    metrics->deliveries_by_kind[kind] += written;
  return written;
}

atom::ok registry_state::deliver_batch(const delivery_batch& batch) {
  metrics->count_remote_in(batch.origin, batch.items.size());
  for (auto& d : batch.items) {
    // A peer (or whoever reached the cluster port) is no excuse for
    // undefined behaviour: malformed deliveries are dropped.
    if (auto err = frames::check(d)) {
      if (metrics->rejected_deliveries++ % 1000 == 0)
        log::warn("dropped a delivery from {}: {}", batch.origin.substr(0, 64),
                  error_message(err));
      continue;
    }
    deliver_local(d, d.kind == delivery_kind::broadcast ? nullptr : &d.uids);
  }
  return atom::ok_v;
}

// -- behaviour ----------------------------------------------------------------

void registry_state::init(registry_config config, state_store_actor st,
                          event_bus_actor bus, unread_actor checker,
                          std::shared_ptr<node_metrics> counters) {
  cfg = std::move(config);
  store = std::move(st);
  events = std::move(bus);
  unread = std::move(checker);
  metrics = std::move(counters);
  // The built-in stores answer every request (their I/O has deadlines of
  // its own): no timeout to arm per message. A custom store gets one.
  store_timeout = cfg.custom_store ? caf::duration{cfg.request_timeout}
                                   : caf::duration{caf::infinite};
  // Bursts of twice the rate or of one largest message; the kept bucket
  // refills over inbox-max-age.
  auto budgets_of = [this](uint64_t rate_setting, uint64_t kept_setting,
                           uint32_t publishes) {
    auto rate = static_cast<double>(rate_setting);
    auto burst =
        2.0 * std::max(rate, static_cast<double>(cfg.max_fanout_bytes));
    auto kept = static_cast<double>(kept_setting);
    auto window = std::chrono::duration<double>(cfg.inbox_max_age).count();
    return store_budgets{
        {rate, burst}, {kept / std::max(window, 1.0), kept}, publishes};
  };
  budgets = budgets_of(cfg.stored_bytes_rate, cfg.stored_bytes_kept,
                       store_budgets::max_publishes_in_flight);
  address_budgets = budgets_of(cfg.stored_bytes_rate_per_address,
                               cfg.stored_bytes_kept_per_address,
                               max_address_publishes_in_flight);
  self->set_down_handler([this](caf::down_msg& dm) {
    // A connection actor died without saying goodbye.
    for (auto& [id, conn] : connections)
      if (conn.handle.address() == dm.source) {
        remove(std::string{id});
        return;
      }
  });
}

registry_actor::behavior_type
registry(registry_actor::stateful_pointer<registry_state> self,
         registry_config cfg, state_store_actor store, event_bus_actor events,
         unread_actor unread, std::shared_ptr<node_metrics> metrics) {
  self->state.self = self;
  self->state.init(std::move(cfg), std::move(store), std::move(events),
                   std::move(unread), std::move(metrics));
  return {
      // -- connections --------------------------------------------------------
      [self](atom::register_conn, conn_ref& who, connection_actor& handle,
             sink_ref& sink, int64_t since) -> caf::result<atom::ok> {
        return self->state.register_conn(who, handle, std::move(sink), since);
      },
      [self](atom::unregister, conn_ref& who) { self->state.remove(who.conn); },
      [self](atom::replay, std::string& conn_id) {
        self->state.pump_replay(conn_id);
      },
      // -- messaging ----------------------------------------------------------
      [self](atom::send, delivery& d) -> caf::result<delivery_report> {
        return self->state.send(std::move(d));
      },
      [self](atom::broadcast, delivery& d) -> caf::result<atom::ok> {
        return self->state.broadcast(std::move(d));
      },
      [self](atom::publish, delivery& d) -> caf::result<delivery_report> {
        return self->state.publish(std::move(d));
      },
      [self](atom::read, conn_ref& who, uint64_t seq) -> caf::result<atom::ok> {
        if (who.device.empty())
          return make_error(ec::bad_frame,
                            "read needs a connection with device=<id>");
        return self->delegate(self->state.store, atom::read_v, who.uid,
                              who.device, seq);
      },
      [self](atom::join, conn_ref& who, std::string& group)
          -> caf::result<atom::ok> { return self->state.join(who, group); },
      [self](atom::leave, conn_ref& who, std::string& group)
          -> caf::result<atom::ok> { return self->state.leave(who, group); },
      [self](atom::members,
             std::string& group) -> caf::result<std::vector<std::string>> {
        // One more than the limit tells the caller the list was cut.
        auto limit = static_cast<uint32_t>(self->state.cfg.members_limit + 1);
        return self->delegate(self->state.store, atom::members_v,
                              std::move(group), limit);
      },
      [self](atom::is_member, std::string& group,
             std::string& uid) -> caf::result<bool> {
        return self->delegate(self->state.store, atom::is_member_v,
                              std::move(group), std::move(uid));
      },
      [self](atom::presence,
             std::vector<std::string>& uids) -> caf::result<std::vector<bool>> {
        return self->state.presence(std::move(uids));
      },
      [self](atom::disconnect, std::string& uid,
             uint16_t code) -> caf::result<atom::ok> {
        return self->state.disconnect(uid, code);
      },
      // -- from other nodes (through the PEER or the RELAY) -------------------
      [self](atom::remote, delivery_batch& batch) -> atom::ok {
        return self->state.deliver_batch(batch);
      },
      [self](atom::deliver, delivery& d) -> uint32_t {
        // A `send` with `to_conn` for a connection of this node.
        if (d.to_conn.empty() || frames::check(d))
          return 0;
        return self->state.deliver_local(d, nullptr);
      },
      // -- lifecycle ----------------------------------------------------------
      [self](atom::drain, uint32_t period_ms) -> atom::ok {
        return self->state.drain(period_ms);
      },
      [self](atom::rebind) -> std::vector<binding> {
        return self->state.bindings();
      },
      [self](atom::status) -> uint32_t {
        return static_cast<uint32_t>(self->state.connections.size());
      },
      [self](atom::peer, local_only, peer_endpoint_actor& peer) {
        self->state.peer = std::move(peer);
      },
  };
}

} // namespace wsc
