#pragma once

#include <caf/expected.hpp>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#ifndef WSC_DEFAULT_WEB_ROOT
#define WSC_DEFAULT_WEB_ROOT "web"
#endif

namespace wsc {

/// A host and port, as written `host:port`.
struct endpoint {
  std::string host;
  uint16_t port = 0;

  std::string to_string() const;
};

/// A parsed `redis://[:password@]host:port[/db]` URL.
struct redis_url {
  std::string host;
  uint16_t port = 6379;
  std::string password;
  int db = 0;
  /// For `cluster://[:password@]host:port[,host:port...]`: the whole text
  /// (Redis Cluster mode; host and port are then the first seed's, e.g. for
  /// the relay's classic pub/sub). Empty for a single Redis.
  std::string cluster;

  /// Whether this names a Redis Cluster.
  bool is_cluster() const noexcept { return !cluster.empty(); }

  /// The URL with the password masked, for logs.
  std::string redacted() const;
};

/// Every setting of a node. Each field's default is the contract's; the
/// option table in options.cpp is the one place that names, documents and
/// parses them.
struct options {
  using duration = std::chrono::milliseconds;

  endpoint listen{"127.0.0.1", 8080};
  std::string node_id; // empty: generated at start
  std::string state = "memory";
  redis_url redis;
  bool has_redis = false;
  std::string redis_prefix = "wscluster";
  endpoint cluster_listen{"127.0.0.1", 0};
  endpoint cluster_advertise; // empty host: the bound cluster-listen
  duration heartbeat{1000};
  duration node_timeout{3000};
  std::string cluster_tls_cert;
  std::string cluster_tls_key;
  std::string cluster_tls_ca;
  bool cluster_insecure = false;
  /// Authenticates deliveries relayed through Redis (HMAC-SHA256).
  std::string cluster_secret;
  duration drain_period{5000};
  std::string auth = "none";
  std::string jwt_secret;
  std::string api_key;
  std::vector<std::string> allowed_origins; // empty: any
  bool client_broadcast = false;
  uint64_t max_message_bytes = 65536;
  uint64_t max_connections = 100000;
  uint64_t send_queue_limit = 1024;
  uint64_t rate_limit = 100;
  duration idle_timeout{60000};
  // -- beyond the contract's table
  // ---------------------------------------------
  duration handshake_timeout{10000};
  uint64_t max_groups = 100;
  uint64_t members_limit = 1000;
  std::vector<std::string> handshake_chain{"origin", "identity"};
  std::vector<std::string> open_chain;
  std::string log_level = "info";
  uint64_t io_threads = 1;
  uint64_t actor_threads = 2;
  std::string scheduler_policy = "loop";
  duration request_timeout{5000};
  /// How long the Redis STORE waits after a request for more to send in the
  /// same round trip (0: at once). Trades latency for fewer round trips:
  /// A/B in bench/PROFILE.md (S2: -22 to -42 % CPU, +0.7 ms p50 at 1 ms).
  duration store_batch_delay{1};
  /// Replicas (Redis WAIT) that must have a durable message's copy before
  /// its receivers are acked as stored; 0: no WAIT (async replication, a
  /// failover may lose acked messages). Trades latency for durability.
  uint64_t durable_replicas = 0;
  /// How long one WAIT may take; receivers of a write short of replicas by
  /// then are answered `unavailable`.
  duration durable_replicas_timeout{500};
  std::string web_root = WSC_DEFAULT_WEB_ROOT;
  /// Frame types whose messages are not stored (at most once), e.g. typing.
  std::vector<std::string> volatile_types;
  uint64_t inbox_max_messages = 1000;
  duration inbox_max_age{24 * 3600 * 1000};
  /// How long a sender's `idem` is remembered: a durable send or publish
  /// repeating it within this time is acked again, not stored twice. 0: off.
  duration idempotency_window{10 * 60 * 1000};
  // -- budgets against abuse (docs/security.md) ------------------------------
  /// Serve the HTTP API without `api-key` on a non-loopback `listen`.
  bool api_insecure = false;
  /// Receivers times payload bytes that one send or publish (frame or API
  /// request) may produce.
  uint64_t max_fanout_bytes = 1u << 20;
  /// Bytes queued for one connection before it is closed with 1008.
  uint64_t send_queue_bytes = 1u << 20;
  /// SO_SNDBUF of client sockets (socket-send-buffer; 0: autotuning).
  uint64_t socket_send_buffer = 256u << 10;
  /// Open connections of one uid on this node; 0: no limit.
  uint64_t max_connections_per_uid = 64;
  /// Open connections from one client address on this node; 0: no limit.
  uint64_t max_connections_per_address = 1000;
  /// WebSocket handshakes one client address may start per second on this
  /// node (bursts of ten seconds' worth); 0: no limit.
  uint64_t handshake_rate_per_address = 100;
  /// Resumes (inbox replays) of one uid in progress on this node at once.
  uint64_t max_resumes_per_uid = 4;
  /// Bytes one uid's durable sends and publishes may store per second on
  /// this node (receivers times payload); beyond: `rate_limited`.
  uint64_t stored_bytes_rate = 1u << 20;
  uint64_t stored_bytes_kept = 1ull << 30;
  /// The same two budgets for all uids of one client address together
  /// (under auth=none one address may take any number of uids); rate 0: no
  /// per-address budget.
  uint64_t stored_bytes_rate_per_address = 4u << 20;
  uint64_t stored_bytes_kept_per_address = 4ull << 30;
  /// `state=memory`: bytes all inboxes of the node may hold together (each
  /// message's copies and their bookkeeping); beyond: `unavailable`. The
  /// per-uid budgets bound one uid; this bounds the node (Redis has its
  /// own maxmemory). 0: no bound.
  uint64_t memory_store_max_bytes = 1ull << 28;
  /// Most members of one group (`group_full`).
  uint64_t max_group_members = 10000;
  /// `open`: any client may join any group; `token`: only groups of its
  /// JWT `groups` claim (or joined for it by the application).
  std::string group_join = "open";
  /// `persistent`: a uid stays in its groups while offline (its inbox gets
  /// the group's messages); `session`: membership ends with its last
  /// connection.
  std::string group_membership = "persistent";
  /// The wire form of client frames: `json` (the contract's) or `swoft`
  /// (`{"cmd":..,"data":..,"ext":..}`), or a codec an embedder registered.
  std::string frame_codec = "json";
  /// Required `aud` / `iss` of JWTs (empty: not checked).
  std::string jwt_audience;
  std::string jwt_issuer;
  // -- webhooks (README "Webhooks") ------------------------------------------
  /// Where events are POSTed (http:// or https://); empty: no webhooks.
  std::string webhook_url;
  /// Key of the HMAC-SHA256 in X-Wscluster-Signature.
  std::string webhook_secret;
  /// Events sent: online, offline, register, logout, join, leave, unread.
  std::vector<std::string> webhook_events{"online", "offline"};
  /// Extra CA file (PEM) trusted besides the system store (https).
  std::string webhook_ca;
  /// First back-off after a failed POST (doubled per attempt, jittered,
  /// at most 10 s).
  duration webhook_retry_base{500};
  /// How long an event is retried before it is dropped (at least this long).
  duration webhook_retry_window{60'000};
  /// Queued webhook events from which presence and connection events
  /// coalesce (see webhook_queue::push).
  uint64_t webhook_coalesce_from = 50'000;
  /// A durable message not read by any device of its uid within this time
  /// gives an `unread` event; 0: off.
  duration unread_after{30'000};
};

/// The outcome of reading the command line, the environment and the config
/// file.
struct parsed_options {
  options opts;
  /// `--help` was given: print help_text() and exit 0.
  bool help = false;
  /// `--version` was given: print `wscluster <version()>` and exit 0.
  bool version = false;
};

/// Environment variables by name (only the `WSCLUSTER_` ones matter).
using environment = std::map<std::string, std::string>;

/// The environment of this process (`environ`).
environment process_environment();

/// The environment variable that sets option `name`: `WSCLUSTER_` followed
/// by the name in upper case with `-` as `_` (`max-connections` ->
/// `WSCLUSTER_MAX_CONNECTIONS`).
std::string environment_name(const std::string& name);

/// Reads `--name=value` arguments, `WSCLUSTER_<NAME>` variables of `env` and
/// the INI file named by `--config-file` (or `WSCLUSTER_CONFIG_FILE`).
/// Precedence: command line > environment > config file > default. A
/// `WSCLUSTER_` variable that names no option is an error, like an unknown
/// option. Errors name the offending option in one line.
caf::expected<parsed_options>
parse_options(const std::vector<std::string>& args,
              const environment& env = process_environment());

/// This build's version, `major.minor.patch` (CMake's project version).
const char* version();

/// The default `web-root`: `<folder of the running binary>/../share/
/// wscluster/web` when that folder exists (an installed binary), else the
/// source tree's `web/` (WSC_DEFAULT_WEB_ROOT).
std::string default_web_root();

/// Checks the combination of settings (e.g. `state=redis` needs `redis`).
caf::error validate(const options& opts);

/// Every option with its default and meaning, for `--help`.
std::string help_text();

/// Whether `host` is a loopback address (127.0.0.0/8, ::1) or `localhost`.
bool is_loopback(const std::string& host);

/// Parses a duration written `500ms`, `1s`, `2min` or `1h`.
caf::expected<options::duration> parse_duration(const std::string& text);

/// Parses `host:port`.
caf::expected<endpoint> parse_endpoint(const std::string& text);

/// Parses `redis://[:password@]host:port[/db]` or
/// `cluster://[:password@]host:port[,host:port...]` (Redis Cluster).
caf::expected<redis_url> parse_redis_url(const std::string& text);

} // namespace wsc
