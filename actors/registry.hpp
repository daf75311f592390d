#pragma once

#include "actors/actors.hpp"
#include "actors/frame_order.hpp"
#include "actors/node_context.hpp"
#include "actors/store_budgets.hpp"

#include <caf/duration.hpp>

#include <memory>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace wsc {

/// A connection of this node as the REGISTRY keeps it.
struct local_connection {
  conn_ref who;
  connection_actor handle;
  /// The socket side: frames are written here, not through `handle`.
  sink_ref sink;
  /// Welcome and replay first, then live frames; a device's durable frames
  /// in seq order.
  frame_order order;
  /// The device's replay is in progress (counted in `resumes`).
  bool resuming = false;
};

/// The state of the REGISTRY actor.
struct registry_state {
  static inline const char* name = "registry";

  node_context_ptr node;
  state_store_actor store;
  /// For requests to the store (see the spawn function).
  caf::duration store_timeout;
  std::unordered_map<std::string, local_connection> connections;
  std::unordered_map<std::string, std::vector<std::string>> conns_by_uid;
  /// Replays in progress per uid (`max-resumes-per-uid`).
  std::unordered_map<std::string, uint32_t> resumes;
  /// Per sending uid with local connections: bytes its durable messages
  /// may still store (`stored-bytes-rate`).
  store_budgets budgets;
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
  /// Deliveries to nodes that were not reachable and could not be relayed
  /// (counted; durable ones stay in the receivers' inboxes for their next
  /// resume).
  uint64_t undeliverable = 0;
  /// Makes message ids unique within this incarnation.
  uint64_t next_msg = 0;

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

  /// Sends the queued batch of every peer that has credit; batches for
  /// nodes that are not (or no longer) peers go to the RELAY.
  void flush();

  /// Sends the first deliveries of `pending` (at most `max_batch_bytes`) to
  /// a peer, using one of its credits.
  void send_batch(const std::string& peer, const peer_actor& handle,
                  delivery_batch& pending);

  /// Hands a batch for a node without a CAF connection to the RELAY.
  void relay_batch(const std::string& node, delivery_batch batch);

  /// Removes a connection and unbinds it in the state store.
  void remove(const std::string& conn_id);

  /// Closes every local connection of `uid` with `code`.
  void close_uid(const std::string& uid, uint16_t code);

  /// Writes a frame to one connection's socket, or holds it while the
  /// connection is not open yet.
  void write(local_connection& conn, uint64_t seq, const frame_ptr& frame);

  /// Writes a frame of a resume (welcome, replay): not counted against the
  /// send queue limit.
  static void write_replay(local_connection& conn, frame_ptr frame);

  /// Stores (if durable) and routes a message to uids; answers per uid.
  caf::result<delivery_report> send(delivery d);

  /// Writes a message to one connection (`to_conn`) on whichever node holds
  /// it; the report has one entry: 1 connection, or 0 and why.
  caf::result<delivery_report> send_to_conn(delivery d);

  /// Writes a message read from the inbox (replay, gap): not counted.
  static void write_stored(local_connection& conn, const stored_message& msg);

  /// Reads the inbox after the connection's last seq and writes what is
  /// missing, then the held frames (a frame arrived after a gap: its
  /// predecessors are late or were lost with a peer).
  void catch_up(const std::string& conn_id);

  /// Writes frames that waited (see frame_order::release_held).
  static void write_held(local_connection& conn, std::vector<frame_ptr> held);

  /// Opens a bound connection: welcome, then for a device the first page of
  /// its replay (see `pump_replay`).
  void open(const std::string& conn_id, inbox_replay* replay,
            bool store_failed);

  /// Writes the replay of a connection while its send queue has room
  /// (`send-queue-bytes`), reads the next page when one is written, and
  /// opens the connection after the last: a replay never holds more than a
  /// queue and a page of memory, however large the inbox.
  void pump_replay(const std::string& conn_id);

  /// Ends a replay (`complete`: all of it was written): held frames go out,
  /// live frames flow.
  void finish_open(local_connection& conn, bool complete);

  /// Forgets that a connection's replay is in progress.
  void end_resume(local_connection& conn);

  /// Tells the UNREAD checker which copies of a durable message were stored
  /// (nothing while unread-after is 0).
  void watch_unread(const delivery& d, const route_table& routes);

  /// A message id unique in the cluster: node, incarnation, counter.
  std::string make_msg_id();
};

/// Spawn arguments: the node and its state store.
registry_actor::behavior_type
registry(registry_actor::stateful_pointer<registry_state> self,
         node_context_ptr node, state_store_actor store);

} // namespace wsc
