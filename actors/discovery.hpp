#pragma once

#include "actors/actors.hpp"
#include "actors/cluster_event_log.hpp"
#include "actors/metrics.hpp"
#include "actors/node_health.hpp"
#include "actors/node_identity.hpp"
#include "protocol/error.hpp"

#include <caf/error.hpp>
#include <caf/make_message.hpp>

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>

namespace wsc {

/// A peer node as DISCOVERY knows it.
struct known_peer {
  node_info info;
  /// Invalid while not connected.
  peer_actor handle;
  bool connecting = false;
  /// DISCOVER was emitted for this incarnation.
  bool announced = false;
  /// When the store stopped listing this peer (ms), or 0.
  int64_t missing_since = 0;
};

/// The most peers DISCOVERY keeps (a cluster has a few nodes; hellos with
/// invented ids beyond are ignored).
constexpr size_t max_peers = 1024;

/// The most ids of registered nodes one read of the store takes: every peer
/// DISCOVERY keeps and this node. More listed means ids that others wrote
/// into the store: the read stays this size (its cost must not grow with
/// them) and the ids without an entry leave the list.
constexpr size_t max_node_ids = max_peers + 1;

/// The STORE's answer to `atom::nodes` while it lists more than
/// max_node_ids ids, or could not read some entries: `unavailable` to
/// callers that need every node, with the entries it did read for
/// DISCOVERY (the answer's type stays the list of every node).
inline caf::error partial_nodes(std::vector<node_info> sample) {
  return {static_cast<uint8_t>(ec::unavailable), ec_category,
          caf::make_message(std::string{"the store lists more node ids than "
                                        "a cluster has nodes"},
                            std::move(sample))};
}

/// The entries of a `partial_nodes` answer, or none for other errors.
inline std::optional<std::vector<node_info>> sample_of(caf::error& err) {
  auto& ctx = err.context();
  if (err != ec::unavailable ||
      !ctx.match_elements<std::string, std::vector<node_info>>())
    return std::nullopt;
  return std::move(ctx.get_mutable_as<std::vector<node_info>>(1));
}

/// The settings of DISCOVERY.
struct discovery_config {
  node_identity who;
  /// The address of this node's HTTP and WebSocket listener (its entry).
  std::string listen;
  /// This node takes part in a cluster (publishes and dials peers).
  bool clustered = false;
  std::chrono::milliseconds heartbeat{1000};
  /// A peer silent for longer is declared down.
  std::chrono::milliseconds node_timeout{3000};
  std::chrono::milliseconds request_timeout{5000};
};

/// The state of the DISCOVERY actor.
struct discovery_state {
  static inline const char* name = "discovery";

  discovery_config cfg;
  state_store_actor store;
  /// Gives the bindings to write back after an outage of the store.
  registry_actor registry;
  /// This node's PEER: learns which peers are up (from `atom::peer`: it is
  /// spawned after DISCOVERY).
  peer_endpoint_actor endpoint;
  event_bus_actor events;
  /// DISCOVERY's heartbeat tells whether the store is reachable.
  node_health_ptr health;
  std::shared_ptr<node_metrics> metrics;
  std::shared_ptr<cluster_event_log> cluster_events;
  /// This node's entry as written at every heartbeat.
  node_info self_info;
  std::map<std::string, known_peer> peers;
  /// (node, incarnation) pairs already reported, so each SHUTDOWN fires
  /// once (at most max_peers kept).
  std::set<std::pair<std::string, uint64_t>> reported_down;
  bool stopping = false;
  /// `start` arrived: the heartbeat runs.
  bool started = false;
  /// A write-back of every binding is under way.
  bool writing_back = false;
  /// A write-back was asked for and has not succeeded since: it runs after
  /// the one under way, or at the next heartbeat after a failure.
  bool write_back_due = false;
  /// Write-backs that failed in a row, and how many heartbeats that want
  /// one let it be before the next try: a write-back that never finishes
  /// in time (a huge node, a slow store) is retried ever less often (after
  /// 1, 2, 4 ... at most 32 heartbeats), not rewritten at every heartbeat.
  /// A heartbeat that finds this node's entry lost tries at once.
  uint32_t write_back_failures = 0;
  uint32_t write_back_skips = 0;
  /// Heartbeats answered so far.
  uint64_t heartbeats = 0;
  /// No peer is declared down before this time (ms): set when the store
  /// comes back, as every lease expired meanwhile.
  int64_t claims_allowed_after = 0;

  discovery_actor::stateful_pointer<discovery_state> self = nullptr;

  /// Renews this node's entry; after an outage writes back every binding.
  void heartbeat();

  /// Writes every live binding of this node to the store, then reports the
  /// store healthy.
  void write_back();

  /// A heartbeat wants a write-back that failed before, or the store back
  /// in sync: writes back unless failures ask to wait longer.
  void retry_write_back();

  /// Sends `hello` to every connected peer again (after this node's entry
  /// was lost), so that peers that dropped it route to it again.
  void reintroduce();

  /// Compares the store's node list with the known peers. A list that is
  /// not `complete` (a sample, see partial_nodes) gives up no peer for
  /// being unlisted.
  void reconcile(std::vector<node_info> nodes, bool complete = true);

  /// Asks the store for every node and reconciles; a failure only logs.
  void read_nodes();

  /// Dials a peer's PEER actor through the middleman.
  void connect(const node_info& info);

  /// A peer's PEER actor is reachable: route to it, watch it, DISCOVER.
  void attach(const std::string& id, uint64_t incarnation, peer_actor handle);

  /// Drops a peer and reports its SHUTDOWN once (locally only).
  void peer_gone(const std::string& id, uint64_t incarnation,
                 const std::string& reason);
};

/// Spawn arguments: the settings, the (control) state store, the REGISTRY,
/// the EVENT_BUS, and what it reports to (health, metrics, the cluster's
/// event log). The PEER is spawned with this actor's handle and hands its
/// own back (`atom::peer`) before it is published; `start` brings the
/// PEER's address, and the heartbeat runs from then on.
discovery_actor::behavior_type
discovery(discovery_actor::stateful_pointer<discovery_state> self,
          discovery_config cfg, state_store_actor store,
          registry_actor registry, event_bus_actor events,
          node_health_ptr health, std::shared_ptr<node_metrics> metrics,
          std::shared_ptr<cluster_event_log> cluster_events);

} // namespace wsc
