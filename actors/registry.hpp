#pragma once

// -- The REGISTRY -------------------------------------------------------------
//
// Owns this node's connections and routes deliveries. Its code by role:
// registry.cpp        the behaviour, and a delivery's last step: writing it
//                     to the local connections;
// registry_send.cpp   the messaging operations (send, publish, broadcast,
//                     groups, presence), from the store's answer to `route`;
// registry_conns.cpp  a connection's life: bind, welcome, replay, catch-up,
//                     removal (the order of its frames is a frame_order).
// Other nodes are the PEER's business: it gets the remote part of a route.

#include "actors/actors.hpp"
#include "actors/connection_sink.hpp"
#include "actors/metrics.hpp"
#include "actors/node_identity.hpp"
#include "flow/frame_order.hpp"
#include "flow/idem_waits.hpp"
#include "flow/inbox_pages.hpp"
#include "flow/store_budgets.hpp"

#include <caf/duration.hpp>
#include <caf/typed_response_promise.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
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
  /// How much of the inbox one read takes (replay and gaps).
  inbox_pages pages;
  /// A replay waiting for the client to read: how long until the next look,
  /// and the bytes queued at the last one (less now: the client reads).
  std::chrono::milliseconds replay_wait{0};
  uint64_t replay_queued = 0;
  /// REGISTER went out for it: LOGOUT follows when it goes, whether or not
  /// its replay finished (a connection closed during it had a REGISTER
  /// without a LOGOUT: review helper-46).
  bool registered = false;
};

/// The settings of the REGISTRY.
struct registry_config {
  node_identity who;
  /// The state store is the embedder's own: requests to it get
  /// `request_timeout` (the built-in stores answer every request).
  bool custom_store = false;
  std::chrono::milliseconds request_timeout{5000};
  std::chrono::milliseconds idempotency_window{10 * 60 * 1000};
  uint64_t stored_bytes_rate = 1u << 20;
  /// stored-bytes-kept, refilled over inbox-max-age (0: no bound).
  uint64_t stored_bytes_kept = 1ull << 30;
  /// The same for all uids of one client address (rate 0: none).
  uint64_t stored_bytes_rate_per_address = 4u << 20;
  uint64_t stored_bytes_kept_per_address = 4ull << 30;
  std::chrono::milliseconds inbox_max_age{24 * 3600 * 1000};
  uint64_t max_fanout_bytes = 1u << 20;
  uint64_t send_queue_limit = 1024;
  uint64_t send_queue_bytes = 1u << 20;
  uint64_t max_resumes_per_uid = 4;
  uint64_t max_groups = 100;
  uint64_t members_limit = 1000;
};

/// The state of the REGISTRY actor.
struct registry_state {
  static inline const char* name = "registry";

