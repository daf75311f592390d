#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace wsc {

/// Open WebSocket connections per uid and per client address on this node
/// (`max-connections-per-uid`, `max-connections-per-address`). A slot is
/// taken at the handshake and given back when the session ends; every call
/// may come from any thread.
class connection_quota {
public:
  /// Takes a slot for `uid` connecting from `address`; false, taking
  /// nothing, when either is at its limit (a limit of 0: none).
  bool acquire(const std::string& uid, const std::string& address,
               uint64_t per_uid, uint64_t per_address);

  /// Gives back a slot taken by `acquire`.
  void release(const std::string& uid, const std::string& address);

private:
  std::mutex mtx_;
  std::unordered_map<std::string, uint64_t> by_uid_;
  std::unordered_map<std::string, uint64_t> by_address_;
};

} // namespace wsc
