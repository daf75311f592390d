#pragma once

// -- How fast one client address may open WebSockets (no CAF) -----------------

#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <unordered_map>

namespace wsc {

/// What a client address counts as in every per-address limit: an IPv6
/// address as its /64 (the smallest block a site is given, all of which one
/// host may use: counting each address would give it millions), an IPv6 address
/// that embeds an IPv4 address (IPv4-mapped `::ffff:0:0/96`, SIIT
/// `::ffff:0:0:0/96`, NAT64 `64:ff9b::/96`) as that IPv4 address, anything else
/// (IPv4, unparsable) as it is.
std::string address_key(const std::string& address);

/// Per client address (`address_key`), the WebSocket handshakes it may still
/// start: a token bucket refilled at `handshake-rate-per-address` per second
/// that holds ten seconds of it. Every handshake the middlewares accept
/// takes one token, by the address they leave: opening and closing a connection
/// costs the state store a binding and an unbinding, presence webhooks and
/// a replay, which `max-connections-per-address` alone did not bound
/// (helper-37's probe: one address churning ~5,000 handshakes a second).
/// Every call may come from any thread.
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

  /// The number of addresses tracked.
  size_t size() const;

private:
  struct bucket {
    double tokens = 0;
    clock::time_point refilled;
  };

  double burst() const { return rate_ * burst_seconds; }

  /// Hash buckets of the table one `admit` looks through for buckets
  /// that are full again.
  static constexpr size_t slots_per_sweep = 4;

  /// Drops the buckets that are full again (as good as none) from the next
  /// `slots_per_sweep` slots of the table, going round: each call does a
  /// little, so no call holds the lock for long (sweeping all 100,000 at
  /// once held it for 4-11 ms, stalling every accept), and the table is
  /// gone through once per ~30,000 admits at 100,000 addresses.
  void sweep(clock::time_point now);

  double rate_;
  mutable std::mutex mtx_;
  std::unordered_map<std::string, bucket> buckets_;
  /// The slot of the table the next sweep starts at.
  size_t next_slot_ = 0;
};

} // namespace wsc