  registry_config cfg;
  state_store_actor store;
  event_bus_actor events;
  /// Checks stored messages for UNREAD (null while unread-after is 0).
  unread_actor unread;
  /// Gets the remote part of each route (from `atom::peer`: spawned after
  /// the REGISTRY).
  peer_endpoint_actor peer;
  std::shared_ptr<node_metrics> metrics;
  /// For requests to the store (see the spawn function).
  caf::duration store_timeout;
  std::unordered_map<std::string, local_connection> connections;
  std::unordered_map<std::string, std::vector<std::string>> conns_by_uid;
  /// Replays in progress per uid (`max-resumes-per-uid`).
  std::unordered_map<std::string, uint32_t> resumes;
  /// Per sending uid with local connections: bytes its durable messages
  /// may still store (`stored-bytes-rate`, `stored-bytes-kept`).
  store_budgets budgets;
  /// Per client address (`address_key`) of the sending connections: the
  /// same budgets for all its uids together. Under auth=none one address
  /// may take any number of uids, each with budgets of its own (helper-51's
  /// probe: 1.17 GB of Redis in 8 s from one address).
  store_budgets address_budgets;
  /// Durable publishes of one client address waiting for the store at once:
  /// each may store up to max-fanout-bytes (plus its members' new inboxes)
  /// before it is charged, and an address may have many uids (helper-54:
  /// 120 uids x 8 publishes stored 223 MB in 3.4 s past an 8 MiB burst).
  static constexpr uint32_t max_address_publishes_in_flight = 32;
  /// Durable deliveries with an idem in flight, and their repeats waiting.
  idem_waits idems;
  /// Per uid: bytes of its inbox the first pages of its replays may still
  /// read from the store. A page costs the store about its bytes, and a
  /// client that reconnects at once makes the store read one per handshake
  /// (helper-37's probe: one uid reconnecting with `device=` 132 times a
  /// second took 0.62 of Redis' core), so a resume is admitted only while
  /// the uid's bucket is out of debt. Later pages come as fast as the client
  /// reads them and are not charged.
  store_budgets replays{replay_bytes_rate, 4 * replay_bytes_rate};
  static constexpr double replay_bytes_rate = 4 << 20;
  /// Per sending uid: receivers its volatile sends and publishes may still
  /// look up in the store (charged as 64 bytes each, the envelope
  /// store_budgets counts per copy). A frame costs a connection one of
  /// `rate-limit` however many uids the store reads for it (helper-40's
  /// probe: 95 volatile publishes a second to a 10,000-member group took
  /// others' send->ack from 2 to 760 ms); durable messages are bounded by
  /// the bytes they store instead.
  store_budgets lookups{64 * lookups_per_second, 64 * 5 * lookups_per_second};
  static constexpr double lookups_per_second = 20'000;
  /// Makes message ids unique within this incarnation.
  uint64_t next_msg = 0;

  registry_actor::stateful_pointer<registry_state> self = nullptr;

  /// Takes the spawn arguments and the settings they imply.
  void init(registry_config config, state_store_actor st, event_bus_actor bus,
            unread_actor checker, std::shared_ptr<node_metrics> counters);

  // -- messaging (registry_send.cpp) ------------------------------------------

  /// Stores (if durable) and routes a message to uids; answers per uid.
  caf::result<delivery_report> send(delivery d);

  /// Writes a message to one connection (`to_conn`) on whichever node holds
  /// it; the report has one entry: 1 connection, or 0 and why.
  caf::result<delivery_report> send_to_conn(delivery d);

  /// Stores (if durable) and routes a message to every member of a group.
  caf::result<delivery_report> publish(delivery d);

  using delivery_rp = caf::typed_response_promise<delivery_report>;

  /// The store round trip of `send` and `publish`, answered through `rp`;
  /// `first` is the idem key this delivery holds in `idems` (empty if
  /// none), freed when the store answered.
  void store_send(delivery d, delivery_rp rp, std::string first);
  void store_publish(delivery d, delivery_rp rp, std::string first);

  /// Runs `go` now, with the idem key it then holds, or, while another
  /// delivery of this node with the same sender and idem waits for the
  /// store, once that one has its answer (idem_waits).
  void after_earlier_idem(
      delivery d, delivery_rp rp,
      std::function<void(delivery, delivery_rp, std::string)> go);

  /// The delivery holding idem key `first` has its answer (`how`): the
  /// repeats that waited for it go on.
  void idem_answered(const std::string& first, idem_waits::outcome how);

  /// Writes a message to every connection on every node.
  caf::result<atom::ok> broadcast(delivery d);

  /// Checks the delivery (frames::check) and the sender's store budget, gives a
  /// durable message its id and drops an `idem` nobody looks up.
  caf::error prepare(delivery& d);

  /// Gives back the stored bytes `prepare` reserved for a durable message
  /// (the store answered or failed).
  void settle(const delivery& d);

  /// After the store answered: charges the sender for what was stored,
  /// watches it for UNREAD, and routes it.
  void dispatch(delivery d, route_table routes, size_t receivers);

  /// Delivers to the local part of a route table here and hands the rest
  /// to the PEER.
  void route(delivery d, route_table routes);

  /// Tells the UNREAD checker which copies of a durable message were stored
  /// (nothing while unread-after is 0).
  void watch_unread(const delivery& d, const route_table& routes);

  /// A message id unique in the cluster: node, incarnation, counter.
  std::string make_msg_id();

  caf::result<atom::ok> join(const conn_ref& who, const std::string& group);

  caf::result<atom::ok> leave(const conn_ref& who, const std::string& group);

