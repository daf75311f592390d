// The REGISTRY's messaging operations: what a behaviour or the HTTP API
// asks, the store's answer, and the route that follows.

#include "actors/registry.hpp"
#include "flow/handshake_budget.hpp"
#include "protocol/frames.hpp"
#include "protocol/operations.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace wsc {

namespace {

/// The answer to a send whose `idem` an earlier send still holds (being
/// stored): nothing was stored or delivered, so not even locally.
caf::error idem_pending_error() {
  return make_error(ec::unavailable, "an earlier send with this idem is "
                                     "still being stored; send it again "
                                     "later");
}

/// How the first delivery with an idem ended, for the repeats that waited.
idem_waits::outcome idem_outcome_of(const route_table& routes) {
  // Refused (a copy on another node holds the record), or short for some
  // receivers (the record was given back): the repeats try one at a time.
  if (routes.duplicate_of.empty() &&
      (routes.idem_pending || !routes.unavailable.empty()))
    return idem_waits::outcome::given_back;
  return idem_waits::outcome::recorded;
}

/// The refusal of a durable delivery whose sender's budget in `spent` (`who`:
/// the uid's, or its client address's with the options' `suffix`) is spent.
caf::error store_budget_exceeded(const store_budgets& spent,
                                 const std::string& who,
                                 std::string_view suffix,
                                 store_budgets::verdict why) {
  using verdict = store_budgets::verdict;
  auto option = [suffix](const char* name) {
    return std::string{name} + std::string{suffix};
  };
  auto reason =
      why == verdict::too_much_kept
          ? "has stored more bytes than " + option("stored-bytes-kept") +
                " allows per inbox-max-age; try again later"
      : why == verdict::too_many_publishes
          ? "has " + std::to_string(spent.publishes_limit()) +
                " durable publishes waiting for the store; try again shortly"
          : "stores more bytes per second than " + option("stored-bytes-rate") +
                " allows; try again shortly";
  return make_error(ec::rate_limited, who + " " + reason);
}

/// The refusal of a volatile delivery whose sender's `lookups` bucket is in
/// debt or has too many publishes waiting for the store.
caf::error lookup_budget_exceeded(const std::string& uid,
                                  store_budgets::verdict why) {
  auto reason =
      why == store_budgets::verdict::too_many_publishes
          ? "has " + std::to_string(store_budgets::max_publishes_in_flight) +
                " publishes waiting for the store"
          : "looked up more than " +
                std::to_string(
                    static_cast<int>(registry_state::lookups_per_second)) +
                " receivers a second lately";
  return make_error(ec::rate_limited,
                    "'" + uid + "' " + reason + "; try again shortly");
}

/// The receivers a durable message reserves stored bytes for until the
/// store answers (see store_budgets::reserve): a publish's members are
/// known only then.
size_t reserved_receivers(const delivery& d) {
  return d.kind == delivery_kind::group ? 1 : d.uids.size();
}

size_t receivers_of(const route_table& routes) {
  auto n = routes.offline.size();
  for (auto& nr : routes.nodes)
    n += nr.uids.size();
  return n;
}

/// Inboxes a durable message started: the store's count, but at least the
/// copies at seq 1 (a custom store that leaves new_inboxes at 0 is charged
/// as before lives continued: review helper-55, L4).
size_t new_inboxes_of(const route_table& routes) {
  auto first = [](const std::vector<uint64_t>& seqs) {
    return static_cast<size_t>(std::count(seqs.begin(), seqs.end(), 1u));
  };
  auto n = first(routes.offline_seqs);
  for (auto& nr : routes.nodes)
    n += first(nr.seqs);
  return std::max<size_t>(n, routes.new_inboxes);
}

/// A send's report: one entry per uid, its connections on every node
/// added up.
delivery_report report_per_uid(const delivery& d, const route_table& routes) {
  delivery_report report;
  report.msg_id = d.msg_id;
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
  return report;
}

} // namespace

// -- send ---------------------------------------------------------------------

