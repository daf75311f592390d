#pragma once

// -- The typed actor interfaces of a wscluster node ---------------------------
//
// Reading guide: a CONNECTION per WebSocket parses client frames and hands
// each to the BEHAVIOUR registered for its type; behaviours use the REGISTRY's
// operations (send, broadcast, groups, presence); the REGISTRY owns this
// node's connections, asks the STATE_STORE where uids live and hands remote
// deliveries to this node's PEER, which batches them for the PEER of each
// target node. The DISCOVERY actor keeps the list of peers; the EVENT_BUS
// tells event actors what happened.

#include "actors/atoms.hpp"
#include "protocol/messages.hpp"

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/fwd.hpp>
#include <caf/replies_to.hpp>
#include <caf/typed_actor.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace wsc {

/// Marks the messages only actors of this process may send. The type has no
/// serialization and no registered name, so no message holding it can be
/// decoded from the cluster port: BASP lets a peer address any actor whose
/// handle ever crossed the wire (the PEER is published) and even claim a
/// local sender in a routed message, so neither the receiver nor the sender
/// tells where a message came from.
struct local_only {};

/// One WebSocket connection. Beast owns the socket; this actor owns the
/// connection's logic and never touches the socket itself.
using connection_actor = caf::typed_actor<
    // An inbound text frame, straight from the socket.
    caf::reacts_to<atom::frame, std::string>,
    // An encoded frame to write to the socket.
    caf::reacts_to<atom::deliver, frame_ptr>,
    // A frame of a resume (welcome, replay): not counted against the send
    // queue limit.
    caf::reacts_to<atom::replay, frame_ptr>,
    // Closes the socket with a close code and a reason.
    caf::reacts_to<atom::disconnect, uint16_t, std::string>,
    // A `refresh` frame verified a new token: the connection now expires at
    // its `exp` (seconds since the epoch) instead (4003 then, closed by the
    // socket's session: connection_sink::close_after).
    caf::reacts_to<atom::refresh, int64_t>,
    // The socket is gone (closed by either side).
    caf::reacts_to<atom::closed>>;

/// Who sent a frame that a behaviour handles, and where to reply.
struct frame_context {
  conn_ref sender;
  connection_actor connection;
  /// The client's address as the handshake middlewares left it, keyed as
  /// the per-address budgets count it (`address_key`: an IPv6 host by its
  /// /64). A behaviour that sends for the client sets it as the delivery's
  /// `sender_address`, so that the client's address pays for what it stores.
  std::string address;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, frame_context& x) {
  return f(caf::meta::type_name("frame_context"), x.sender, x.connection,
           x.address);
}

/// Handles the client frames of one or more types. The answer is the JSON
/// object sent back to the client (the connection adds the frame's `id`); a
/// null answer means `ack`; an error becomes an `error` frame.
using behaviour_actor = caf::typed_actor<
    // Handles one parsed frame.
    caf::replies_to<atom::frame, frame_context, json_ptr>::with<json_ptr>>;

/// What one node offers the other nodes of the cluster. Published on
/// `cluster-listen`.
using peer_actor = caf::typed_actor<
    // Deliveries for connections on this node, one BASP message per batch;
    // the answer is the credit for the next batch (BASP has no flow control).
    caf::replies_to<atom::remote, delivery_batch>::with<atom::ok>,
    // A peer says it is stopping or has declared a node down.
    caf::reacts_to<shutdown_event>,
    // Liveness probe; answers this node's id and incarnation.
    caf::replies_to<atom::ping>::with<std::string, uint64_t>,
    // A peer that dialed this node introduces itself (id, incarnation, its
    // PEER actor): only one side of each pair dials.
    caf::reacts_to<atom::hello, std::string, uint64_t, caf::actor>,
    // A `send` to one connection of this node (`to_conn`); answers how many
    // connections got it (0: no such connection).
    caf::replies_to<atom::deliver, delivery>::with<uint32_t>>;

/// Carries deliveries to a peer node whose CAF connection is down through
/// the state store's server (Redis pub/sub). Slower than BASP, but nodes cut
/// off from each other while both still reach Redis keep delivering live.
using relay_actor = caf::typed_actor<
    // Deliveries for the node `node`; at most once (durable ones are in the
    // receivers' inboxes anyway).
    caf::reacts_to<atom::relay, std::string, delivery_batch>>;

