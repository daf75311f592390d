#pragma once

#include "actors/actors.hpp"
#include "config/options.hpp"
#include "protocol/frames.hpp"

#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include <deque>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

namespace wsc {

/// The default options, built once (a temporary `options{}` per default
/// member below makes GCC 12 -O3 warn about its strings).
inline const options& default_options() {
  static const options defaults;
  return defaults;
}

/// Settings of the in-memory STATE_STORE.
struct memory_store_config {
  /// Inbox retention: messages per uid, and age. A uid's inbox and cursors
  /// go once it had no message and no read for `inbox_max_age_ms`; its last
  /// seq stays `seq_hint_keep_ms` longer (`ended`).
  size_t inbox_max_messages = 1000;
  int64_t inbox_max_age_ms = 24 * 3600 * 1000;
  int64_t seq_hint_keep_ms = frames::seq_hint_keep_ms;
  /// Receivers times payload bytes one durable send or publish may store.
  uint64_t max_fanout_bytes = default_options().max_fanout_bytes;
  /// Most members of one group (`group_full`).
  uint64_t max_group_members = default_options().max_group_members;
  /// group-membership=session: membership ends with the uid's last
  /// connection.
  bool session_groups = false;
  /// How long a sender's `idem` is remembered (0: never).
  int64_t idempotency_window_ms = default_options().idempotency_window.count();
  /// Bytes all inboxes may hold together (0: no bound).
  uint64_t max_stored_bytes = default_options().memory_store_max_bytes;

  /// The settings `opts` asks for.
  static memory_store_config from(const options& opts);
};

/// The state of a single node, kept in memory: the reference implementation
/// of the STATE_STORE interface (the Redis store keeps the same duties).
struct memory_store_state {
  static inline const char* name = "memory-store";

  /// uid -> conn id -> binding.
  std::unordered_map<std::string, std::map<std::string, binding>> bindings;
  /// group -> member uids, and uid -> groups.
  std::unordered_map<std::string, std::set<std::string>> members;
  std::unordered_map<std::string, std::set<std::string>> groups_of;
  std::map<std::string, node_info> nodes;

  /// The durable state of a uid: its inbox and its devices' cursors.
  struct inbox {
    uint64_t last_seq = 0;
    /// The first seq of its current life (inbox_replay::born).
    uint64_t born = 0;
    std::deque<stored_message> messages;
    /// device -> the last sequence number the device confirmed.
    std::map<std::string, uint64_t> cursors;
    /// Time of the last message. The messages live inbox-max-age after it
    /// (like the Redis keys): the next message then starts a new life,
    /// with the cursors reset, after the last seq of this one.
    int64_t appended = 0;
    /// Its entry in `expiry` (the time of its last message or read).
    std::multimap<int64_t, std::string>::iterator expiry;
  };
  std::unordered_map<std::string, inbox> inboxes;
  /// Time of the last message or read -> uid, oldest first: uids silent for
  /// longer than inbox-max-age are dropped (lazily when touched, and a few
  /// at every operation that writes, so memory stays bounded even for uids
  /// that never connect).
  std::multimap<int64_t, std::string> expiry;
  memory_store_config cfg;
  /// The last seq of an inbox that ended (dropped after inbox-max-age of
  /// silence), kept for seq_hint_keep_ms after its last message: the uid's
  /// next inbox continues after it, so a `since` or cursor of the ended
  /// life reads as too_old instead of skipping the new life's first
  /// messages. They count in stored_bytes and go first, oldest first, when
  /// an append needs room: a uid whose hint went starts over at seq 1.
  struct ended_life {
    uint64_t last_seq = 0;
    /// Its entry in `ended_expiry`.
    std::multimap<int64_t, std::string>::iterator expiry;
  };
  std::unordered_map<std::string, ended_life> ended;
  /// Time of the last message of each ended life -> uid, oldest first.
  std::multimap<int64_t, std::string> ended_expiry;
  /// What the inboxes and ended lives hold, as `inbox_cost`,
  /// `message_cost` and `ended_cost` count it.
  uint64_t stored_bytes = 0;
  /// The part of stored_bytes that `ended` holds.
  uint64_t ended_bytes = 0;

  /// Bytes an inbox costs without its messages (its uid twice, the hash
  /// and expiry nodes, the deque's first block).
  static uint64_t inbox_cost(std::string_view uid);

  /// Bytes an entry of `ended` costs (its uid twice, the hash and expiry
  /// nodes).
  static uint64_t ended_cost(std::string_view uid);

  /// Bytes one copy of a message (a stored_message, or the delivery it
  /// will be made of) costs an inbox.
  template<class Message>
  static uint64_t message_cost(const Message& msg) {
    return sizeof(stored_message) + msg.msg_id.size() + msg.from.size() +
           msg.group.size() + msg.data.size();
  }

  /// Idempotency keys `<len(from)>:<from>:<idem>` -> the msg_id of the
  /// message that used them and when they go (its time + the window).
  struct idem_entry {
    std::string msg_id;
    int64_t expires = 0;
  };
  std::unordered_map<std::string, idem_entry> idems;
  /// (expires, key) in the order they were added, which is their expiry
  /// order (the window is fixed).
  std::deque<std::pair<int64_t, std::string>> idem_expiry;

