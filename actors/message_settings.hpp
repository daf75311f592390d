#pragma once

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace wsc {

/// The settings of the messaging operations that clients (the built-in
/// behaviours) and the HTTP API share.
struct message_settings {
  /// `volatile-types`: frame types whose messages are not stored.
  std::vector<std::string> volatile_types;
  /// `max-fanout-bytes`: a message's size times its receivers, at most.
  uint64_t max_fanout_bytes = 1u << 20;
  /// `members-limit`: the most uids a member list answers.
  uint64_t members_limit = 1000;
  /// `max-message-bytes`: also bounds a client's `data` as the node writes
  /// it out.
  uint64_t max_message_bytes = 65536;

  /// Whether messages of a frame type (`send`, `publish`) are stored in the
  /// receivers' inboxes (not listed in `volatile-types`).
  bool durable(const std::string& type) const {
    auto& v = volatile_types;
    return std::find(v.begin(), v.end(), type) == v.end();
  }
};

} // namespace wsc
