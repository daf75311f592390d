#pragma once

#include "protocol/error.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <sstream>
#include <string>

namespace wsc {

/// Counters of one node, updated from any thread, rendered for /metrics in
/// the Prometheus text format.
class node_metrics {
public:
  using counter = std::atomic<uint64_t>;

  counter handshakes_accepted{0};
  /// Rejected handshakes by HTTP status (400, 401, 403, 503).
  counter rejected_400{0};
  counter rejected_401{0};
  counter rejected_403{0};
  counter rejected_503{0};
  counter frames_in{0};
  counter frames_out{0};
  /// Frames written to local connections for deliveries.
  counter deliveries_local{0};
  /// The same by frame type: message, broadcast, group.
  std::array<counter, 3> deliveries_by_kind{};
  /// Deliveries carried through the RELAY (Redis pub/sub) because the CAF
  /// connection to their node was down, and those it had to drop.
  counter relayed_out{0};
  counter relayed_in{0};
  counter relay_dropped{0};
  /// Webhook events POSTed (2xx), dropped (queue full or retried past the
  /// retry window), sent again after a failed POST (once per attempt), and
  /// coalesced (both events of a pair that cancelled out in a backlog).
  counter webhook_sent{0};
  counter webhook_dropped{0};
  counter webhook_retried{0};
  counter webhook_coalesced{0};
  /// Relayed messages refused, in whole or in part (every reason below).
  counter relay_rejected{0};
  /// The same by reason: an unknown format `version`, not authenticated by
  /// cluster-secret (`auth`), undecodable (`malformed`), meant for another
  /// node (`misaddressed`), sent outside the time window (`stale`), seen
  /// before (`replay`), or with deliveries that fail `frames::check`
  /// (`invalid`: those are dropped, the others delivered).
  static constexpr std::array<const char*, 7> relay_rejection_reasons{
      "version", "auth",   "malformed", "misaddressed",
      "stale",   "replay", "invalid"};
  std::array<counter, relay_rejection_reasons.size()>
      relay_rejected_by_reason{};
  /// Deliveries from peers or the relay dropped as malformed.
  counter rejected_deliveries{0};
  /// Connections closed because their send queue overflowed.
  counter queue_overflows{0};
  /// Deliveries for other nodes the PEER dropped: the node's queue was full
  /// (it stopped confirming batches) or it had no link and there is no
  /// relay. Durable ones stay in the receivers' inboxes.
  counter undeliverable{0};
  /// Error frames sent to clients, by error code.
  std::array<counter, ec_count> errors{};
  /// Exceptions caught in a long-lived actor's handler (answered 500 or an
  /// error; the actor lives on).
  counter internal_failures{0};

  /// The frame types counted by name in `frames_in_by_type`; others count
  /// as "other" (user types are unbounded: no label per type).
  static constexpr std::array<const char*, 9> counted_types{
      "send",    "broadcast", "join", "leave", "publish",
      "members", "presence",  "ping", "read"};
  std::array<counter, counted_types.size() + 1> frames_in_by_type{};

  /// Upper bounds (ms) of the buckets of the state store round-trip time.
  static constexpr std::array<double, 11> rtt_buckets_ms{
      0.5, 1, 2, 5, 10, 25, 50, 100, 250, 500, 1000};

  void count_rejection(unsigned status);

  void count_error(ec code);

  /// Counts a client frame of `type`.
  void count_frame(const std::string& type);

  /// Records a round trip to the state store (a heartbeat).
  void observe_store_rtt(double ms);

  /// Sets the age of a peer's last heartbeat as the store reported it.
  void set_peer_heartbeat_age(const std::string& peer, int64_t age_ms);

  /// Forgets a peer's gauges (it left the cluster).
  void forget_peer(const std::string& peer);

  /// Counts a delivery batch of `items` deliveries sent to `peer`.
  void count_remote(const std::string& peer, size_t items);

  /// Counts a delivery batch of `items` deliveries received from `peer`.
  void count_remote_in(const std::string& peer, size_t items);

  /// The Prometheus exposition of every counter; `connections` and
  /// `gauges` are sampled by the caller.
  std::string render(uint64_t connections, bool draining,
                     bool store_healthy) const;

private:
  // The parts of `render`: the node's state and handshakes; frames and
  // deliveries; refusals, drops and errors; the store and the peers.
  void render_node(std::ostringstream& out, uint64_t connections, bool draining,
                   bool store_healthy) const;
  void render_deliveries(std::ostringstream& out) const;
  void render_failures(std::ostringstream& out) const;
  void render_peers(std::ostringstream& out) const;

  struct peer_traffic {
    uint64_t batches_out = 0;
    uint64_t items_out = 0;
    uint64_t batches_in = 0;
    uint64_t items_in = 0;
  };
  /// The series of `peer` (under peers_mtx_).
  peer_traffic& traffic_of(const std::string& peer);

  mutable std::mutex peers_mtx_;
  std::map<std::string, peer_traffic> peers_;
  std::map<std::string, int64_t> heartbeat_age_ms_;
  std::array<uint64_t, rtt_buckets_ms.size()> rtt_counts_{};
  uint64_t rtt_count_ = 0;
  double rtt_sum_ms_ = 0;
};

} // namespace wsc
