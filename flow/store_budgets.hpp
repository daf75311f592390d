#pragma once

// -- What each sending uid may still store (no CAF) ---------------------------

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <unordered_map>

namespace wsc {

/// Per sending uid, the bytes its durable messages may still store: two
/// token buckets, one refilled at `stored-bytes-rate` (how fast), one that
/// holds `stored-bytes-kept` and refills it over `inbox-max-age` (how much
/// Redis keeps of the uid's messages at once: older ones may be dropped).
/// A message is charged after the store answered (a group's size is known
/// only then), so a bucket may go into debt; the uid may store again once
/// both are out of it.
class store_budgets {
public:
  using clock = std::chrono::steady_clock;

  /// A token bucket's size in bytes and its refill in bytes per second.
  struct allowance {
    double rate = 0;
    double burst = 0;
  };

  /// Why a uid may or may not store now.
  enum class verdict : uint8_t {
    may,
    too_fast,           // stored-bytes-rate
    too_much_kept,      // stored-bytes-kept
    too_many_publishes, // max_publishes_in_flight
  };

  store_budgets() = default;

  /// Buckets hold at most `burst` bytes and refill `rate` bytes per second;
  /// no bound on what is kept.
  store_budgets(double rate, double burst) : per_second_{rate, burst} {
    // nop
  }

  /// `kept` bounds what a uid stores over a long window as well (burst 0:
  /// no such bound); at most `publishes` publishes of one key wait for the
  /// store at once.
  store_budgets(allowance per_second, allowance kept,
                uint32_t publishes = max_publishes_in_flight)
      : per_second_(per_second), kept_(kept), publishes_limit_(publishes) {
    // nop
  }

  /// Whether `uid` may store more now: neither bucket in deficit, and for
  /// a publish fewer than `max_publishes_in_flight` of its publishes wait
  /// for the store. The HTTP API (no uid) always may. A new uid starts
  /// with full buckets.
  verdict check(const std::string& uid, clock::time_point now,
                bool publish = false);

  /// Whether `check` says `may`.
  bool may_store(const std::string& uid, clock::time_point now,
                 bool publish = false) {
    return check(uid, now, publish) == verdict::may;
  }

  /// Durable publishes of one uid that may wait for the store at once (by
  /// default): a publish's receivers are known only from the store's
  /// answer, so only its first copy is reserved, and this bounds what the
  /// others can add before they are charged (each at most
  /// `max-fanout-bytes`).
  static constexpr uint32_t max_publishes_in_flight = 8;

  /// The publishes of one key that may wait for the store at once.
  uint32_t publishes_limit() const { return publishes_limit_; }

  /// Takes from `uid`'s bucket, when a durable message is admitted, the
  /// most it can cost: each of `receivers` copies and an inbox each may
  /// start (a publish: one receiver; `inboxes` false: nothing is stored,
  /// so no inbox either). Without it, everything in flight was admitted
  /// before the first answer charged anything (helper-31's probe: 32
  /// connections of one uid stored ~80x the budget).
  void reserve(const std::string& uid, size_t receivers, size_t payload_bytes,
               bool publish = false, bool inboxes = true);

  /// Gives back what `reserve` took once the store answered (then `charge`
  /// takes the real cost) or failed.
  void release(const std::string& uid, size_t receivers, size_t payload_bytes,
               bool publish = false, bool inboxes = true);

  /// What starting an inbox costs the store: Redis 7.0 preallocates a
  /// 4 KB listpack node per stream (used_memory grew 4,397 bytes per new
  /// one-entry inbox with its TTL, over 2,000). Without it, durable sends to
  /// many new uids stored ~68x the budget (helper-29's probe).
  static constexpr size_t new_inbox_bytes = 4400;

  /// What the record of a message's `idem` costs the store besides the
  /// idem itself, kept for `idempotency-window` (helper-31's probe: ~200
  /// bytes of Redis per idem key, uncharged before).
  static constexpr size_t idem_record_bytes = 200;

  /// Takes what a stored message cost from `uid`'s bucket: each receiver's
  /// copy, its payload and ~64 bytes of bookkeeping, plus `new_inboxes`
  /// inboxes it started (its copy was seq 1), plus the record of its idem
  /// (`idem_bytes` long; 0: none).
  void charge(const std::string& uid, size_t receivers, size_t payload_bytes,
              size_t new_inboxes = 0, size_t idem_bytes = 0);

  /// Once there are buckets for more than twice `connected_uids` (plus
  /// 1024), drops those of uids not `connected` that are full again, at
  /// most once a second: a refilled bucket is as good as none; one in debt
  /// or partly spent stays, so that reconnecting gives no fresh burst. The
  /// kept bucket, which refills over hours, counts as full once it misses
  /// at most `kept_forgiven` (or 1/64 of its size, if less): each bucket
  /// left stands for at least that much stored, and a drop gives back no
  /// more. Keeps the map bounded by the uids connected here plus those
  /// that stored more than that within the windows.
  void prune(size_t connected_uids,
             const std::function<bool(const std::string&)>& connected,
             clock::time_point now);

  /// What a sweep may give back of a uid's kept bucket (see prune).
  static constexpr double kept_forgiven = 64 * 1024;

  /// The number of buckets.
  size_t size() const { return buckets_.size(); }

private:
  struct bucket {
    /// Bytes left in the per-second and in the kept bucket.
    double tokens = 0;
    double kept = 0;
    clock::time_point refilled;
    /// Durable messages reserved for and not yet released (publishes
    /// among them): a bucket with any is not pruned.
    uint32_t in_flight = 0;
    uint32_t publishes_in_flight = 0;
  };

  static double cost(size_t receivers, size_t payload_bytes,
                     size_t new_inboxes);

  bucket full(clock::time_point now) const;

  void refill(bucket& b, clock::time_point now) const;

  /// Takes `bytes` from both buckets (negative: gives them back, up to
  /// each burst).
  void take(bucket& b, double bytes) const;

  allowance per_second_;
  allowance kept_;
  uint32_t publishes_limit_ = max_publishes_in_flight;
  std::unordered_map<std::string, bucket> buckets_;
  clock::time_point last_sweep_;
};

} // namespace wsc
