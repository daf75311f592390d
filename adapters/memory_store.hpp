#pragma once

#include "actors/actors.hpp"

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

  /// Route table of `uids` (each uid once, in first-seen order per node).
  route_table route(const std::vector<std::string>& uids) const;

  /// Removes a binding; true if its uid has no binding left (then its group
  /// memberships are dropped too).
  bool unbind(const binding& b);

  /// Removes every binding of `node` (of `incarnation`, or any if 0).
  void drop_node(const std::string& node, uint64_t incarnation);
};

/// Spawns nothing by itself: the behaviour of the in-memory STATE_STORE.
state_store_actor::behavior_type
memory_store(state_store_actor::stateful_pointer<memory_store_state> self);

} // namespace wsc