/// The operations behaviours use; owned by the REGISTRY of each node.
using messaging_actor = caf::typed_actor<
    // Sends to every connection of each uid, cluster-wide.
    caf::replies_to<atom::send, delivery>::with<delivery_report>,
    // Sends to every connection on every node.
    caf::replies_to<atom::broadcast, delivery>::with<atom::ok>,
    // Publishes to every connection of every member of `delivery.group`
    // (the report's per-uid vectors stay empty; `msg_id` when durable).
    caf::replies_to<atom::publish, delivery>::with<delivery_report>,
    // Adds the connection's uid to a group.
    caf::replies_to<atom::join, conn_ref, std::string>::with<atom::ok>,
    // Removes the connection's uid from a group.
    caf::replies_to<atom::leave, conn_ref, std::string>::with<atom::ok>,
    // Lists the uids of a group.
    caf::replies_to<atom::members, std::string>::with<std::vector<std::string>>,
    // Whether a uid is a member of a group.
    caf::replies_to<atom::is_member, std::string, std::string>::with<bool>,
    // Tells for each uid whether it has a connection anywhere.
    caf::replies_to<atom::presence,
                    std::vector<std::string>>::with<std::vector<bool>>,
    // Closes every connection of a uid, cluster-wide, with a close code.
    caf::replies_to<atom::disconnect, std::string, uint16_t>::with<atom::ok>,
    // Confirms that the connection's device has read up to `seq`.
    caf::replies_to<atom::read, conn_ref, uint64_t>::with<atom::ok>>;

/// This node's endpoint in the cluster: published on `cluster-listen` (its
/// `peer_actor` part), it hands what peers send to the REGISTRY and
/// DISCOVERY, and carries the REGISTRY's deliveries to the other nodes, in
/// batches per node under a credit (or through the RELAY without a link).
using peer_endpoint_actor = peer_actor::extend<
    // The deliveries for other nodes of one routed message: every node of
    // the route table but this one gets its uids and seqs.
    // (Every message below but flush carries local_only: the PEER is
    // published, and these are for actors of this node only.)
    caf::reacts_to<atom::route, local_only, delivery, route_table>,
    // A broadcast for every other node of the cluster.
    caf::reacts_to<atom::broadcast, local_only, delivery>,
    // A `send` to one connection (`to_conn`) of another node; the report has
    // one entry: 1 connection, or 0 and why ("gone", "unconfirmed").
    caf::replies_to<atom::send, local_only, delivery>::with<delivery_report>,
    // DISCOVERY found a peer node.
    caf::reacts_to<atom::peer_up, local_only, std::string, peer_actor>,
    // DISCOVERY lost a peer node.
    caf::reacts_to<atom::peer_down, local_only, std::string>,
    // The RELAY for peers without a CAF connection (cluster mode only).
    caf::reacts_to<atom::relay, local_only, relay_actor>,
    // DISCOVERY's list of the nodes alive in the cluster (each heartbeat).
    caf::reacts_to<atom::nodes, local_only, std::vector<std::string>>,
    // Sends the delivery batches collected for peer nodes.
    caf::reacts_to<caf::flush_atom>>;

/// Owns this node's connections and routes deliveries: to its local
/// connections itself, to other nodes through the PEER.
using registry_actor = messaging_actor::extend<
    // Binds an opened connection (the open chain's default step); frames
    // for it go straight to its socket side. With a device, its missed
    // messages are replayed first: after its cursor, or after `since` when
    // that is >= 0.
    caf::replies_to<atom::register_conn, conn_ref, connection_actor, sink_ref,
                    int64_t>::with<atom::ok>,
    // A connection closed.
    caf::reacts_to<atom::unregister, conn_ref>,
    // Deliveries from another node (through the PEER or the RELAY) for the
    // connections of this node; malformed ones are dropped. The answer is
    // the sender's credit for its next batch.
    caf::replies_to<atom::remote, delivery_batch>::with<atom::ok>,
    // A `send` to one connection of this node (`to_conn`); answers how many
    // connections got it (0: no such connection).
    caf::replies_to<atom::deliver, delivery>::with<uint32_t>,
    // Starts the drain: every connection gets `bye` and close 1001.
    caf::replies_to<atom::drain, uint32_t>::with<atom::ok>,
    // The bindings of every local connection (to write back after an outage).
    caf::replies_to<atom::rebind>::with<std::vector<binding>>,
    // Counts local connections.
    caf::replies_to<atom::status>::with<uint32_t>,
    // Writes more of a connection's replay once its queue has room.
    caf::reacts_to<atom::replay, std::string>,
    // The PEER, spawned after the REGISTRY; sent before anything can route.
    caf::reacts_to<atom::peer, local_only, peer_endpoint_actor>>;

