#pragma once

#include "actors/actors.hpp"
#include "actors/metrics.hpp"
#include "actors/node_identity.hpp"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>

namespace wsc {

/// The settings of the PEER.
struct peer_config {
  node_identity who;
  std::chrono::milliseconds request_timeout{5000};
};

/// The state of the PEER actor: the other nodes as the REGISTRY's
/// deliveries reach them.
struct peer_state {
  static inline const char* name = "peer";

  peer_config cfg;
  /// Gets the deliveries and `to_conn` sends from peers.
  registry_actor registry;
  std::shared_ptr<node_metrics> metrics;
  /// The PEER of each node with a CAF connection (from DISCOVERY).
  std::unordered_map<std::string, peer_actor> peers;
  /// The other nodes alive in the cluster as DISCOVERY last saw them (with
  /// or without a CAF connection): broadcasts reach them all.
  std::unordered_set<std::string> cluster_nodes;
  /// Carries the deliveries for nodes without a CAF connection (partitions,
  /// dials in progress); null in single-node mode.
  relay_actor relay;
  /// Deliveries for peer nodes, sent as one batch per node on `flush`.
  std::unordered_map<std::string, delivery_batch> outbox;
  /// Bytes of the deliveries in each peer's outbox.
  std::unordered_map<std::string, size_t> outbox_bytes;
  /// Batches sent to each peer and not yet confirmed. At `max_in_flight`
  /// the outbox of that peer waits; past `max_queued` deliveries or
  /// `max_queued_bytes` it drops (durable messages stay in the receivers'
  /// inboxes). A batch carries at most `max_batch_bytes` (or one delivery):
  /// the peer's cluster port refuses larger BASP messages.
  std::unordered_map<std::string, uint32_t> in_flight;
  static constexpr uint32_t max_in_flight = 16;
  static constexpr size_t max_queued = 50'000;
  static constexpr size_t max_queued_bytes = 64u << 20;
  static constexpr size_t max_batch_bytes = 4u << 20;
  bool flush_scheduled = false;

  peer_endpoint_actor::stateful_pointer<peer_state> self = nullptr;
  discovery_actor discovery;

  /// Queues the copies of a routed delivery for the other nodes of `routes`.
  void route(const delivery& d, const route_table& routes);

  /// Queues a broadcast for every other node of the cluster.
  void broadcast(const delivery& d);

  /// Asks the node of `d.to_conn` to write it to that connection.
  caf::result<delivery_report> send_to_conn(delivery d);

  /// Queues a delivery for a peer node; sent on the next flush.
  void enqueue(const std::string& node, delivery d);

  /// Sends the queued batch of every peer that has credit; batches for
  /// nodes that are not (or no longer) peers go to the RELAY.
  void flush();

  /// Sends the first deliveries of `pending` (at most `max_batch_bytes`) to
  /// a peer, using one of its credits.
  void send_batch(const std::string& peer, const peer_actor& handle,
                  delivery_batch& pending);

  /// Hands a batch for a node without a CAF connection to the RELAY.
  void relay_batch(const std::string& node, delivery_batch batch);
  /// A batch to `peer` was confirmed or failed: one more may go, and what
  /// waits for it goes now.
  void batch_done(const std::string& peer);

  /// Forgets a peer's link: what waits for its credit goes to the RELAY.
  void peer_down(const std::string& peer);
};

/// Spawn arguments: the settings, the REGISTRY (gets the deliveries from
/// peers), the DISCOVERY that gets peers' hello and shutdown (a handle fixed
/// before the PEER is published: no peer can reach it earlier) and the
/// node's metrics.
peer_endpoint_actor::behavior_type
peer_endpoint(peer_endpoint_actor::stateful_pointer<peer_state> self,
              peer_config cfg, registry_actor registry,
              discovery_actor discovery, std::shared_ptr<node_metrics> metrics);

} // namespace wsc
