#pragma once

// -- Messages that actors of one node or of several nodes exchange -----------
//
// Every struct here may cross to another node, so each has an `inspect`
// overload and a type id in atoms.hpp. Payloads travel as JSON text: a frame's
// `data` is encoded once by whoever receives it from a client and never parsed
// again on the way.

#include <caf/meta/type_name.hpp>

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace wsc {

/// A parsed client frame, shared read-only between the connection and the
/// behaviour handling it (local only).
using json_ptr = std::shared_ptr<const nlohmann::json>;

/// An encoded outgoing frame, shared by every connection that receives it
/// (local only).
using frame_ptr = std::shared_ptr<const std::string>;

/// The socket side of a connection (local only; see
/// actors/connection_sink.hpp). The REGISTRY writes deliveries to it directly:
/// one thread hand-off less per delivered frame than going through the
/// CONNECTION actor.
class connection_sink;
using sink_ref = std::weak_ptr<connection_sink>;

/// An HTTP request waiting for its answer (local only; see http_api.hpp).
struct http_exchange;
using http_exchange_ptr = std::shared_ptr<http_exchange>;

/// One WebSocket connection as the cluster sees it.
struct conn_ref {
  std::string node;
  std::string conn;
  std::string uid;
  /// The client's device (query `device=`): its read cursor lives in the
  /// store. Empty: no durable resume for this connection.
  std::string device;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, conn_ref& x) {
  return f(caf::meta::type_name("conn_ref"), x.node, x.conn, x.uid, x.device);
}

/// A uid bound to one connection on one node: what the state store keeps.
/// `incarnation` tells a restarted node's entries from its predecessor's.
struct binding {
  std::string uid;
  std::string node;
  std::string conn;
  uint64_t incarnation = 0;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, binding& x) {
  return f(caf::meta::type_name("binding"), x.uid, x.node, x.conn,
           x.incarnation);
}

/// The uids of a lookup that have connections on `node`, with how many.
struct node_route {
  std::string node;
  std::vector<std::string> uids;
  std::vector<uint32_t> connections;
  /// For durable messages: the inbox sequence number each uid's copy got.
  std::vector<uint64_t> seqs;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_route& x) {
  return f(caf::meta::type_name("node_route"), x.node, x.uids, x.connections,
           x.seqs);
}

/// Where a set of uids lives, answered by the state store in one round trip.
struct route_table {
  std::vector<node_route> nodes;
  /// Uids of the lookup without any connection.
  std::vector<std::string> offline;
  /// For durable messages: the sequence numbers of the offline uids' copies.
  std::vector<uint64_t> offline_seqs;
  /// For durable messages: the receivers' inboxes whose copy started them
  /// (a new inbox, or a new life of one that expired), each a cost of its
  /// own in the store (store_budgets::new_inbox_bytes). A new life does not
  /// start at seq 1 (its seqs continue the earlier life's), so the seqs do
  /// not tell.
  uint32_t new_inboxes = 0;
  /// Set when the delivery repeats an earlier one of the same sender with
  /// the same `idem` within the idempotency window: the earlier message's
  /// `msg_id`. Nothing was stored and the table routes nowhere.
  std::string duplicate_of;
  /// Set when an earlier delivery of the same sender with the same `idem`
  /// is still being stored: nothing was stored or routed; the sender is
  /// answered `unavailable` and sends again later.
  bool idem_pending = false;
  /// Uids whose part of the state store could not be reached (a Redis
  /// Cluster shard down): nothing was stored for them nor routed to them;
  /// the others got the message.
  std::vector<std::string> unavailable;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, route_table& x) {
  return f(caf::meta::type_name("route_table"), x.nodes, x.offline,
           x.offline_seqs, x.new_inboxes, x.duplicate_of, x.idem_pending,
           x.unavailable);
}

/// What a node knows about itself and tells the others through the state
/// store.
struct node_info {
  std::string id;
  /// The HTTP and WebSocket listener.
  std::string listen;
  /// Where other nodes reach this node's PEER actor.
  std::string cluster;
  uint64_t incarnation = 0;
  int64_t last_heartbeat_ms = 0;
  uint32_t connections = 0;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_info& x) {
  return f(caf::meta::type_name("node_info"), x.id, x.listen, x.cluster,
           x.incarnation, x.last_heartbeat_ms, x.connections);
}

/// What kind of frame a delivery produces at the receiver.
enum class delivery_kind : uint8_t {
  /// `{"type":"message",...}`, one frame per receiving uid.
  message,
  /// `{"type":"broadcast",...}` to every connection.
  broadcast,
  /// `{"type":"group",...}` to the listed members.
  group,
  /// Closes every connection of the listed uids with close code `ts`.
  disconnect,
};

/// One message on its way to receivers, before it is encoded as a frame.
struct delivery {
  delivery_kind kind = delivery_kind::message;
  /// Sender uid; empty for the HTTP API, which the frame shows as null.
  std::string from;
  /// Group name for `group` deliveries.
  std::string group;
  /// The JSON text of the payload.
  std::string data;
  /// Milliseconds since the epoch, or the close code for `disconnect`.
  int64_t ts = 0;
  /// Receivers; empty for `broadcast`.
  std::vector<std::string> uids;
  /// Durable messages are stored in each receiver's inbox before they are
  /// routed; their frames carry `seq` and `msg_id`.
  bool durable = false;
  /// Stable across redeliveries; set for durable messages.
  std::string msg_id;
  /// Per receiver (parallel to `uids`): its inbox sequence number.
  std::vector<uint64_t> seqs;
  /// The sender's idempotency key (frame or API field `idem`, 1-64 bytes of
  /// UTF-8); empty: none. A durable delivery whose sender used the same key
  /// within `idempotency-window` is neither stored nor routed again. Only
  /// the STATE_STORE reads it: it is cleared before deliveries are routed.
  std::string idem;
  /// Connections (ids) that get nothing: the frame's or API's `except`,
  /// plus the sending connection for `except_self`.
  std::vector<std::string> except;
  /// A `message` for one connection (`to_conn`), on any node: volatile (an
  /// inbox belongs to a uid, not to one of its connections); `uids` stays
  /// empty, the receiving node writes the connection's uid as `to`.
  std::string to_conn;
  /// The client address of the sending connection (empty: the HTTP API or
  /// an embedder's behaviour): the sender's node charges its per-address
  /// store budget. Not inspected: it stays on the sender's node.
  std::string sender_address;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, delivery& x) {
  return f(caf::meta::type_name("delivery"), x.kind, x.from, x.group, x.data,
           x.ts, x.uids, x.durable, x.msg_id, x.seqs, x.idem, x.except,
           x.to_conn);
}

/// One message of a uid's inbox.
struct stored_message {
  uint64_t seq = 0;
  std::string msg_id;
  delivery_kind kind = delivery_kind::message;
  std::string from;
  std::string group;
  std::string data;
  int64_t ts = 0;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, stored_message& x) {
  return f(caf::meta::type_name("stored_message"), x.seq, x.msg_id, x.kind,
           x.from, x.group, x.data, x.ts);
}

/// What a device missed: the messages of its uid's inbox after its cursor.
struct inbox_replay {
  /// The position replay starts after (the device's cursor or `since`).
  uint64_t cursor = 0;
  /// The uid's latest sequence number.
  uint64_t last_seq = 0;
  /// Retention dropped messages after the cursor: the replay has a gap.
  bool too_old = false;
  std::vector<stored_message> messages;
  /// The inbox holds more messages after the last one of `messages`: the
  /// page was cut at its limit (ask again after that seq).
  bool more = false;
  /// The oldest seq the inbox keeps (last_seq + 1 if none).
  uint64_t oldest = 0;
  /// The first seq of the inbox's current life (0: unknown). A new life
  /// continues past the earlier one's seqs, on Redis with a jump
  /// (redis_scripts.hpp, inbox_helpers): see `only_new_life_ahead`.
  uint64_t born = 0;
};

/// Whether a replay after `cursor` from an inbox whose oldest kept message
/// is `oldest` and whose latest is `last_seq` misses messages: retention
/// dropped some after the cursor, or the cursor lies past the latest seq,
/// a position from an earlier life of the inbox (it was lost and started
/// over at 1), from which nothing can be resumed. A new life after expiry
/// starts past the earlier life's seqs (frames::seq_hint_keep_ms), so a
/// position of that life lies before the oldest seq.
inline bool replay_misses_messages(uint64_t cursor, uint64_t oldest,
                                   uint64_t last_seq) {
  return cursor > last_seq || (cursor + 1 < oldest && cursor < last_seq);
}

/// Whether all a page reports as too old is that the cursor lies in an
/// earlier life of the inbox while the current one is kept whole from its
/// first seq: the seqs in between never existed (or went with the earlier
/// life), so a connection that stayed open across the expiry has missed
/// nothing of the new life.
inline bool only_new_life_ahead(const inbox_replay& page) {
  return page.born > 0 && page.cursor < page.born && page.oldest == page.born;
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, inbox_replay& x) {
  return f(caf::meta::type_name("inbox_replay"), x.cursor, x.last_seq,
           x.too_old, x.messages, x.more, x.oldest, x.born);
}

/// Deliveries for one node, sent as a single BASP message.
struct delivery_batch {
  std::string origin;
  std::vector<delivery> items;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, delivery_batch& x) {
  return f(caf::meta::type_name("delivery_batch"), x.origin, x.items);
}

/// Per receiving uid, how many connections the message was routed to and
/// whether it was stored in the uid's inbox.
struct delivery_report {
  std::vector<std::string> uids;
  std::vector<uint32_t> connections;
  std::vector<bool> stored;
  /// The message's `msg_id` (durable messages only; empty otherwise).
  std::string msg_id;
  /// The delivery repeated an earlier one (same sender, same `idem`):
  /// nothing was stored or routed and `msg_id` is the earlier message's; a
  /// `send` lists its receivers with 0 connections, stored (by the earlier
  /// one).
  bool duplicate = false;
  /// For a `to_conn` send that reached no connection: "gone" (no such
  /// connection, or its node is not in the cluster) or "unconfirmed" (its
  /// node is only reachable through the relay, or did not answer).
  std::string not_delivered;
  /// Receivers whose part of the state store could not be reached (see
  /// route_table::unavailable): not stored, not delivered.
  std::vector<std::string> unavailable;

  /// The report of a `to_conn` send: 1 connection, or 0 and why not.
  static delivery_report to_conn(uint32_t connections,
                                 const char* not_delivered) {
    delivery_report result;
    result.connections.push_back(connections);
    result.not_delivered = connections > 0 ? "" : not_delivered;
    return result;
  }
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, delivery_report& x) {
  return f(caf::meta::type_name("delivery_report"), x.uids, x.connections,
           x.stored, x.msg_id, x.duplicate, x.not_delivered, x.unavailable);
}

// -- events for event actors --------------------------------------------------

/// A connection opened and its uid is bound (REGISTER).
struct register_event {
  conn_ref who;
};

/// A connection closed and its binding is gone (LOGOUT).
struct logout_event {
  conn_ref who;
};

/// A node joined the cluster or sent its first heartbeat (DISCOVER).
struct discover_event {
  std::string node;
};

/// A node left: `reason` is "graceful" or "timeout" (SHUTDOWN).
struct shutdown_event {
  std::string node;
  std::string reason;
};

/// A client frame arrived, before its behaviour handles it (RECV_MESSAGE).
struct recv_message_event {
  conn_ref who;
  std::string frame;
};

/// A uid's first connection in the cluster opened (`online`, ONLINE) or its
/// last one is gone (OFFLINE). Fired by one node of the cluster: the one
/// whose state store operation flipped the uid's state.
struct presence_event {
  std::string uid;
  bool online = false;
  /// For OFFLINE: "closed" (its last connection closed) or "node_lost" (its
  /// last connections were on a node that died; fired by the survivor that
  /// won the claim). Empty for ONLINE.
  std::string reason;
};

/// A uid joined a group (JOIN), fired by the node that handled the join.
struct join_event {
  std::string uid;
  std::string group;
};

/// A uid left a group (LEAVE), fired by the node that handled the leave.
struct leave_event {
  std::string uid;
  std::string group;
};

/// A durable message was not confirmed (`read`) by any device of its
/// receiver within `unread-after` (UNREAD); fired by the node that stored it.
struct unread_event {
  std::string uid;
  std::string msg_id;
  uint64_t seq = 0;
  /// Sender uid; empty for the HTTP API.
  std::string from;
  /// Set for group messages.
  std::string group;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, register_event& x) {
  return f(caf::meta::type_name("register_event"), x.who);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, logout_event& x) {
  return f(caf::meta::type_name("logout_event"), x.who);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, discover_event& x) {
  return f(caf::meta::type_name("discover_event"), x.node);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, shutdown_event& x) {
  return f(caf::meta::type_name("shutdown_event"), x.node, x.reason);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, recv_message_event& x) {
  return f(caf::meta::type_name("recv_message_event"), x.who, x.frame);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, presence_event& x) {
  return f(caf::meta::type_name("presence_event"), x.uid, x.online, x.reason);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, join_event& x) {
  return f(caf::meta::type_name("join_event"), x.uid, x.group);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, leave_event& x) {
  return f(caf::meta::type_name("leave_event"), x.uid, x.group);
}

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, unread_event& x) {
  return f(caf::meta::type_name("unread_event"), x.uid, x.msg_id, x.seq, x.from,
           x.group);
}

/// Durable copies a node stored (local only): checked for `unread` after
/// `unread-after` (see webhook.hpp).
struct unread_watch {
  std::string msg_id;
  std::string from;
  std::string group;
  std::vector<std::string> uids;
  std::vector<uint64_t> seqs;
};

template<class Inspector>
typename Inspector::result_type inspect(Inspector& f, unread_watch& x) {
  return f(caf::meta::type_name("unread_watch"), x.msg_id, x.from, x.group,
           x.uids, x.seqs);
}

/// The events an event actor can subscribe to, as bits of a mask.
enum event_mask : uint32_t {
  on_register = 1u << 0,
  on_logout = 1u << 1,
  on_discover = 1u << 2,
  on_shutdown = 1u << 3,
  on_recv_message = 1u << 4,
  /// ONLINE and OFFLINE (presence_event).
  on_presence = 1u << 5,
  on_online = on_presence,
  on_offline = on_presence,
  on_join = 1u << 6,
  on_leave = 1u << 7,
  on_unread = 1u << 8,
  on_all_events = (1u << 9) - 1,
};

} // namespace wsc