/// Keeps the cluster's shared state: which uid is bound where, groups, nodes.
/// The in-memory store serves one node; the Redis store serves a cluster.
/// Every operation answers `ec::unavailable` while the store is unreachable.
using state_store_actor = caf::typed_actor<
    // Binds a connection; answers whether its uid just came online.
    caf::replies_to<atom::bind, binding>::with<bool>,
    // Unbinds a connection; answers whether its uid just went offline.
    caf::replies_to<atom::unbind, binding>::with<bool>,
    // Writes back many bindings at once (after an outage of the store).
    caf::replies_to<atom::rebind, std::vector<binding>>::with<atom::ok>,
    // Finds the nodes of many uids in one round trip.
    caf::replies_to<atom::route, std::vector<std::string>>::with<route_table>,
    // Stores a durable message in the inbox of each receiver (a new `seq`
    // per uid) and finds the nodes of the receivers, in one atomic step.
    caf::replies_to<atom::append, delivery>::with<route_table>,
    // The same for a group message: stored for, and routed to, every member;
    // `not_member` if the delivery's sender is not one.
    caf::replies_to<atom::group_append, delivery>::with<route_table>,
    // What a device missed: at most `limit` messages of the inbox after its
    // cursor, or after `since` when that is >= 0 (`more` says whether the
    // page was cut; the next page asks with `since` = its last seq).
    caf::replies_to<atom::inbox, std::string, std::string, int64_t,
                    uint32_t>::with<inbox_replay>,
    // Moves a device's read cursor forward to `seq`.
    caf::replies_to<atom::read, std::string, std::string,
                    uint64_t>::with<atom::ok>,
    // Adds a uid to a group; answers the uid's number of groups.
    caf::replies_to<atom::join, std::string, std::string,
                    uint32_t>::with<uint32_t>,
    // Removes a uid from a group.
    caf::replies_to<atom::leave, std::string, std::string>::with<atom::ok>,
    // Lists at most `limit` uids of a group.
    caf::replies_to<atom::members, std::string,
                    uint32_t>::with<std::vector<std::string>>,
    // Whether a uid (second) is a member of a group (first).
    caf::replies_to<atom::is_member, std::string, std::string>::with<bool>,
    // Finds the nodes holding members of a group; empty if `from` is not one.
    caf::replies_to<atom::group_route, std::string,
                    std::string>::with<route_table>,
    // Registers this node or renews its heartbeat; answers true when the
    // store had no entry of this incarnation (first heartbeat, or the store
    // lost its data): the node then writes back all its bindings.
    caf::replies_to<atom::node, node_info>::with<bool>,
    // Lists the registered nodes.
    caf::replies_to<atom::nodes>::with<std::vector<node_info>>,
    // Atomically claims the cleanup of a node (id, incarnation) silent for
    // longer than a timeout (ms) by the store's clock; true for one caller
    // only, who has then removed its entry, bindings and memberships, with
    // the uids that had no connection left afterwards (they went offline).
    caf::replies_to<atom::claim, std::string, uint64_t,
                    int64_t>::with<bool, std::vector<std::string>>,
    // Removes a node's entry, bindings and memberships (graceful stop);
    // answers the uids that had no connection left afterwards.
    caf::replies_to<atom::shutdown, std::string,
                    uint64_t>::with<std::vector<std::string>>,
    // The number of uids online in the cluster (each counted once).
    caf::replies_to<atom::stats>::with<uint64_t>,
    // For each (uid, seq) of the watch: true if the uid has at least one
    // device cursor and none of them reached seq (the copy is unread).
    caf::replies_to<atom::unread, unread_watch>::with<std::vector<bool>>,
    // Checks that the store is reachable.
    caf::replies_to<atom::health>::with<bool>>;

