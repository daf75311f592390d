#pragma once

#include "actors/actors.hpp"
#include "actors/node_context.hpp"

#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace wsc {

/// A connection of this node as the REGISTRY keeps it.
struct local_connection {
  conn_ref who;
  connection_actor handle;
  /// False until the state store confirmed the binding and `welcome` went
  /// out; deliveries skip connections that are not open yet.
  bool open = false;
};

/// The state of the REGISTRY actor.
struct registry_state {
  static inline const char* name = "registry";

  node_context_ptr node;
  state_store_actor store;
  std::unordered_map<std::string, local_connection> connections;
  std::unordered_map<std::string, std::vector<std::string>> conns_by_uid;
  std::unordered_map<std::string, peer_actor> peers;
  /// Deliveries for peer nodes, sent as one batch per node on `flush`.
  std::unordered_map<std::string, delivery_batch> outbox;
  /// Deliveries to nodes that were not reachable (lost; counted).
  uint64_t undeliverable = 0;

  registry_actor::stateful_pointer<registry_state> self = nullptr;

  /// Writes a delivery to the local connections of `uids` (all connections
  /// for a broadcast); the frame is encoded once per uid, or once in all
  /// for broadcasts and groups. Returns the number of connections.
  uint32_t deliver_local(const delivery& d,
                         const std::vector<std::string>* uids);

  /// Sends a delivery to every node of a route table.
  void route(delivery d, const route_table& routes);

  /// Queues a delivery for a peer node; sent on the next flush.
  void enqueue_remote(const std::string& node, delivery d);

  /// Removes a connection and unbinds it in the state store.
  void remove(const std::string& conn_id);

  /// Closes every local connection of `uid` with `code`.
  void close_uid(const std::string& uid, uint16_t code);

  /// Writes a frame to one connection through its actor.
  void write(const local_connection& conn, const frame_ptr& frame);
};

/// Spawn arguments: the node and its state store.
registry_actor::behavior_type
registry(registry_actor::stateful_pointer<registry_state> self,
         node_context_ptr node, state_store_actor store);

} // namespace wsc
