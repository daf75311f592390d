#pragma once

#include "actors/actors.hpp"
#include "actors/behaviour_table.hpp"
#include "actors/metrics.hpp"
#include "config/options.hpp"
#include "middleware/middleware.hpp"
#include "protocol/codec.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

namespace wsc {

/// The socket side of a connection, implemented by the WebSocket session.
/// Every call may come from any thread: they only hand work to the socket's
/// own executor.
class connection_sink {
public:
  virtual ~connection_sink();

  /// Queues a text frame. Past `send-queue-limit` queued `counted` frames
  /// or `send-queue-bytes` queued bytes the connection is closed with 1008
  /// instead. Uncounted frames (welcome, the pages of a replay, which the
  /// REGISTRY writes only while `queued_bytes()` leaves room) never close it.
  virtual void write(frame_ptr frame, bool counted) = 0;

  /// Bytes of every frame queued and not yet written.
  virtual uint64_t queued_bytes() const { return 0; }

  /// Closes the WebSocket with a close code, after the frames already queued.
  virtual void close(uint16_t code, std::string reason) = 0;

  /// Closes the WebSocket as `close` does once `after` has passed (a token's
  /// expiry); a later call replaces the deadline. The deadline lives with
  /// the socket and goes with it: a connection that ends earlier leaves
  /// nothing scheduled behind (CAF 0.17 cannot cancel a delayed message, and
  /// one would keep the ended CONNECTION's memory until it fired).
  virtual void close_after(std::chrono::milliseconds after, uint16_t code,
                           std::string reason) = 0;

  /// The CONNECTION actor answered one of the frames read from the socket
  /// (ack, reply or error). The session reads ahead at most a few frames
  /// that are not answered yet: an overloaded node slows its senders down
  /// through TCP instead of queueing without bound.
  virtual void frame_answered() {
    // nop: sinks that do not read ahead (tests) need no signal
  }
};

/// The most recent DISCOVER and SHUTDOWN events of the cluster as this node
/// saw them, for the dashboard (GET /api/events).
class cluster_event_log {
public:
  struct entry {
    int64_t ts = 0;
    std::string event;
    std::string node;
    std::string reason;
  };

  void record(std::string event, std::string node, std::string reason = {});

  std::vector<entry> snapshot() const;

private:
  static constexpr size_t capacity = 100;
  mutable std::mutex mtx_;
  std::deque<entry> entries_;
};

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

/// What every part of one node shares: settings, the long-lived actors and
/// a few counters read from several threads. Built once by the node.
struct node_context {
  explicit node_context(options opts);

  options opts;
  std::string node_id;
  /// Drawn at each start: tells this run's bindings from a predecessor's.
  uint64_t incarnation = 0;

  registry_actor registry;
  /// This node's endpoint in the cluster (published on cluster-listen).
  peer_endpoint_actor peer;
  event_bus_actor events;
  /// Checks stored messages for `unread` (null while unread-after is 0).
  unread_actor unread;
  behaviour_table behaviours;
  /// The BUILTINS behaviour as first spawned: while the table still maps a
  /// type to it, connections run the built-in code themselves.
  behaviour_actor builtins;
  /// The state store is the embedder's own (node_customization::store).
  bool custom_store = false;
  /// The `frame-codec` of this node's WebSocket sessions (null: json, as in
  /// tests that start no node).
  frame_codec_ptr codec;
  open_chain open;

  /// Events that have at least one subscriber (bits of event_mask), so
  /// connections skip building events nobody wants.
  std::atomic<uint32_t> subscribed_events{0};
  /// Set once the node drains: /healthz answers 503, no new handshakes.
  std::atomic<bool> draining{false};
  /// False while the state store is unreachable.
  std::atomic<bool> store_healthy{true};
  /// Open WebSocket connections of this node.
  std::atomic<uint64_t> open_connections{0};
  /// Connections per uid and per client address.
  connection_quota quota;
  /// The name of a long-lived actor that died (null while all live): the
  /// node cannot serve any more, /healthz answers 503 and the node stops.
  std::atomic<const char*> failed_actor{nullptr};

  node_metrics metrics;
  cluster_event_log cluster_events;

  /// Whether messages of a frame type (`send`, `publish`) are stored in the
  /// receivers' inboxes (not listed in `volatile-types`).
  bool durable(const std::string& type) const;

  /// A connection id unique across the cluster and across restarts:
  /// node id, incarnation, sequence number.
  std::string next_conn_id();

private:
  std::atomic<uint64_t> conn_seq_{0};
};

using node_context_ptr = std::shared_ptr<node_context>;

} // namespace wsc
