#include "adapters/memory_store.hpp"

#include "flow/idem_waits.hpp"
#include "protocol/error.hpp"
#include "protocol/frames.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <unordered_set>

namespace wsc {

memory_store_config memory_store_config::from(const options& opts) {
  memory_store_config result;
  result.inbox_max_messages = opts.inbox_max_messages;
  result.inbox_max_age_ms = static_cast<int64_t>(opts.inbox_max_age.count());
  result.max_fanout_bytes = opts.max_fanout_bytes;
  result.max_group_members = opts.max_group_members;
  result.session_groups = opts.group_membership == "session";
  result.idempotency_window_ms = opts.idempotency_window.count();
  result.max_stored_bytes = opts.memory_store_max_bytes;
  return result;
}

uint64_t memory_store_state::inbox_cost(std::string_view uid) {
  return 2 * uid.size() + sizeof(inbox) + 512;
}

uint64_t memory_store_state::ended_cost(std::string_view uid) {
  return 2 * uid.size() + sizeof(ended_life) + 128;
}

void memory_store_state::drop(
    std::unordered_map<std::string, inbox>::iterator i) {
  auto& box = i->second;
  auto bytes = inbox_cost(i->first);
  for (auto& msg : box.messages)
    bytes += message_cost(msg);
  stored_bytes -= std::min(stored_bytes, bytes);
  expiry.erase(box.expiry);
  if (box.last_seq > 0) {
    auto at = ended_expiry.emplace(box.appended, i->first);
    ended.emplace(i->first, ended_life{box.last_seq, at});
    stored_bytes += ended_cost(i->first);
    ended_bytes += ended_cost(i->first);
  }
  inboxes.erase(i);
}

void memory_store_state::forget(
    std::unordered_map<std::string, ended_life>::iterator i) {
  stored_bytes -= std::min(stored_bytes, ended_cost(i->first));
  ended_bytes -= std::min(ended_bytes, ended_cost(i->first));
  ended_expiry.erase(i->second.expiry);
  ended.erase(i);
}

uint64_t memory_store_state::take_ended(const std::string& uid, int64_t now) {
  auto i = ended.find(uid);
  if (i == ended.end())
    return 0;
  auto last =
      hint_expired(i->second.expiry->first, now) ? 0 : i->second.last_seq;
  forget(i);
  return last;
}

caf::error
memory_store_state::check_room(const delivery& d,
                               const std::unordered_set<std::string_view>& uids,
                               int64_t now) {
  if (cfg.max_stored_bytes == 0)
    return caf::none;
  auto copy = message_cost(d);
  uint64_t bytes = 0;
  for (auto uid : uids)
    bytes += copy + (find(std::string{uid}, now) ? 0 : inbox_cost(uid));
  // Messages come before the hints of ended lives, but only a message that
  // then fits costs any of them.
  if (stored_bytes - std::min(stored_bytes, ended_bytes) + bytes <=
      cfg.max_stored_bytes) {
    while (stored_bytes + bytes > cfg.max_stored_bytes && !ended_expiry.empty())
      forget(ended.find(ended_expiry.begin()->second));
    return caf::none;
  }
  return make_error(ec::unavailable,
                    "the node's message store is full (memory-store-max-bytes "
                    "= " +
                        std::to_string(cfg.max_stored_bytes) +
                        "): try again later");
}

void memory_store_state::pop_oldest(inbox& box) {
  stored_bytes -= std::min(stored_bytes, message_cost(box.messages.front()));
  box.messages.pop_front();
}

namespace {

/// The key of an idempotency record (the API's uid is empty).
std::string idem_key(const delivery& d) {
  return idem_waits::key(d.from, d.idem);
}

} // namespace

const std::string* memory_store_state::repeated(const delivery& d,
                                                int64_t now) {
  while (!idem_expiry.empty() && idem_expiry.front().first <= now) {
    auto i = idems.find(idem_expiry.front().second);
    if (i != idems.end() && i->second.expires <= now)
      idems.erase(i);
    idem_expiry.pop_front();
  }
  if (d.idem.empty() || cfg.idempotency_window_ms <= 0)
    return nullptr;
  auto i = idems.find(idem_key(d));
  return i == idems.end() ? nullptr : &i->second.msg_id;
}

memory_store_state::inbox* memory_store_state::touch(const std::string& uid,
                                                     bool append, int64_t now) {
  auto i = inboxes.find(uid);
  if (i != inboxes.end() &&
      i->second.expiry->first < now - cfg.inbox_max_age_ms) {
    drop(i);
    i = inboxes.end();
  }
  if (i == inboxes.end()) {
    if (!append)
      return nullptr;
    i = inboxes.emplace(uid, inbox{}).first;
    stored_bytes += inbox_cost(uid);
    i->second.last_seq = take_ended(uid, now);
  } else {
    expiry.erase(i->second.expiry);
  }
  auto& box = i->second;
  if (append) {
    if (stale(box, now)) { // a new life: nothing old stays but the counter
      while (!box.messages.empty())
        pop_oldest(box);
      box.cursors.clear();
    }
    box.appended = now;
  }
  box.expiry = expiry.emplace_hint(expiry.end(), now, uid);
  return &box;
}

const memory_store_state::inbox*
memory_store_state::find(const std::string& uid, int64_t now) const {
  auto i = inboxes.find(uid);
  if (i == inboxes.end() ||
      i->second.expiry->first < now - cfg.inbox_max_age_ms)
    return nullptr;
  return &i->second;
}

void memory_store_state::sweep(int64_t now, size_t budget) {
  for (auto n = budget; n > 0 && !expiry.empty() &&
                        expiry.begin()->first < now - cfg.inbox_max_age_ms;
       --n) {
    if (auto i = inboxes.find(expiry.begin()->second); i != inboxes.end())
      drop(i);
    else
      expiry.erase(expiry.begin()); // (not expected: each has its inbox)
  }
  for (auto n = budget; n > 0 && !ended_expiry.empty() &&
                        hint_expired(ended_expiry.begin()->first, now);
       --n)
    forget(ended.find(ended_expiry.begin()->second));
}

caf::error memory_store_state::read(const std::string& uid,
                                    const std::string& device, uint64_t seq) {
  auto now = frames::now_ms();
  auto box = touch(uid, false, now);
  if (box == nullptr)
    return caf::none; // nothing stored: a cursor could only be 0
  seq = std::min(seq, stale(*box, now) ? 0 : box->last_seq);
  if (auto i = box->cursors.find(device); i != box->cursors.end())
    i->second = std::max(i->second, seq);
  else if (seq > 0 && box->cursors.size() >= frames::max_devices_per_uid)
    return frames::too_many_devices();
  else if (seq > 0)
    box->cursors.emplace(device, seq);
  return caf::none;
}

caf::expected<uint32_t> memory_store_state::join(const std::string& uid,
                                                 const std::string& group,
                                                 uint32_t max_groups) {
  auto m = members.find(group);
  if (m != members.end() && m->second.count(uid) == 0 &&
      m->second.size() >= cfg.max_group_members)
    return make_error(ec::group_full,
                      "'" + group + "' has " +
                          std::to_string(cfg.max_group_members) +
                          " members already");
  auto& mine = groups_of[uid];
  if (mine.count(group) == 0 && mine.size() >= max_groups) {
    if (mine.empty())
      groups_of.erase(uid);
    return make_error(ec::too_many_groups, "at most " +
                                               std::to_string(max_groups) +
                                               " groups per uid");
  }
  mine.insert(group);
  members[group].insert(uid);
  return static_cast<uint32_t>(mine.size());
}

route_table
memory_store_state::route(const std::vector<std::string>& uids) const {
  route_table result;
  std::set<std::string> seen;
  for (auto& uid : uids) {
    if (!seen.insert(uid).second)
      continue;
    auto i = bindings.find(uid);
    if (i == bindings.end() || i->second.empty()) {
      result.offline.push_back(uid);
      continue;
    }
    std::map<std::string, uint32_t> per_node;
    for (auto& [conn, b] : i->second)
      ++per_node[b.node];
    for (auto& [node, count] : per_node) {
      auto nr = std::find_if(result.nodes.begin(), result.nodes.end(),
                             [&](auto& x) { return x.node == node; });
      if (nr == result.nodes.end()) {
        result.nodes.push_back(node_route{node, {}, {}, {}});
        nr = std::prev(result.nodes.end());
      }
      nr->uids.push_back(uid);
      nr->connections.push_back(count);
    }
  }
  return result;
}

bool memory_store_state::unbind(const binding& b) {
  auto i = bindings.find(b.uid);
  if (i == bindings.end())
    return false;
  auto j = i->second.find(b.conn);
  if (j == i->second.end())
    return false;
  i->second.erase(j);
  if (!i->second.empty())
    return false;
  bindings.erase(i);
  if (!cfg.session_groups)
    return true; // persistent groups outlive the uid's connections
  if (auto g = groups_of.find(b.uid); g != groups_of.end()) {
    for (auto& group : g->second) {
      auto& m = members[group];
      m.erase(b.uid);
      if (m.empty())
        members.erase(group);
    }
    groups_of.erase(g);
  }
  return true;
}

std::vector<std::string> memory_store_state::drop_node(const std::string& node,
                                                       uint64_t incarnation) {
  std::vector<binding> doomed;
  for (auto& [uid, conns] : bindings)
    for (auto& [conn, b] : conns)
      if (b.node == node && (incarnation == 0 || b.incarnation == incarnation))
        doomed.push_back(b);
  std::vector<std::string> offline;
  for (auto& b : doomed)
    if (unbind(b))
      offline.push_back(b.uid);
  return offline;
}

std::vector<bool> memory_store_state::unread(const unread_watch& w) const {
  auto now = frames::now_ms();
  std::vector<bool> result(w.uids.size(), false);
  for (size_t i = 0; i < w.uids.size() && i < w.seqs.size(); ++i) {
    auto box = find(w.uids[i], now);
    if (!box || box->cursors.empty())
      continue; // no device: nobody to remind
    bool read = false;
    for (auto& [device, cursor] : box->cursors)
      read = read || cursor >= w.seqs[i];
    result[i] = !read;
  }
  return result;
}

caf::expected<route_table>
memory_store_state::append(const delivery& d,
                           const std::vector<std::string>& uids) {
  std::unordered_set<std::string_view> distinct{uids.begin(), uids.end()};
  if (auto err = frames::check_fanout(distinct.size(), d.data.size(),
                                      cfg.max_fanout_bytes))
    return err;
  auto now = frames::now_ms();
  if (auto earlier = repeated(d, now)) {
    route_table result; // said before: neither stored nor routed again
    result.duplicate_of = *earlier;
    return result;
  }
  // Drop uids silent for longer than inbox-max-age faster than they come.
  sweep(now, std::max<size_t>(64, 2 * distinct.size()));
  // Before the idem is kept: a refused send is not a repeat when retried.
  if (auto err = check_room(d, distinct, now))
    return err;
  if (!d.idem.empty() && cfg.idempotency_window_ms > 0) {
    auto expires = now + cfg.idempotency_window_ms;
    auto key = idem_key(d);
    idems[key] = idem_entry{d.msg_id, expires};
    idem_expiry.emplace_back(expires, std::move(key));
  }
  std::map<std::string, uint64_t> seqs;
  uint32_t new_inboxes = 0;
  for (auto& uid : uids) {
    if (seqs.count(uid) > 0)
      continue;
    auto& box = *touch(uid, true, now);
    // Only a new life is empty: retention never drops the newest message.
    auto seq = ++box.last_seq;
    if (box.messages.empty()) {
      ++new_inboxes;
      box.born = seq;
    }
    seqs.emplace(uid, seq);
    box.messages.push_back(
        stored_message{seq, d.msg_id, d.kind, d.from, d.group, d.data, d.ts});
    stored_bytes += message_cost(box.messages.back());
    while (box.messages.size() > cfg.inbox_max_messages ||
           (!box.messages.empty() &&
            box.messages.front().ts < now - cfg.inbox_max_age_ms))
      pop_oldest(box);
  }
  auto result = route(uids);
  result.new_inboxes = new_inboxes;
  for (auto& nr : result.nodes)
    for (auto& uid : nr.uids)
      nr.seqs.push_back(seqs[uid]);
  for (auto& uid : result.offline)
    result.offline_seqs.push_back(seqs[uid]);
  return result;
}

caf::expected<std::vector<std::string>>
memory_store_state::publish_targets(const std::string& group,
                                    const std::string& from) const {
  auto i = members.find(group);
  if (!from.empty() && (i == members.end() || i->second.count(from) == 0))
    return make_error(ec::not_member,
                      "'" + from + "' is not a member of '" + group + "'");
  if (i == members.end())
    return std::vector<std::string>{};
  return std::vector<std::string>{i->second.begin(), i->second.end()};
}

inbox_replay memory_store_state::replay(const std::string& uid,
                                        const std::string& device,
                                        int64_t since, uint32_t limit) const {
  inbox_replay result;
  auto now = frames::now_ms();
  auto box = find(uid, now);
  if (since >= 0) {
    result.cursor = static_cast<uint64_t>(since);
  } else if (box != nullptr) {
    if (auto i = box->cursors.find(device); i != box->cursors.end())
      result.cursor = i->second;
  }
  bool alive = box != nullptr && !stale(*box, now);
  result.last_seq = alive ? box->last_seq : 0;
  auto oldest = alive && !box->messages.empty() ? box->messages.front().seq
                                                : result.last_seq + 1;
  result.too_old =
      replay_misses_messages(result.cursor, oldest, result.last_seq);
  result.oldest = oldest;
  result.born = alive ? box->born : 0;
  if (!alive)
    return result;
  // Seqs are consecutive: seek instead of walking the skipped ones.
  auto first = result.cursor < oldest
                   ? box->messages.begin()
                   : box->messages.begin() +
                         static_cast<std::ptrdiff_t>(std::min<uint64_t>(
                             result.cursor + 1 - oldest, box->messages.size()));
  for (auto i = first; i != box->messages.end(); ++i) {
    auto& msg = *i;
    if (msg.seq <= result.cursor)
      continue;
    if (result.messages.size() >= limit) {
      result.more = true;
      break;
    }
    if (auto err = frames::check(msg)) { // never written out, as Redis
      log::warn("dropped invalid inbox entry {} of {}: {}", msg.seq, uid,
                error_message(err));
      continue;
    }
    result.messages.push_back(msg);
  }
  return result;
}

state_store_actor::behavior_type
memory_store(state_store_actor::stateful_pointer<memory_store_state> self,
             size_t inbox_max_messages, int64_t inbox_max_age_ms) {
  memory_store_config cfg;
  cfg.inbox_max_messages = inbox_max_messages;
  cfg.inbox_max_age_ms = inbox_max_age_ms;
  return configured_memory_store(self, cfg);
}

state_store_actor spawn_memory_store(caf::actor_system& sys,
                                     const options& opts) {
  return sys.spawn(configured_memory_store, memory_store_config::from(opts));
}

state_store_actor::behavior_type configured_memory_store(
    state_store_actor::stateful_pointer<memory_store_state> self,
    memory_store_config cfg) {
  self->state.cfg = cfg;
  return {
      [self](atom::append, delivery& d) -> caf::result<route_table> {
        auto result = self->state.append(d, d.uids);
        if (!result)
          return std::move(result.error());
        return std::move(*result);
      },
      [self](atom::group_append, delivery& d) -> caf::result<route_table> {
        auto uids = self->state.publish_targets(d.group, d.from);
        if (!uids)
          return std::move(uids.error());
        auto result = self->state.append(d, *uids);
        if (!result)
          return std::move(result.error());
        return std::move(*result);
      },
      [self](atom::inbox, std::string& uid, std::string& device, int64_t since,
             uint32_t limit) {
        return self->state.replay(uid, device, since, limit);
      },
      [self](atom::read, std::string& uid, std::string& device,
             uint64_t seq) -> caf::result<atom::ok> {
        if (auto err = self->state.read(uid, device, seq))
          return err;
        return atom::ok_v;
      },
      [self](atom::bind, binding& b) {
        auto& conns = self->state.bindings[b.uid];
        bool came_online = conns.empty();
        conns[b.conn] = std::move(b);
        return came_online;
      },
      [self](atom::unbind, binding& b) { return self->state.unbind(b); },
      [self](atom::rebind, std::vector<binding>& bs) {
        for (auto& b : bs)
          self->state.bindings[b.uid][b.conn] = std::move(b);
        return atom::ok_v;
      },
      [self](atom::route, std::vector<std::string>& uids) {
        return self->state.route(uids);
      },
      [self](atom::join, std::string& uid, std::string& group,
             uint32_t max_groups) -> caf::result<uint32_t> {
        auto result = self->state.join(uid, group, max_groups);
        if (!result)
          return std::move(result.error());
        return *result;
      },
      [self](atom::leave, std::string& uid, std::string& group) {
        auto& st = self->state;
        if (auto i = st.groups_of.find(uid); i != st.groups_of.end()) {
          i->second.erase(group);
          if (i->second.empty())
            st.groups_of.erase(i);
        }
        if (auto i = st.members.find(group); i != st.members.end()) {
          i->second.erase(uid);
          if (i->second.empty())
            st.members.erase(i);
        }
        return atom::ok_v;
      },
      [self](atom::members, std::string& group, uint32_t limit) {
        std::vector<std::string> result;
        if (auto i = self->state.members.find(group);
            i != self->state.members.end())
          for (auto& uid : i->second) {
            if (result.size() >= limit)
              break;
            result.push_back(uid);
          }
        return result;
      },
      [self](atom::is_member, const std::string& group,
             const std::string& uid) {
        auto& members = self->state.members;
        auto i = members.find(group);
        return i != members.end() && i->second.count(uid) > 0;
      },
      [self](atom::group_route, std::string& group,
             std::string& from) -> caf::result<route_table> {
        auto uids = self->state.publish_targets(group, from);
        if (!uids)
          return std::move(uids.error());
        return self->state.route(*uids);
      },
      [self](atom::node, node_info& info) {
        info.last_heartbeat_ms = frames::now_ms(); // the store's clock decides
        // Heartbeats come every second: they sweep idle inboxes too.
        self->state.sweep(info.last_heartbeat_ms, 64);
        auto& entry = self->state.nodes[info.id];
        bool fresh = entry.incarnation != info.incarnation;
        entry = std::move(info);
        return fresh;
      },
      [self](atom::nodes) {
        std::vector<node_info> result;
        for (auto& [id, info] : self->state.nodes)
          result.push_back(info);
        return result;
      },
      [self](
          atom::claim, std::string& node, uint64_t incarnation,
          int64_t timeout_ms) -> caf::result<bool, std::vector<std::string>> {
        auto& st = self->state;
        auto i = st.nodes.find(node);
        if (i == st.nodes.end() || i->second.incarnation != incarnation ||
            i->second.last_heartbeat_ms >= frames::now_ms() - timeout_ms)
          return {false, std::vector<std::string>{}};
        st.nodes.erase(i);
        return {true, st.drop_node(node, incarnation)};
      },
      [self](atom::shutdown, std::string& node, uint64_t incarnation) {
        auto& st = self->state;
        if (auto i = st.nodes.find(node);
            i != st.nodes.end() && i->second.incarnation == incarnation)
          st.nodes.erase(i);
        return st.drop_node(node, incarnation);
      },
      [self](atom::stats) {
        // Uids without a binding are erased (unbind): each entry is online.
        return static_cast<uint64_t>(self->state.bindings.size());
      },
      [self](atom::unread, const unread_watch& w) {
        return self->state.unread(w);
      },
      [](atom::health) { return true; },
  };
}

} // namespace wsc
