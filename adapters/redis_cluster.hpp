#pragma once

// -- A small Redis Cluster client on top of redis_connection -----------------
//
// hiredis 0.14 knows nothing of Redis Cluster, so the routing lives here:
// key -> hash slot (CRC16 of the hash tag), slot -> master (from CLUSTER
// SLOTS), and the redirects a master answers when the map is stale (MOVED)
// or a slot is being migrated (ASK). A batch of commands is pipelined per
// master; a broken connection (failover, killed node) makes the client
// reload the map from any node it knows and retry until a deadline, so the
// promoted replica takes over without the caller noticing more than a delay.
//
// Blocking, single-threaded: owned by one detached actor, like
// redis_connection.

#include "adapters/redis_connection.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace wsc {

// -- slots and endpoints ------------------------------------------------------

/// Number of hash slots of a Redis Cluster.
constexpr uint16_t redis_slot_count = 16384;

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), the checksum
/// of the Redis Cluster specification.
uint16_t crc16_xmodem(std::string_view data);

/// The hash slot of `key`: CRC16 of its hash tag (the text between the first
/// '{' and the first '}' after it, if not empty) or else of the whole key,
/// mod 16384. Keys with the same tag share a slot.
uint16_t key_slot(std::string_view key);

/// A node of the cluster.
struct redis_endpoint {
  std::string host;
  uint16_t port = 0;

  /// "host:port", "[v6]:port" for hosts with a ':'.
  std::string to_string() const;

  friend bool operator==(const redis_endpoint& x, const redis_endpoint& y) {
    return x.port == y.port && x.host == y.host;
  }
  friend bool operator<(const redis_endpoint& x, const redis_endpoint& y) {
    return x.host != y.host ? x.host < y.host : x.port < y.port;
  }
};

/// Parses "host:port" where the port follows the last ':' (so "::1:7000"
/// works) and the host may be bracketed ("[::1]:7000"). An empty host is
/// allowed only with `allow_empty_host` (redirects may leave it out).
caf::expected<redis_endpoint>
parse_redis_endpoint(std::string_view text, bool allow_empty_host = false);

// -- the slot map
// ---------------------------------------------------------------

/// Slots [first, last] served by one master.
struct redis_slot_range {
  uint16_t first = 0;
  uint16_t last = 0;
  redis_endpoint master;
  std::vector<redis_endpoint> replicas;
};

/// Ranges sorted by `first`, never overlapping; slots not listed have no
/// owner (the cluster is incomplete or a node's address is unknown).
using redis_slot_map = std::vector<redis_slot_range>;

/// Whether `next` gives slots to a master that was their replica in `prev`:
/// a failover, which may have lost what the old master had not replicated
/// yet. A resharding (slots moving between masters) is none.
bool promoted_replica(const redis_slot_map& prev, const redis_slot_map& next);

/// Parses a CLUSTER SLOTS reply. An empty host means "the node that
/// answered" (`answered_by`); a node with the unknown host "?" is left out
/// (its range stays without owner). Any other odd shape is an error.
caf::expected<redis_slot_map> parse_cluster_slots(const redisReply& reply,
                                                  std::string_view answered_by);

// -- redirects
// ------------------------------------------------------------------

/// A MOVED or ASK error reply.
struct redis_redirect {
  /// ASK: this one command goes to `to` after an ASKING; MOVED: the slot
  /// belongs to `to` from now on.
  bool ask = false;
  uint16_t slot = 0;
  /// The host is empty when Redis left it out (same host as the node that
  /// answered).
  redis_endpoint to;
};

/// Parses "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>"; none
/// for any other text (including malformed redirects).
std::optional<redis_redirect> parse_redirect(std::string_view error_text);

// -- the client
// -----------------------------------------------------------------

/// Settings of a `redis_cluster`.
struct redis_cluster_config {
  using duration = std::chrono::milliseconds;
  /// Where the slot map is first loaded from; any one reachable node will do.
  std::vector<redis_endpoint> seeds;
  std::string password;
  duration connect_timeout{1000};
  duration io_timeout{1000};
  /// How long a command keeps retrying through an outage (failover) before
  /// it fails with `ec::unavailable`.
  duration retry_deadline{5000};
  /// The least time between two reloads of the slot map.
  duration refresh_interval{100};
  /// MOVED/ASK redirects followed per command before it fails.
  int max_redirects = 5;
  /// Replicas that must acknowledge a command marked `wait` (0: no WAIT),
  /// and how long a master may wait for them.
  int64_t wait_replicas = 0;
  duration wait_timeout{500};
};