  caf::result<std::vector<bool>> presence(std::vector<std::string> uids);

  /// Closes every connection of `uid`, on every node, with `code`.
  caf::result<atom::ok> disconnect(const std::string& uid, uint16_t code);

  // -- local delivery (registry.cpp) ------------------------------------------

  /// Writes a delivery to the local connections of `uids` (all connections
  /// for a broadcast); the frame is encoded once per uid, or once in all
  /// for broadcasts and groups. Returns the number of connections.
  uint32_t deliver_local(const delivery& d,
                         const std::vector<std::string>* uids);

  /// Writes the valid deliveries of another node's batch here.
  atom::ok deliver_batch(const delivery_batch& batch);

  // -- connections (registry_conns.cpp) ---------------------------------------

  /// Adds a connection, binds it in the store and opens it (welcome, then
  /// for a device its replay) whether or not the store answers.
  caf::result<atom::ok> register_conn(const conn_ref& who,
                                      const connection_actor& handle,
                                      sink_ref sink, int64_t since);

  /// Counts a replay of `uid` unless `max-resumes-per-uid` are running or
  /// its replays read more than `replay_bytes_rate` lately.
  bool admit_resume(const std::string& uid);

  /// Charges what a replay's first page read to its uid's `replays` bucket
  /// (later pages come as fast as the client reads them).
  void charge_replay(const std::string& uid, const inbox_replay& page);

  /// The store bound (or failed to bind) a connection: open it.
  void on_bound(const conn_ref& who, int64_t since, bool came_online,
                caf::typed_response_promise<atom::ok> rp);

  /// The connection is open (or gone meanwhile): answer its CONNECTION and
  /// tell the events.
  void on_opened(const conn_ref& who, bool came_online,
                 caf::typed_response_promise<atom::ok>& rp);

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

  /// A page read after the welcome (a replay's next page, a gap's
  /// catch-up) found that retention dropped messages it was to write
  /// (`inbox-max-messages` overtook a client that read slowly): closes the
  /// connection with 1013 after what it was given, so that the reconnect's
  /// welcome says `too_old` instead of the seqs jumping silently
  /// (helper-45's probe). True if it did.
  bool overtaken_by_retention(local_connection& conn, const inbox_replay& page);

  /// Forgets that a connection's replay is in progress.
  void end_resume(local_connection& conn);

  /// Writes a frame to one connection's socket, or holds it while the
  /// connection is not open yet (`seq`: its inbox seq, 0 if volatile;
  /// `msg_id`: the message's id, for durable frames).
  void write(local_connection& conn, uint64_t seq, const frame_ptr& frame,
             std::string_view msg_id = {});

  /// Writes a frame of a resume (welcome, replay): not counted against the
  /// send queue limit.
  static void write_replay(local_connection& conn, frame_ptr frame);

  /// Writes a message read from the inbox (replay, gap): not counted.
  static void write_stored(local_connection& conn, const stored_message& msg);

  /// Writes frames that waited (see frame_order::release_held).
  static void write_held(local_connection& conn, std::vector<frame_ptr> held);

  /// Reads the inbox after the connection's last seq and writes what is
  /// missing, then the held frames (a frame arrived after a gap: its
  /// predecessors are late or were lost with a peer).
  void catch_up(const std::string& conn_id);

  /// Removes a connection and unbinds it in the state store.
  void remove(const std::string& conn_id);

  /// Closes every local connection of `uid` with `code`.
  void close_uid(const std::string& uid, uint16_t code);

  /// Tells every connection to come back later (`bye`) and closes it.
  atom::ok drain(uint32_t period_ms);

  /// The bindings of every local connection.
  std::vector<binding> bindings() const;
};

/// Spawn arguments: the settings, the state store, the EVENT_BUS, the UNREAD
/// checker (may be null) and the node's metrics. The PEER arrives later, as
/// `atom::peer`.
registry_actor::behavior_type
registry(registry_actor::stateful_pointer<registry_state> self,
         registry_config cfg, state_store_actor store, event_bus_actor events,
         unread_actor unread, std::shared_ptr<node_metrics> metrics);

} // namespace wsc