  /// The msg_id of an earlier durable delivery of `d.from` with `d.idem`
  /// still in the window; null if none (or `d` has no idem).
  const std::string* repeated(const delivery& d, int64_t now);

  /// Stores `d` in the inbox of each of `uids` and routes them; the route
  /// table carries each copy's sequence number. `too_large` when the
  /// receivers times the payload exceed max-fanout-bytes.
  caf::expected<route_table> append(const delivery& d,
                                    const std::vector<std::string>& uids);

  /// The inbox of `uid`, created if `append`; null if it has none (or it
  /// expired: then it is dropped). Marks it used now; `append` also starts
  /// its counter over if its last message is older than inbox-max-age.
  inbox* touch(const std::string& uid, bool append, int64_t now);

  /// Whether the messages and counter of `box` expired.
  bool stale(const inbox& box, int64_t now) const {
    return box.appended < now - cfg.inbox_max_age_ms;
  }

  /// Whether the last seq of a life whose last message came at
  /// `last_message` is forgotten: the uid's next life starts at 1.
  bool hint_expired(int64_t last_message, int64_t now) const {
    return last_message < now - cfg.inbox_max_age_ms - cfg.seq_hint_keep_ms;
  }

  /// The inbox of `uid` unless it has none or it expired (read-only).
  const inbox* find(const std::string& uid, int64_t now) const;

  /// Drops at most `budget` uids whose inbox expired, and as many ended
  /// lives past seq_hint_keep_ms.
  void sweep(int64_t now, size_t budget);

  /// Drops the inbox `i` points to, with its bytes; its last seq goes to
  /// `ended`.
  void drop(std::unordered_map<std::string, inbox>::iterator i);

  /// Forgets the ended life `i` points to, with its bytes.
  void forget(std::unordered_map<std::string, ended_life>::iterator i);

  /// The last seq of the ended life of `uid` (0 if none or past
  /// seq_hint_keep_ms), which it forgets: a new life continues after it.
  uint64_t take_ended(const std::string& uid, int64_t now);

  /// Drops the oldest message of `box`, with its bytes.
  void pop_oldest(inbox& box);

  /// `unavailable` if storing `d` for `uids` would take the inboxes past
  /// max_stored_bytes even after forgetting every ended life. If it fits,
  /// ended lives are forgotten, oldest first, as many as it takes; if not,
  /// none (a refused send costs no uid its hint: review helper-55, L1).
  caf::error check_room(const delivery& d,
                        const std::unordered_set<std::string_view>& uids,
                        int64_t now);

  /// Moves a device's cursor forward to `seq` (at most the last seq).
  /// Moves a device's cursor; `forbidden` for a new device of a uid that
  /// has `max_devices_per_uid` cursors already.
  caf::error read(const std::string& uid, const std::string& device,
                  uint64_t seq);

  /// Adds `uid` to `group`; answers its number of groups, or
  /// `too_many_groups` / `group_full`.
  caf::expected<uint32_t> join(const std::string& uid, const std::string& group,
                               uint32_t max_groups);

  /// The members a publish from `from` reaches; `not_member` when `from` is
  /// set and not one of them.
  caf::expected<std::vector<std::string>>
  publish_targets(const std::string& group, const std::string& from) const;

  /// The inbox of `uid` after the device's cursor (or after `since` >= 0).
  inbox_replay replay(const std::string& uid, const std::string& device,
                      int64_t since, uint32_t limit) const;

  /// Route table of `uids` (each uid once, in first-seen order per node).
  route_table route(const std::vector<std::string>& uids) const;

  /// Removes a binding; true if its uid has no binding left (then its group
  /// memberships are dropped too).
  bool unbind(const binding& b);

  /// Removes every binding of `node` (of `incarnation`, or any if 0);
  /// answers the uids left without a binding (they went offline).
  std::vector<std::string> drop_node(const std::string& node,
                                     uint64_t incarnation);

  /// Per (uid, seq) of `w`: whether the uid has a device cursor and none
  /// reached seq.
  std::vector<bool> unread(const unread_watch& w) const;
};

/// The behaviour of the in-memory STATE_STORE.
state_store_actor::behavior_type configured_memory_store(
    state_store_actor::stateful_pointer<memory_store_state> self,
    memory_store_config cfg);

/// The in-memory STATE_STORE with the budgets of default options; inboxes
/// keep at most `inbox_max_messages` messages younger than
/// `inbox_max_age_ms` (kept for existing callers; prefer
/// `spawn_memory_store`).
state_store_actor::behavior_type
memory_store(state_store_actor::stateful_pointer<memory_store_state> self,
             size_t inbox_max_messages, int64_t inbox_max_age_ms);

/// Spawns the in-memory STATE_STORE with the settings of `opts`
/// (inbox retention, max-fanout-bytes, max-group-members).
state_store_actor spawn_memory_store(caf::actor_system& sys,
                                     const options& opts);

} // namespace wsc