/// Fans node events out to the event actors subscribed to them.
using event_bus_actor = caf::typed_actor<
    // Subscribes an event actor to the events of a mask (see event_mask).
    caf::reacts_to<atom::subscribe, uint32_t, caf::actor>,
    // Drops a subscription.
    caf::reacts_to<atom::unsubscribe, caf::actor>,
    caf::reacts_to<register_event>, caf::reacts_to<logout_event>,
    caf::reacts_to<discover_event>, caf::reacts_to<shutdown_event>,
    caf::reacts_to<recv_message_event>, caf::reacts_to<presence_event>,
    caf::reacts_to<join_event>, caf::reacts_to<leave_event>,
    caf::reacts_to<unread_event>>;

/// Sends the node's events to the application's backend (`webhook-url`):
/// subscribed to the EVENT_BUS like any event actor, it batches, signs and
/// POSTs them from an HTTP client thread of its own, and retries.
using webhook_actor = caf::typed_actor<
    caf::reacts_to<register_event>, caf::reacts_to<logout_event>,
    caf::reacts_to<presence_event>, caf::reacts_to<join_event>,
    caf::reacts_to<leave_event>, caf::reacts_to<unread_event>,
    // Time to POST the next batch (after the batch delay).
    caf::reacts_to<caf::flush_atom>,
    // The back-off after a failed POST is over.
    caf::reacts_to<atom::tick>,
    // Time to log the drops the log throttle held back.
    caf::reacts_to<atom::check>,
    // The HTTP client finished a POST: attempt id, success, status or error.
    caf::reacts_to<atom::posted, uint64_t, bool, std::string>,
    // Graceful stop: answers once the queue is empty or after the deadline.
    caf::replies_to<atom::drain, uint32_t>::with<atom::ok>>;

/// Checks whether durable messages stored by this node were read in time and
/// fires UNREAD for those that were not (`unread-after`). One timer sweeps
/// a queue ordered by due time.
using unread_actor = caf::typed_actor<
    // Copies just stored (the REGISTRY tells after each durable append).
    caf::reacts_to<unread_watch>,
    // Sweeps the copies that are due.
    caf::reacts_to<atom::tick>>;

/// Registers this node in the state store, heartbeats, finds and watches the
/// peer nodes, and declares silent ones down.
using discovery_actor = caf::typed_actor<
    // The PEER, spawned after DISCOVERY; sent before the PEER is published.
    caf::reacts_to<atom::peer, local_only, peer_endpoint_actor>,
    // The node is up and its PEER published at this address (empty on a
    // single node): start heartbeating. Sent once, by the node.
    caf::reacts_to<atom::start, std::string>,
    // Heartbeat: renew this node's entry, look for new and silent peers.
    caf::reacts_to<atom::tick>,
    // A peer announced its graceful stop, or a survivor declared a node down.
    caf::reacts_to<shutdown_event>,
    // A peer dialed this node (see peer_actor).
    caf::reacts_to<atom::hello, std::string, uint64_t, peer_actor>,
    // Graceful stop: tell the peers, remove this node's state.
    caf::replies_to<atom::shutdown>::with<atom::ok>>;

/// Answers the HTTP API, /healthz and /metrics.
using http_api_actor = caf::typed_actor<
    // One request; the answer goes to the exchange's callback.
    caf::reacts_to<http_exchange_ptr>>;

} // namespace wsc

CAF_BEGIN_TYPE_ID_BLOCK(wscluster_actors, caf::id_block::wscluster::end)
CAF_ADD_TYPE_ID(wscluster_actors, (wsc::connection_actor))
CAF_ADD_TYPE_ID(wscluster_actors, (wsc::frame_context))
CAF_ADD_TYPE_ID(wscluster_actors, (wsc::peer_actor))
CAF_ADD_TYPE_ID(wscluster_actors, (wsc::relay_actor))
CAF_END_TYPE_ID_BLOCK(wscluster_actors)

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(wsc::local_only)