caf::error registry_state::prepare(delivery& d) {
  // What a built-in or the HTTP API made is checked already; an embedder's
  // behaviour may hand anything over, and a payload that is not JSON would
  // reach clients as a broken frame (and other nodes would drop it).
  if (auto err = frames::check(d))
    return err;
  if (!ops::idem_fits(d.idem))
    return make_error(ec::bad_frame, "idem must be at most " +
                                         std::to_string(ops::max_idem_bytes) +
                                         " bytes of UTF-8");
  auto publish = d.kind == delivery_kind::group;
  auto now = store_budgets::clock::now();
  if (d.durable) {
    // Keyed as the connection quota counts addresses (an IPv6 host by its
    // /64; the CONNECTION keys it already, an embedder may not have).
    d.sender_address = cfg.stored_bytes_rate_per_address > 0
                           ? address_key(d.sender_address)
                           : std::string{};
    auto verdict = budgets.check(d.from, now, publish);
    if (verdict != store_budgets::verdict::may)
      return store_budget_exceeded(budgets, "'" + d.from + "'", "", verdict);
    verdict = address_budgets.check(d.sender_address, now, publish);
    if (verdict != store_budgets::verdict::may)
      return store_budget_exceeded(address_budgets, "this client address",
                                   "-per-address", verdict);
    budgets.reserve(d.from, reserved_receivers(d), d.data.size(), publish);
    address_budgets.reserve(d.sender_address, reserved_receivers(d),
                            d.data.size(), publish);
    d.msg_id = make_msg_id();
  } else {
    // What is in flight counts as well: a publish's members are known only
    // from the store's answer, so at most max_publishes_in_flight wait.
    auto verdict = lookups.check(d.from, now, publish);
    if (verdict != store_budgets::verdict::may)
      return lookup_budget_exceeded(d.from, verdict);
    lookups.reserve(d.from, reserved_receivers(d), 0, publish, false);
  }
  if (!d.durable || cfg.idempotency_window.count() <= 0)
    d.idem.clear(); // volatile: at most once anyway, nothing to look up
  return {};
}

void registry_state::settle(const delivery& d) {
  auto publish = d.kind == delivery_kind::group;
  if (d.durable) {
    budgets.release(d.from, reserved_receivers(d), d.data.size(), publish);
    address_budgets.release(d.sender_address, reserved_receivers(d),
                            d.data.size(), publish);
  } else
    lookups.release(d.from, reserved_receivers(d), 0, publish, false);
}

caf::result<delivery_report> registry_state::send(delivery d) {
  if (!d.to_conn.empty())
    return send_to_conn(std::move(d));
  if (auto err = prepare(d))
    return err;
  auto rp = self->make_response_promise<delivery_report>();
  after_earlier_idem(
      std::move(d), rp, [this](delivery d, delivery_rp rp, std::string first) {
        store_send(std::move(d), std::move(rp), std::move(first));
      });
  return rp;
}

void registry_state::store_send(delivery d, delivery_rp rp, std::string first) {
  auto on_routes = [this, rp, d, first](route_table& routes) mutable {
    idem_answered(first, idem_outcome_of(routes));
    if (routes.idem_pending || !routes.duplicate_of.empty())
      settle(d); // nothing stored
    if (routes.idem_pending) {
      rp.deliver(idem_pending_error());
      return;
    }
    if (!routes.duplicate_of.empty()) {
      // The sender said this before (same idem): the earlier message was
      // stored for, and routed to, the same receivers.
      delivery_report report;
      report.msg_id = std::move(routes.duplicate_of);
      report.duplicate = true;
      report.uids = std::move(d.uids);
      report.connections.assign(report.uids.size(), 0);
      report.stored.assign(report.uids.size(), true);
      rp.deliver(std::move(report));
      return;
    }
    auto report = report_per_uid(d, routes);
    dispatch(std::move(d), std::move(routes), report.uids.size());
    rp.deliver(std::move(report));
  };
  auto on_error = [this, rp, d, first](caf::error& err) mutable {
    idem_answered(first, idem_waits::outcome::failed);
    // Without the store only this node's connections are known: serve them
    // (at most once, nothing stored) and tell the sender the rest was not.
    settle(d);
    d.durable = false;
    auto local = deliver_local(d, &d.uids);
    rp.deliver(make_error(ec::unavailable, "state store unreachable (" +
                                               error_message(err) +
                                               "); not stored, delivered to " +
                                               std::to_string(local) +
                                               " local connection(s) only"));
  };
  if (d.durable) {
    self->request(store, store_timeout, atom::append_v, d)
        .then(on_routes, on_error);
  } else {
    self->request(store, store_timeout, atom::route_v, d.uids)
        .then(on_routes, on_error);
  }
}

