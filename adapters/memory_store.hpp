#pragma once

#include "actors/actors.hpp"

#include <caf/expected.hpp>

#include <deque>
#include <map>
#include <set>
#include <string>
#include <unordered_map>

namespace wsc {

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

  /// A uid's inbox of durable messages.
  struct inbox {
    uint64_t last_seq = 0;
    std::deque<stored_message> messages;
  };
  std::unordered_map<std::string, inbox> inboxes;
  /// (uid, device) -> the last sequence number the device confirmed.
  std::map<std::pair<std::string, std::string>, uint64_t> cursors;
  size_t inbox_max_messages = 1000;
  int64_t inbox_max_age_ms = 24 * 3600 * 1000;

  /// Stores `d` in the inbox of each of `uids` and routes them; the route
  /// table carries each copy's sequence number.
  route_table append(const delivery& d, const std::vector<std::string>& uids);

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

  /// Removes every binding of `node` (of `incarnation`, or any if 0).
  void drop_node(const std::string& node, uint64_t incarnation);
};

/// The behaviour of the in-memory STATE_STORE; inboxes keep at most
/// `inbox_max_messages` messages younger than `inbox_max_age_ms`.
state_store_actor::behavior_type
memory_store(state_store_actor::stateful_pointer<memory_store_state> self,
             size_t inbox_max_messages, int64_t inbox_max_age_ms);

} // namespace wsc
