#pragma once

// -- Key names of the Redis STATE_STORE (layout 4) ----------------------------
//
// Every key that one script touches shares a hash tag, so that each script
// runs on one slot of a Redis Cluster (a single Redis ignores the tags):
//
//   P:{u:<uid>}:<what>     per uid: b (bindings), in, cur, last (seq
//                          hint), g (groups)
//   P:{g:<group>}:m        per group: its members
//   P:{n:<node>}:<what>    per node: h (entry), nb, ni, lease:<inc>
//   P:<n>:{u:<uid>}:idem:<idem>  the sender's idempotency key (n: the byte
//                          length of uid), in the sender's slot
//   P:users, P:nodes, P:layout   single keys
//
// A hash tag ends at the first '}' after the first '{': a uid with a '}'
// gets a shorter tag, but every key of that uid gets the same one, so its
// keys still share a slot. Names stay unique: the per-uid suffixes ("}:b",
// "}:in", "}:cur", "}:last", "}:g") are none a suffix of another, tagged
// keys start "P:{", idem keys "P:<digit>", the single keys "P:<letter>";
// the idem key's length field makes (uid, idem) decodable. Lua builds the
// same names (redis_scripts.hpp: ukey, gkey, nkey): keep both in step; the
// append scripts get each uid's key base `P:{u:<uid>}:` (uid_key with an
// empty `what`) from the STORE and add the suffixes.
// The prefix must hold no '{' or '}' in cluster mode (it would move the
// tag); the STORE refuses such a prefix there.

#include "adapters/redis_cluster.hpp"

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace wsc::redis_keys {

/// `P:{<kind>:<name>}:<what>`: the keys of one uid, group or node share
/// the hash tag `{<kind>:<name>}` (one slot on a Redis Cluster).
inline std::string tagged_key(std::string_view prefix, char kind,
                              std::string_view name, std::string_view what) {
  std::string result;
  result.reserve(prefix.size() + name.size() + what.size() + 6);
  result.append(prefix).append(":{").append(1, kind).append(":");
  result.append(name).append("}:").append(what);
  return result;
}

/// `P:{u:<uid>}:<what>`.
inline std::string uid_key(std::string_view prefix, std::string_view uid,
                           std::string_view what) {
  return tagged_key(prefix, 'u', uid, what);
}

/// `P:{g:<group>}:m`.
inline std::string group_key(std::string_view prefix, std::string_view group) {
  return tagged_key(prefix, 'g', group, "m");
}

/// `P:{n:<node>}:<what>`.
inline std::string node_key(std::string_view prefix, std::string_view node,
                            std::string_view what) {
  return tagged_key(prefix, 'n', node, what);
}

/// `P:<len(from)>:{u:<from>}:idem:<idem>`: in the slot of `from`'s keys.
inline std::string idem_key(std::string_view prefix, std::string_view from,
                            std::string_view idem) {
  std::string result{prefix};
  result += ':';
  result += std::to_string(from.size());
  result += ":{u:";
  result.append(from).append("}:idem:").append(idem);
  return result;
}

/// Groups the indices of `keys` by hash slot, in first-seen order of the
/// slots and of the keys within one. Without `cluster` (a single Redis) all
/// indices form one group. Each group is then cut into parts of at most
/// `max_per_part` (0: no limit).
inline std::vector<std::vector<size_t>>
split_by_slot(const std::vector<std::string_view>& keys, bool cluster,
              size_t max_per_part = 0) {
  std::vector<std::vector<size_t>> groups;
  if (!cluster) {
    if (!keys.empty()) {
      groups.emplace_back();
      for (size_t i = 0; i < keys.size(); ++i)
        groups.back().push_back(i);
    }
  } else {
    std::vector<int> index(redis_slot_count, -1);
    for (size_t i = 0; i < keys.size(); ++i) {
      auto slot = key_slot(keys[i]);
      if (index[slot] < 0) {
        index[slot] = static_cast<int>(groups.size());
        groups.emplace_back();
      }
      groups[static_cast<size_t>(index[slot])].push_back(i);
    }
  }
  if (max_per_part == 0)
    return groups;
  std::vector<std::vector<size_t>> parts;
  for (auto& g : groups)
    for (size_t i = 0; i < g.size(); i += max_per_part)
      parts.emplace_back(g.begin() + i,
                         g.begin() + std::min(g.size(), i + max_per_part));
  return parts;
}

} // namespace wsc::redis_keys