caf::result<delivery_report> registry_state::send_to_conn(delivery d) {
  // One connection: volatile, no store round trip (its node is in its id).
  d.durable = false;
  d.idem.clear();
  d.uids.clear();
  if (auto err = frames::check(d))
    return err;
  if (frames::node_of_conn(d.to_conn) == cfg.who.id)
    return delivery_report::to_conn(deliver_local(d, nullptr), "gone");
  return self->delegate(peer, atom::send_v, local_only{}, std::move(d));
}

caf::result<delivery_report> registry_state::publish(delivery d) {
  d.kind = delivery_kind::group;
  if (auto err = prepare(d))
    return err;
  auto rp = self->make_response_promise<delivery_report>();
  after_earlier_idem(
      std::move(d), rp, [this](delivery d, delivery_rp rp, std::string first) {
        store_publish(std::move(d), std::move(rp), std::move(first));
      });
  return rp;
}

void registry_state::store_publish(delivery d, delivery_rp rp,
                                   std::string first) {
  auto on_routes = [this, rp, d, first](route_table& routes) mutable {
    idem_answered(first, idem_outcome_of(routes));
    delivery_report report;
    report.msg_id = d.msg_id;
    if (routes.idem_pending || !routes.duplicate_of.empty())
      settle(d); // nothing stored
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
    report.unavailable = routes.unavailable;
    auto receivers = receivers_of(routes);
    // The store checked a durable publish against every member; a volatile
    // one is checked here, once its members are known.
    if (!d.durable) {
      if (auto err = frames::check_fanout(receivers, d.data.size(),
                                          cfg.max_fanout_bytes)) {
        settle(d);
        lookups.charge(d.from, receivers, 0);
        rp.deliver(std::move(err));
        return;
      }
    }
    dispatch(std::move(d), std::move(routes), receivers);
    rp.deliver(std::move(report));
  };
  auto on_error = [this, rp, d, first](caf::error& err) mutable {
    idem_answered(first, idem_waits::outcome::failed);
    settle(d);
    rp.deliver(std::move(err));
  };
  if (d.durable) {
    self->request(store, store_timeout, atom::group_append_v, d)
        .then(on_routes, on_error);
  } else {
    self->request(store, store_timeout, atom::group_route_v, d.group, d.from)
        .then(on_routes, on_error);
  }
}

// -- repeats of an idem -------------------------------------------------------

void registry_state::after_earlier_idem(
    delivery d, delivery_rp rp,
    std::function<void(delivery, delivery_rp, std::string)> go) {
  // prepare() left an idem only on durable deliveries that look it up.
  if (d.idem.empty())
    return go(std::move(d), std::move(rp), std::string{});
  auto key = idem_waits::key(d.from, d.idem);
  switch (idems.enter(key)) {
  case idem_waits::verdict::first:
    return go(std::move(d), std::move(rp), std::move(key));
  case idem_waits::verdict::waits:
    idems.wait(key, [this, go, d = std::move(d),
                     rp = std::move(rp)](idem_waits::outcome how) mutable {
      switch (how) {
      case idem_waits::outcome::recorded:
        // Acked with the first's msg_id (all of them at once).
        return go(std::move(d), std::move(rp), std::string{});
      case idem_waits::outcome::given_back:
        // Stored again by the first to claim the record; the others wait
        // for that one in turn.
        return after_earlier_idem(std::move(d), std::move(rp), std::move(go));
      case idem_waits::outcome::failed:
        // The first was delivered here at most once without the store:
        // not this one too.
        settle(d);
        rp.deliver(make_error(ec::unavailable,
                              "an earlier send with this idem could not be "
                              "stored; nothing of this one was stored or "
                              "delivered: send it again"));
        return;
      }
    });
    return;
  case idem_waits::verdict::refused:
    settle(d);
    rp.deliver(idem_pending_error());
    return;
  }
}

void registry_state::idem_answered(const std::string& first,
                                   idem_waits::outcome how) {
  if (first.empty())
    return;
  for (auto& resume : idems.done(first))
    resume(how);
}

