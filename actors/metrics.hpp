#pragma once

#include "actors/error.hpp"

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
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
  /// Connections closed because their send queue overflowed.
  counter queue_overflows{0};
  /// Error frames sent to clients, by error code.
  std::array<counter, 10> errors{};

  void count_rejection(unsigned status);

  void count_error(ec code);

  /// Counts a delivery batch of `items` deliveries sent to `peer`.
  void count_remote(const std::string& peer, size_t items);

  /// Counts a delivery batch of `items` deliveries received from `peer`.
  void count_remote_in(const std::string& peer, size_t items);

  /// The Prometheus exposition of every counter; `connections` and
  /// `gauges` are sampled by the caller.
  std::string render(uint64_t connections, bool draining,
                     bool store_healthy) const;

private:
  struct peer_traffic {
    uint64_t batches_out = 0;
    uint64_t items_out = 0;
    uint64_t batches_in = 0;
    uint64_t items_in = 0;
  };
  mutable std::mutex peers_mtx_;
  std::map<std::string, peer_traffic> peers_;
};

} // namespace wsc
