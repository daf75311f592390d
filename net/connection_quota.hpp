#pragma once

#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>

namespace wsc {

/// Open WebSocket connections per uid and per client address on this node
/// (`max-connections-per-uid`, `max-connections-per-address`), and sockets
/// per client address that have not become a WebSocket (yet). Addresses
/// count by `address_key` (an IPv6 host by its /64), like the handshake
/// budget. A slot is
/// taken at the handshake (a socket's at accept) and given back when the
/// session ends; every call may come from any thread.
class connection_quota {
public:
  /// Takes a slot for `uid` connecting from `address`; false, taking
  /// nothing, when either is at its limit (a limit of 0: none).
  bool acquire(const std::string& uid, const std::string& address,
               uint64_t per_uid, uint64_t per_address);

  /// Gives back a slot taken by `acquire`.
  void release(const std::string& uid, const std::string& address);

  /// Takes a slot for an accepted socket from `address` that is no
  /// WebSocket yet; false, taking nothing, at `per_address` (0: no limit).
  /// Without it, sockets that never finish their request were bounded per
  /// node only: one address held them all (helper-31's probe).
  bool acquire_socket(const std::string& address, uint64_t per_address);

  /// Gives back a slot taken by `acquire_socket`.
  void release_socket(const std::string& address);

private:
  using counts = std::unordered_map<std::string, uint64_t>;

  static void give_back(counts& map, const std::string& key);

  std::mutex mtx_;
  counts by_uid_;
  counts by_address_;
  counts sockets_by_address_;
};

} // namespace wsc