/// Parses "cluster://[:password@]host:port[,host:port...]" (the `redis`
/// option's cluster form) into seeds and password.
caf::expected<redis_cluster_config> parse_redis_cluster_url(std::string_view);

/// One command of a batch. Views: the strings must outlive `execute`.
struct redis_cluster_command {
  /// The key that decides the slot (for scripts: one of its KEYS).
  std::string_view key;
  std::vector<std::string_view> argv;
  /// A write that must reach `wait_replicas` replicas: a WAIT follows it on
  /// the same connection (one per master and round trip, after its last
  /// such command: WAIT confirms every earlier write of the connection).
  bool wait = false;
};

/// Counters for tests and metrics.
struct redis_cluster_stats {
  uint64_t moved = 0;
  uint64_t ask = 0;
  uint64_t refreshes = 0;
  uint64_t connects = 0;
  /// Commands sent again after a broken connection or CLUSTERDOWN/TRYAGAIN.
  uint64_t retries = 0;
  /// Slot maps that promoted a replica (see `promoted_replica`).
  uint64_t promotions = 0;
};

/// A blocking client of one Redis Cluster: one connection per master.
class redis_cluster {
public:
  using duration = std::chrono::milliseconds;
  using result = caf::expected<redis_reply_ptr>;

  /// Loads the slot map from the first seed that answers.
  static caf::expected<redis_cluster> open(redis_cluster_config cfg);

  /// Runs `cmds`, pipelined per master; result i belongs to `cmds[i]`. An
  /// error reply is a reply (NOSCRIPT included: see `load_script`); errors
  /// are `ec::unavailable` (no owner reachable within the retry deadline)
  /// or `ec::internal` (too many redirects). With `replicas`, element i is
  /// set to the replicas that acknowledged `cmds[i]` if it is marked `wait`
  /// and got a reply (0 if the WAIT got none), else to -1.
  std::vector<result> execute(const std::vector<redis_cluster_command>& cmds,
                              std::vector<int64_t>* replicas = nullptr);

  /// Runs one command.
  result command(std::string_view key, std::vector<std::string_view> argv);

  /// Loads a Lua script on every master (after a failover the promoted
  /// replica may lack it: call again on NOSCRIPT) and returns its SHA1.
  caf::expected<std::string> load_script(const std::string& source);

  /// Runs `argv` on every master of the slot map (e.g. `INFO server`): per
  /// master its address and its reply, or why it could not be reached.
  std::vector<std::pair<redis_endpoint, result>>
  on_every_master(const std::vector<std::string_view>& argv);

  /// Reloads the slot map unless that happened less than `refresh_interval`
  /// ago (or `force`).
  caf::error refresh(bool force = false);

  const redis_slot_map& slots() const noexcept { return map_; }

  const redis_cluster_stats& stats() const noexcept { return stats_; }

private:
  using clock = std::chrono::steady_clock;

  explicit redis_cluster(redis_cluster_config cfg);

  /// The connection to `ep`, opened if needed; null if unreachable.
  redis_connection* connection(const redis_endpoint& ep, caf::error& why);

  /// Installs a new map and the owner table derived from it.
  void install(redis_slot_map map);

  /// The master of `slot` per the current map, none if uncovered.
  std::optional<redis_endpoint> owner(uint16_t slot) const;

  // -- the parts of `execute`
  // --------------------------------------------------

  struct pass;
  struct pending_command;
  struct shard_pipeline;
  /// Sorts the commands of `todo` by master into `p` (those without one
  /// for later).
  void plan(pass& p, std::vector<pending_command>& todo);
  /// Appends each master's commands to its connection.
  void send(pass& p);
  /// Reads one master's replies (and its WAIT's) into `p`.
  void receive(pass& p, const redis_endpoint& ep, shard_pipeline& s);
  /// Takes a MOVED or ASK reply to `cmd` from `from`: the command goes again
  /// (or fails after max-redirects). False if `text` is no redirect.
  bool follow_redirect(pass& p, pending_command& cmd, std::string_view text,
                       const redis_endpoint& from);

  redis_cluster_config cfg_;
  redis_slot_map map_;
  /// Master of each slot: an index into `masters_`, or `no_owner`.
  std::vector<uint16_t> owners_;
  std::vector<redis_endpoint> masters_;
  std::map<redis_endpoint, redis_connection> conns_;
  std::optional<clock::time_point> last_refresh_;
  redis_cluster_stats stats_;
};

} // namespace wsc