caf::result<atom::ok> registry_state::broadcast(delivery d) {
  d.kind = delivery_kind::broadcast;
  d.uids.clear();
  d.to_conn.clear();
  if (auto err = frames::check(d))
    return err;
  deliver_local(d, nullptr);
  // The PEER knows the other nodes, with or without a CAF connection.
  self->send(peer, atom::broadcast_v, local_only{}, std::move(d));
  return atom::ok_v;
}

// -- after the store answered -------------------------------------------------

void registry_state::dispatch(delivery d, route_table routes,
                              size_t receivers) {
  settle(d);
  if (d.durable) {
    auto new_inboxes = new_inboxes_of(routes);
    budgets.charge(d.from, receivers, d.data.size(), new_inboxes,
                   d.idem.size());
    address_budgets.charge(d.sender_address, receivers, d.data.size(),
                           new_inboxes, d.idem.size());
  } else
    lookups.charge(d.from, receivers, 0);
  d.idem.clear(); // the receivers need no idem
  watch_unread(d, routes);
  route(std::move(d), std::move(routes));
}

void registry_state::route(delivery d, route_table routes) {
  bool remote = false;
  for (auto& nr : routes.nodes) {
    if (nr.node != cfg.who.id) {
      remote = true;
      continue;
    }
    auto local = d;
    local.seqs = nr.seqs;
    deliver_local(local, &nr.uids);
  }
  if (remote)
    self->send(peer, atom::route_v, local_only{}, std::move(d),
               std::move(routes));
}

void registry_state::watch_unread(const delivery& d,
                                  const route_table& routes) {
  if (!d.durable || !unread)
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
    self->send(unread, std::move(w));
}

std::string registry_state::make_msg_id() {
  return cfg.who.id + "-" + std::to_string(cfg.who.incarnation) + "-" +
         std::to_string(++next_msg);
}

// -- groups, presence, disconnect ---------------------------------------------

caf::result<atom::ok> registry_state::join(const conn_ref& who,
                                           const std::string& group) {
  auto rp = self->make_response_promise<atom::ok>();
  auto max_groups = static_cast<uint32_t>(cfg.max_groups);
  self->request(store, store_timeout, atom::join_v, who.uid, group, max_groups)
      .then(
          [this, rp, uid = who.uid, group](uint32_t) mutable {
            self->send(events, join_event{uid, group});
            rp.deliver(atom::ok_v);
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
  return rp;
}

caf::result<atom::ok> registry_state::leave(const conn_ref& who,
                                            const std::string& group) {
  auto rp = self->make_response_promise<atom::ok>();
  self->request(store, store_timeout, atom::leave_v, who.uid, group)
      .then(
          [this, rp, uid = who.uid, group](atom::ok) mutable {
            self->send(events, leave_event{uid, group});
            rp.deliver(atom::ok_v);
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
  return rp;
}

caf::result<std::vector<bool>>
registry_state::presence(std::vector<std::string> uids) {
  auto rp = self->make_response_promise<std::vector<bool>>();
  self->request(store, store_timeout, atom::route_v, uids)
      .then(
          [rp, uids](route_table& routes) mutable {
            // One pass over each list (asked x online was quadratic: 1,000
            // uids asked of 1,000 online took a loop's whole core).
            std::unordered_set<std::string_view> bound;
            for (auto& nr : routes.nodes)
              bound.insert(nr.uids.begin(), nr.uids.end());
            std::vector<bool> online(uids.size(), false);
            for (size_t i = 0; i < uids.size(); ++i)
              online[i] = bound.count(uids[i]) > 0;
            rp.deliver(std::move(online));
          },
          [rp](caf::error& err) mutable {
            rp.deliver(make_error(ec::unavailable, error_message(err)));
          });
  return rp;
}

caf::result<atom::ok> registry_state::disconnect(const std::string& uid,
                                                 uint16_t code) {
  auto rp = self->make_response_promise<atom::ok>();
  self->request(store, store_timeout, atom::route_v,
                std::vector<std::string>{uid})
      .then(
          [this, rp, code](route_table& routes) mutable {
            delivery d;
            d.kind = delivery_kind::disconnect;
            d.ts = code;
            route(std::move(d), std::move(routes));
            rp.deliver(atom::ok_v);
          },
          [rp](caf::error& err) mutable {
            rp.deliver(make_error(ec::unavailable, error_message(err)));
          });
  return rp;
}

} // namespace wsc
