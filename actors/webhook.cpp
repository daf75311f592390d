#include "actors/webhook.hpp"

#include "actors/event_bus.hpp"
#include "protocol/error.hpp"
#include "protocol/frames.hpp"
#include "util/hmac.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <iterator>
#include <utility>

namespace wsc {

// -- pure parts ---------------------------------------------------------------

namespace {

/// `uid`, a NUL, `tag` and `rest`: names hold no NUL (protocol/names), so
/// two keys are equal only if their parts are.
std::string uid_key(std::string_view uid, std::string_view tag,
                    std::string_view rest) {
  std::string key;
  key.reserve(uid.size() + 1 + tag.size() + rest.size());
  key.append(uid).push_back('\0');
  key.append(tag).append(rest);
  return key;
}

} // namespace

std::string membership_key(std::string_view uid, std::string_view group) {
  return uid_key(uid, {}, group);
}

std::string unread_key(std::string_view uid, std::string_view from,
                       std::string_view group) {
  return group.empty() ? uid_key(uid, "f", from) : uid_key(uid, "g", group);
}

void webhook_queue::remove_indexed(webhook_kind kind, const std::string& key) {
  auto& queued = index_of(kind);
  if (auto i = queued.find(key); i != queued.end()) {
    auto pos = i->second;
    queued.erase(i); // before the item its key views
    bytes_ -= cost(*pos);
    items_.erase(pos);
  }
}

auto webhook_queue::push(webhook_item item, size_t* removed) -> pushed {
  bool paired = item.kind != webhook_kind::other;
  // Coalescing first: in a full queue it frees room instead of dropping the
  // new event (an `offline` lost leaves a uid online).
  if (paired && items_.size() >= coalesce_from_) {
    // A uid's presence, a membership, or a uid's unread messages: the
    // latest replaces what is queued of it. A presence's or membership's
    // two events may come from different nodes (or a join may repeat one
    // already made), so this node's queue need not alternate, and
    // cancelling could leave the backend with a stale state.
    std::optional<std::pair<webhook_kind, webhook_kind>> state;
    if (item.kind == webhook_kind::online || item.kind == webhook_kind::offline)
      state.emplace(webhook_kind::online, webhook_kind::offline);
    else if (item.kind == webhook_kind::joined ||
             item.kind == webhook_kind::left)
      state.emplace(webhook_kind::joined, webhook_kind::left);
    else if (item.kind == webhook_kind::unread)
      state.emplace(webhook_kind::unread, webhook_kind::unread);
    if (state) {
      auto before = items_.size();
      remove_indexed(state->first, item.key);
      remove_indexed(state->second, item.key); // unread: finds nothing more
      if (removed)
        *removed = before - items_.size();
    } else if (item.kind == webhook_kind::logged_out) {
      // A connection has one register and one logout: the pair cancels.
      auto before = items_.size();
      remove_indexed(webhook_kind::registered, item.key);
      if (items_.size() < before) {
        if (removed)
          *removed = 1;
        return pushed::coalesced;
      }
    }
  }
  if (items_.size() >= max_events_ || bytes_ + cost(item) > max_bytes_)
    return pushed::full;
  bytes_ += cost(item);
  items_.push_back(std::move(item));
  if (paired) {
    auto pos = std::prev(items_.end());
    auto& index = index_of(pos->kind);
    // Erase, then insert: an assignment would keep the older item's key
    // view, which dangles once that item leaves.
    index.erase(pos->key);
    index.emplace(pos->key, pos);
  }
  return pushed::queued;
}

void webhook_queue::unindex(item_list::iterator pos) {
  if (pos->kind == webhook_kind::other)
    return;
  auto& index = index_of(pos->kind);
  if (auto i = index.find(pos->key); i != index.end() && i->second == pos)
    index.erase(i);
}

std::vector<webhook_item> webhook_queue::take(size_t n) {
  std::vector<webhook_item> result;
  while (!items_.empty() && result.size() < n) {
    auto front = items_.begin();
    unindex(front);
    bytes_ -= cost(*front);
    result.push_back(std::move(*front));
    items_.pop_front();
  }
  return result;
}

size_t webhook_queue::give_back(std::vector<webhook_item> batch, int64_t now_ms,
                                int64_t window_ms) {
  size_t dropped = 0;
  // Back to the front in the original order: walk the batch backwards.
  for (auto i = batch.rbegin(); i != batch.rend(); ++i) {
    if (now_ms - i->since_ms >= window_ms) {
      ++dropped;
      continue;
    }
    // Not indexed: the backend may have seen it, so it must not coalesce.
    i->kind = webhook_kind::other;
    i->key.clear();
    bytes_ += cost(*i);
    items_.push_front(std::move(*i));
  }
  return dropped;
}

uint64_t log_throttle::due(time_point now) {
  if (pending_ == 0 || (last_line_ && now - *last_line_ < interval_))
    return 0;
  last_line_ = now;
  return std::exchange(pending_, 0);
}

std::string webhook_body(const std::vector<webhook_item>& batch,
                         int64_t time_ms) {
  std::string body =
      "{\"time_ms\":" + std::to_string(time_ms) + ",\"events\":[";
  for (size_t i = 0; i < batch.size(); ++i) {
    if (i > 0)
      body += ',';
    body += batch[i].json;
  }
  body += "]}";
  return body;
}

std::string webhook_signature(std::string_view secret, std::string_view body) {
  static constexpr char digits[] = "0123456789abcdef";
  auto mac = hmac_sha256(secret, body);
  std::string result = "sha256=";
  for (unsigned char c : mac) {
    result += digits[c >> 4];
    result += digits[c & 0xf];
  }
  return result;
}

std::chrono::milliseconds webhook_backoff(std::chrono::milliseconds base,
                                          uint32_t failures, double jitter,
                                          std::chrono::milliseconds cap) {
  auto ms = static_cast<double>(base.count());
  for (uint32_t i = 1; i < failures && ms < cap.count(); ++i)
    ms *= 2;
  ms = std::min(ms, static_cast<double>(cap.count()));
  jitter = std::clamp(jitter, 0.0, 1.0);
  return std::chrono::milliseconds{
      std::max<int64_t>(1, std::llround(ms * (0.5 + jitter / 2)))};
}

uint32_t webhook_mask(const std::vector<std::string>& names) {
  uint32_t mask = 0;
  for (auto& name : names) {
    if (name == "online" || name == "offline")
      mask |= on_presence;
    else if (name == "register")
      mask |= on_register;
    else if (name == "logout")
      mask |= on_logout;
    else if (name == "join")
      mask |= on_join;
    else if (name == "leave")
      mask |= on_leave;
    else if (name == "unread")
      mask |= on_unread;
  }
  return mask;
}

// -- WEBHOOK ------------------------------------------------------------------

namespace {

/// JSON text of an event's fields. Names can come from the state store,
/// which another node (or whoever can write Redis) fills: text that is not
/// UTF-8 is replaced instead of thrown about (a throw would end the actor
/// and stop the node).
std::string text_of(const nlohmann::json& fields) {
  return fields.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

/// The fields of a connection's event.
std::string conn_fields(const conn_ref& who) {
  return text_of(
      nlohmann::json{{"uid", who.uid}, {"conn", who.conn}, {"node", who.node}});
}

} // namespace

void webhook_state::add(const char* name, std::string fields, webhook_kind kind,
                        std::string key) {
  if (std::find(events.begin(), events.end(), name) == events.end())
    return;
  // `fields` is a JSON object: splice `id` and `name` in front.
  std::string json =
      "{\"id\":" +
      text_of(nlohmann::json(who.id + "-" + std::to_string(who.incarnation) +
                             "-" + std::to_string(++next_id))) +
      ",\"name\":\"" + name + "\"";
  if (fields.size() > 2)
    json += "," + fields.substr(1);
  else
    json += "}";
  size_t removed = 0;
  switch (queue.push(
      webhook_item{std::move(json), frames::now_ms(), kind, std::move(key)},
      &removed)) {
  case webhook_queue::pushed::queued:
    metrics->webhook_coalesced += removed; // replaced by this one
    break;
  case webhook_queue::pushed::full:
    metrics->webhook_coalesced += removed;
    dropped(1, "the queue is full");
    break;
  case webhook_queue::pushed::coalesced:
    metrics->webhook_coalesced += removed + 1; // this event and its pair
    break;
  }
  pump();
}

void webhook_state::dropped(size_t n, std::string why) {
  metrics->webhook_dropped += n;
  drop_reason = std::move(why);
  drop_log.add(n);
  log_drops();
}

void webhook_state::log_drops() {
  if (auto n = drop_log.due(self->clock().now())) {
    log::warn("webhook: dropped {} event(s) (at most one line a second), the "
              "last: {} ({} queued)",
              n, drop_reason, queue.size());
  } else if (drop_log.pending() > 0 && !drop_log_due) {
    drop_log_due = true;
    self->delayed_send(self, std::chrono::seconds{1}, atom::check_v);
  }
}

void webhook_state::pump() {
  if (posting || backing_off || queue.empty())
    return;
  if (queue.size() >= max_batch) {
    post(); // a full batch goes at once (a pending flush finds it sent)
    return;
  }
  if (!waiting) {
    waiting = true;
    self->delayed_send(self, batch_delay, caf::flush_atom_v);
  }
}

void webhook_state::post() {
  in_flight = queue.take(max_batch);
  if (in_flight.empty())
    return;
  posting = true;
  auto body = webhook_body(in_flight, frames::now_ms());
  http_client::headers hdrs{
      {"X-Wscluster-Signature", webhook_signature(secret, body)}};
  auto id = ++attempt;
  auto addr = self->address();
  client->post(url, std::move(hdrs), std::move(body), post_timeout,
               [addr, id](http_result r) {
                 // The client's thread: hand the result to the actor.
                 if (auto hdl = caf::actor_cast<caf::actor>(addr))
                   caf::anon_send(hdl, atom::posted_v, id, r.ok,
                                  std::move(r.error));
               });
}

void webhook_state::posted(uint64_t id, bool ok, const std::string& error) {
  if (id != attempt || !posting)
    return;
  posting = false;
  log_drops(); // what the throttle held back, once drops stop
  if (ok) {
    metrics->webhook_sent += in_flight.size();
    if (failures > 0)
      log::info("webhook: {} answers again after {} failed POST(s)", url.host,
                failures);
    failures = 0;
    in_flight.clear();
    if (!queue.empty())
      post(); // they waited already
    check_drain();
    return;
  }
  ++failures;
  auto n = in_flight.size();
  auto lost =
      queue.give_back(std::move(in_flight), frames::now_ms(), retry_window_ms);
  in_flight.clear();
  metrics->webhook_retried += n - lost;
  if (failures == 1)
    log::warn("webhook: POST to {} failed: {}; retrying", url.host, error);
  if (lost > 0)
    dropped(lost, "retried for " + std::to_string(retry_window_ms) +
                      "ms, last error: " + error);
  std::uniform_real_distribution<double> dist{0.0, 1.0};
  auto delay = webhook_backoff(retry_base, failures, dist(rng));
  backing_off = true;
  self->delayed_send(self, delay, atom::tick_v);
  check_drain();
}

void webhook_state::check_drain() {
  if (drains.empty())
    return;
  auto now = frames::now_ms();
  bool settled = now >= drain_started_ms + batch_delay.count() / 2;
  if ((settled && queue.empty() && !posting) || now >= drain_deadline_ms) {
    if (!queue.empty() || posting)
      log::warn("webhook: stopping with {} event(s) not sent",
                queue.size() + in_flight.size());
    for (auto& rp : drains)
      rp.deliver(atom::ok_v);
    drains.clear();
  }
}

webhook_actor::behavior_type
webhook(webhook_actor::stateful_pointer<webhook_state> self, webhook_config cfg,
        node_identity who, std::shared_ptr<node_metrics> metrics,
        std::shared_ptr<http_client> client) {
  auto& st = self->state;
  st.self = self;
  st.who = std::move(who);
  st.metrics = std::move(metrics);
  st.client = std::move(client);
  if (auto url = parse_http_url(cfg.url))
    st.url = std::move(*url);
  st.secret = std::move(cfg.secret);
  st.events = std::move(cfg.events);
  st.retry_base = cfg.retry_base;
  st.retry_window_ms = cfg.retry_window.count();
  st.queue = webhook_queue{webhook_state::max_queued_events,
                           webhook_state::max_queued_bytes, cfg.coalesce_from};
  self->attach_functor([client = st.client](const caf::error&) {
    client->stop(); // no callback runs once the actor is gone
  });
  return {
      [self](register_event& ev) {
        self->state.add("register", conn_fields(ev.who),
                        webhook_kind::registered, ev.who.conn);
      },
      [self](logout_event& ev) {
        self->state.add("logout", conn_fields(ev.who), webhook_kind::logged_out,
                        ev.who.conn);
      },
      [self](presence_event& ev) {
        if (ev.online)
          self->state.add("online", text_of(nlohmann::json{{"uid", ev.uid}}),
                          webhook_kind::online, ev.uid);
        else
          self->state.add(
              "offline",
              text_of(nlohmann::json{{"uid", ev.uid},
                                     {"reason", ev.reason.empty()
                                                    ? std::string{"closed"}
                                                    : ev.reason}}),
              webhook_kind::offline, ev.uid);
      },
      [self](join_event& ev) {
        self->state.add(
            "join",
            text_of(nlohmann::json{{"uid", ev.uid}, {"group", ev.group}}),
            webhook_kind::joined, membership_key(ev.uid, ev.group));
      },
      [self](leave_event& ev) {
        self->state.add(
            "leave",
            text_of(nlohmann::json{{"uid", ev.uid}, {"group", ev.group}}),
            webhook_kind::left, membership_key(ev.uid, ev.group));
      },
      [self](unread_event& ev) {
        nlohmann::json fields{{"uid", ev.uid},
                              {"msg_id", ev.msg_id},
                              {"seq", ev.seq},
                              {"from", nullptr}};
        if (!ev.from.empty())
          fields["from"] = ev.from;
        if (!ev.group.empty())
          fields["group"] = ev.group;
        self->state.add("unread", text_of(fields), webhook_kind::unread,
                        unread_key(ev.uid, ev.from, ev.group));
      },
      [self](caf::flush_atom) {
        auto& st = self->state;
        st.waiting = false;
        if (!st.posting && !st.backing_off && !st.queue.empty())
          st.post();
        st.check_drain();
      },
      [self](atom::tick) {
        auto& st = self->state;
        st.backing_off = false;
        if (!st.posting && !st.queue.empty())
          st.post();
        st.check_drain();
      },
      [self](atom::check) {
        self->state.drop_log_due = false;
        self->state.log_drops();
      },
      [self](atom::posted, uint64_t id, bool ok, std::string& error) {
        self->state.posted(id, ok, error);
      },
      [self](atom::drain, uint32_t deadline_ms) -> caf::result<atom::ok> {
        auto& st = self->state;
        // Events the EVENT_BUS forwards may still be on their way (the stop
        // sends them just before): look once the batch delay has passed.
        deadline_ms = std::max<uint32_t>(
            deadline_ms,
            static_cast<uint32_t>(2 * webhook_state::batch_delay.count()));
        st.drain_deadline_ms = frames::now_ms() + deadline_ms;
        auto rp = self->make_response_promise<atom::ok>();
        st.drains.push_back(rp);
        st.drain_started_ms = frames::now_ms();
        self->delayed_send(self, webhook_state::batch_delay, caf::flush_atom_v);
        self->delayed_send(self, std::chrono::milliseconds{deadline_ms},
                           caf::flush_atom_v);
        return rp;
      },
  };
}

caf::expected<webhook_actor>
spawn_webhook(caf::actor_system& sys, const webhook_config& cfg,
              const node_identity& who, std::shared_ptr<node_metrics> metrics,
              const event_bus_actor& events) {
  auto url = parse_http_url(cfg.url);
  if (!url)
    return std::move(url.error());
  if (!cfg.ca.empty() && !url->tls)
    log::warn("webhook-ca is set but webhook-url is not https");
  if (cfg.secret.empty())
    log::warn("webhook-secret is empty: webhook signatures prove nothing");
  auto client = http_client::make(cfg.ca);
  if (!client)
    return std::move(client.error());
  auto hdl =
      sys.spawn(webhook, cfg, who, std::move(metrics), std::move(*client));
  caf::anon_send(events, atom::subscribe_v, webhook_mask(cfg.events),
                 caf::actor_cast<caf::actor>(hdl));
  log::info("webhooks: {} events to {}://{}:{}{}", cfg.events.size(),
            url->tls ? "https" : "http", url->host, url->port, url->target);
  return hdl;
}

// -- UNREAD -------------------------------------------------------------------

size_t unread_state::cost(const unread_watch& w) {
  constexpr size_t per_copy = sizeof(std::string) + sizeof(uint64_t);
  constexpr size_t per_watch = sizeof(pending) + 64; // + the deque's share
  auto result = per_watch + w.msg_id.size() + w.from.size() + w.group.size();
  for (auto& uid : w.uids)
    result += per_copy + uid.size();
  return result;
}

void unread_state::arm() {
  if (ticking || checking || queue.empty())
    return;
  ticking = true;
  auto wait = std::max<int64_t>(queue.front().due_ms - frames::now_ms(), 10);
  self->delayed_send(self, std::chrono::milliseconds{wait}, atom::tick_v);
}

void unread_state::sweep() {
  auto now = frames::now_ms();
  // One store request for every due copy (up to a cap): the merged watch,
  // and for each of its copies the entry it came from.
  unread_watch all;
  std::vector<pending> due;
  while (!queue.empty() && queue.front().due_ms <= now &&
         all.uids.size() < max_per_check) {
    auto& w = queue.front().watch;
    all.uids.insert(all.uids.end(), w.uids.begin(), w.uids.end());
    all.seqs.insert(all.seqs.end(), w.seqs.begin(), w.seqs.end());
    copies -= w.uids.size();
    bytes -= queue.front().bytes;
    due.push_back(std::move(queue.front()));
    queue.pop_front();
  }
  if (due.empty())
    return arm();
  checking = true;
  self->request(store, cfg.request_timeout, atom::unread_v, std::move(all))
      .then(
          [this, due = std::move(due)](std::vector<bool>& unread) {
            checking = false;
            size_t k = 0;
            for (auto& p : due)
              for (size_t i = 0; i < p.watch.uids.size(); ++i, ++k)
                if (k < unread.size() && unread[k])
                  self->send(events,
                             unread_event{p.watch.uids[i], p.watch.msg_id,
                                          p.watch.seqs[i], p.watch.from,
                                          p.watch.group});
            if (!queue.empty() && queue.front().due_ms <= frames::now_ms())
              sweep();
            else
              arm();
          },
          [this, n = due.size()](caf::error& err) {
            checking = false;
            log::warn("unread check of {} message(s) failed: {}", n,
                      error_message(err));
            arm();
          });
}

unread_actor::behavior_type
unread_checker(unread_actor::stateful_pointer<unread_state> self,
               unread_config cfg, state_store_actor store,
               event_bus_actor events, subscribed_events_ptr subscribed) {
  auto& st = self->state;
  st.self = self;
  st.store = std::move(store);
  st.events = std::move(events);
  st.subscribed = std::move(subscribed);
  st.cfg = cfg;
  return {
      [self](unread_watch& w) {
        auto& st = self->state;
        // Nobody listens (no UNREAD subscriber): no check.
        if ((st.subscribed->load() & on_unread) == 0)
          return;
        auto bytes = unread_state::cost(w);
        if (st.copies + w.uids.size() > st.cfg.max_pending ||
            st.bytes + bytes > st.cfg.max_pending_bytes) {
          if (st.skipped++ % 10000 == 0)
            log::warn("unread: {} copies ({} bytes) waiting, not checking "
                      "more",
                      st.copies, st.bytes);
          return;
        }
        st.copies += w.uids.size();
        st.bytes += bytes;
        st.queue.push_back(unread_state::pending{
            frames::now_ms() + st.cfg.after.count(), std::move(w), bytes});
        st.arm();
      },
      [self](atom::tick) {
        auto& st = self->state;
        st.ticking = false;
        if (!st.checking)
          st.sweep();
      },
  };
}

} // namespace wsc
