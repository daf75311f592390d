#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

namespace wsc {

/// How this node is doing, as /healthz and /metrics tell it. Each flag is
/// written where the thing happens and read from any thread.
struct node_health {
  /// Set once the node drains: /healthz answers 503, no new handshakes.
  std::atomic<bool> draining{false};
  /// False while the state store is unreachable (DISCOVERY's heartbeat).
  std::atomic<bool> store_healthy{true};
  /// Open WebSocket connections of this node (the sessions count them).
  std::atomic<uint64_t> open_connections{0};
  /// The name of a long-lived actor that died (null while all live): the
  /// node cannot serve any more, /healthz answers 503 and the node stops.
  std::atomic<const char*> failed_actor{nullptr};
};

using node_health_ptr = std::shared_ptr<node_health>;

} // namespace wsc
