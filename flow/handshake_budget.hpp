#pragma once

// -- How fast one client address may open WebSockets (no CAF) -----------------

#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

namespace wsc {

/// Per client address, the WebSocket handshakes it may still start: a token
/// bucket refilled at `handshake-rate-per-address` per second that holds
/// ten seconds of it. Every handshake takes one token before its
/// middlewares run, whatever its outcome: opening and closing a connection
/// costs the state store a binding and an unbinding, presence webhooks and
/// a replay, which `max-connections-per-address` alone did not bound
/// (helper-37's probe: one address churning ~5,000 handshakes a second).
/// IPv6 addresses count per /64, the block one host usually holds. Every
/// call may come from any thread.
class handshake_budget {
public:
  using clock = std::chrono::steady_clock;

  /// Seconds of `rate` a full bucket holds.
  static constexpr double burst_seconds = 10;

  /// Addresses tracked at most; beyond, a new address is admitted without
  /// a bucket until a sweep frees room (bounds memory against many
  /// addresses; each of them still meets max-connections-per-address).
  static constexpr size_t max_tracked = 100'000;

  /// `rate` handshakes per second and address; 0: no limit.
  explicit handshake_budget(double rate) : rate_(rate) {
    // nop
  }

  /// Takes a token of `address`'s bucket: false, taking nothing, if it is
  /// empty. A new address starts with a full bucket.
  bool admit(const std::string& address, clock::time_point now);

  /// The key `address` counts under: an IPv6 address's first 64 bits, any
  /// other (IPv4, IPv4-mapped IPv6 as IPv4, unparsable) as it is.
  static std::string key_of(const std::string& address);

  /// The number of addresses tracked.
  size_t size() const;

private:
  struct bucket {
    double tokens = 0;
    clock::time_point refilled;
  };

  double burst() const { return rate_ * burst_seconds; }

  /// Drops the buckets that are full again (as good as none), at most once
  /// a second.
  void sweep(clock::time_point now);

  double rate_;
  mutable std::mutex mtx_;
  std::unordered_map<std::string, bucket> buckets_;
  clock::time_point last_sweep_;
};

} // namespace wsc
