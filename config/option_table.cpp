#include "config/option_table.hpp"

#include <caf/sec.hpp>

#include <algorithm>
#include <cctype>
#include <sstream>

// Set by CMake for this file: where the web files lie relative to the
// installed binary's folder.
#ifndef WSC_INSTALLED_WEB_ROOT
#define WSC_INSTALLED_WEB_ROOT "../share/wscluster/web"
#endif

namespace wsc::option_table {

using namespace std::chrono_literals;

caf::error invalid(const std::string& what) {
  return caf::make_error(caf::sec::invalid_argument, what);
}

std::string reason_of(const caf::error& err) {
  const auto& ctx = err.context();
  return ctx.match_elements<std::string>() ? ctx.get_as<std::string>(0)
                                           : caf::to_string(err);
}

std::string trim(std::string s) {
  auto not_space = [](unsigned char c) {
    return !std::isspace(c);
  };
  s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
  s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
  return s;
}

std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> result;
  std::stringstream in{text};
  std::string item;
  while (std::getline(in, item, ','))
    if (auto t = trim(item); !t.empty())
      result.push_back(std::move(t));
  return result;
}

caf::expected<uint64_t> parse_uint(const std::string& text, uint64_t min,
                                   uint64_t max) {
  if (text.empty() ||
      !std::all_of(text.begin(), text.end(),
                   [](unsigned char c) { return std::isdigit(c); }))
    return invalid("expected a non-negative integer, got '" + text + "'");
  uint64_t value = 0;
  try {
    value = std::stoull(text);
  } catch (...) {
    return invalid("number out of range: '" + text + "'");
  }
  if (value < min || value > max)
    return invalid("value " + text + " is outside [" + std::to_string(min) +
                   ", " + std::to_string(max) + "]");
  return value;
}

namespace {

caf::expected<bool> parse_bool(const std::string& text) {
  if (text == "true" || text == "1" || text == "yes" || text == "on")
    return true;
  if (text == "false" || text == "0" || text == "no" || text == "off")
    return false;
  return invalid("expected true or false, got '" + text + "'");
}

template<class T, class Parse>
setter field(T options::*member, Parse parse) {
  return [member, parse](options& opts, const std::string& text) -> caf::error {
    auto value = parse(text);
    if (!value)
      return std::move(value.error());
    opts.*member = std::move(*value);
    return caf::none;
  };
}

setter text_field(std::string options::*member) {
  return [member](options& opts, const std::string& text) -> caf::error {
    opts.*member = text;
    return caf::none;
  };
}

setter one_of(std::string options::*member, std::vector<std::string> choices) {
  return
      [member, choices](options& opts, const std::string& text) -> caf::error {
        if (std::find(choices.begin(), choices.end(), text) == choices.end()) {
          std::string all;
          for (auto& c : choices)
            all += (all.empty() ? "" : ", ") + c;
          return invalid("expected one of " + all + ", got '" + text + "'");
        }
        opts.*member = text;
        return caf::none;
      };
}

setter uint_field(uint64_t options::*member, uint64_t min, uint64_t max) {
  return field(member, [min, max](const std::string& text) {
    return parse_uint(text, min, max);
  });
}

/// A duration in [min, max]. A minimum keeps a value from turning a
/// protection off or losing data: `idle-timeout=0` disabled the idle close,
/// `inbox-max-age=0ms` acked messages that no replay could find.
setter duration_field(options::duration options::*member,
                      options::duration min = options::duration::zero(),
                      options::duration max = options::duration::max()) {
  return
      [member, min, max](options& opts, const std::string& text) -> caf::error {
        auto value = parse_duration(text);
        if (!value)
          return std::move(value.error());
        if (*value < min || *value > max)
          return invalid("duration " + text + " is outside [" +
                         std::to_string(min.count()) + "ms, " +
                         (max == options::duration::max()
                              ? std::string{"any"}
                              : std::to_string(max.count()) + "ms") +
                         "]");
        opts.*member = *value;
        return caf::none;
      };
}

setter list_field(std::vector<std::string> options::*member) {
  return [member](options& opts, const std::string& text) -> caf::error {
    opts.*member = split_list(text);
    return caf::none;
  };
}

bool valid_node_id(const std::string& id) {
  return !id.empty() && id.size() <= 64 &&
         std::all_of(id.begin(), id.end(), [](unsigned char c) {
           return std::isalnum(c) || c == '-' || c == '_';
         });
}

/// The options of node and cluster.
std::vector<option_spec> node_options() {
  return {
      {"listen", "127.0.0.1:8080", "HTTP + WebSocket listener (WS at /ws)",
       field(&options::listen, parse_endpoint)},
      {"node-id", "generated, unique",
       "this node's id in the cluster ([A-Za-z0-9_-], at most 64); a node "
       "does not start while a live node has it",
       [](options& opts, const std::string& text) -> caf::error {
         if (!valid_node_id(text))
           return invalid("node id must be 1-64 characters of A-Z a-z 0-9 - _");
         opts.node_id = text;
         return caf::none;
       }},
      {"state", "memory", "memory (single node) or redis (cluster)",
       one_of(&options::state, {"memory", "redis"})},
      {"redis", "-",
       "redis://[:password@]host:port[/db] or, for a Redis Cluster, "
       "cluster://[:password@]host:port[,host:port...]; required with "
       "state=redis",
       [](options& opts, const std::string& text) -> caf::error {
         auto url = parse_redis_url(text);
         if (!url)
           return std::move(url.error());
         opts.redis = std::move(*url);
         opts.has_redis = true;
         return caf::none;
       }},
      {"redis-prefix", "wscluster", "prefix of every Redis key",
       text_field(&options::redis_prefix)},
      {"cluster-listen", "127.0.0.1:0",
       "where this node accepts other nodes (CAF)",
       field(&options::cluster_listen, parse_endpoint)},
      {"cluster-advertise", "the bound cluster-listen",
       "the address other nodes dial",
       field(&options::cluster_advertise, parse_endpoint)},
      {"heartbeat", "1s", "heartbeat interval (500ms, 1s, 2min)",
       duration_field(&options::heartbeat)},
      {"node-timeout", "3s",
       "silence after which a node is declared down (at most 10s)",
       duration_field(&options::node_timeout, 100ms, 10s)},
      {"cluster-tls-cert", "-", "certificate for mutual TLS between nodes",
       text_field(&options::cluster_tls_cert)},
      {"cluster-tls-key", "-", "private key for mutual TLS between nodes",
       text_field(&options::cluster_tls_key)},
      {"cluster-tls-ca", "-", "CA that signs every node's certificate",
       text_field(&options::cluster_tls_ca)},
      {"cluster-insecure", "false",
       "allow plain node-to-node traffic on a non-loopback address",
       field(&options::cluster_insecure, parse_bool)},
      {"cluster-secret", "-",
       "secret shared by the cluster's nodes; authenticates deliveries "
       "relayed through Redis while nodes cannot reach each other (needed "
       "for that relay when cluster-tls-* is set)",
       text_field(&options::cluster_secret)},
      {"drain-period", "5s",
       "on stop, clients are told to reconnect spread over this period",
       duration_field(&options::drain_period)},
  };
}

/// The options of who may connect, and how.
std::vector<option_spec> connect_options() {
  return {
      {"auth", "none", "none (uid from query uid= or header auth) or jwt",
       one_of(&options::auth, {"none", "jwt"})},
      {"jwt-secret", "-", "HS256 secret, required with auth=jwt",
       text_field(&options::jwt_secret)},
      {"jwt-audience", "-", "when set, JWTs must carry this aud",
       text_field(&options::jwt_audience)},
      {"jwt-issuer", "-", "when set, JWTs must carry this iss",
       text_field(&options::jwt_issuer)},
      {"api-key", "-",
       "when set, the HTTP API requires Authorization: Bearer <api-key>",
       text_field(&options::api_key)},
      {"api-insecure", "false",
       "serve the HTTP API without api-key on a non-loopback listen",
       field(&options::api_insecure, parse_bool)},
      {"allowed-origins", "any",
       "comma-separated Origin values accepted at the handshake",
       list_field(&options::allowed_origins)},
      {"max-connections", "100000", "further handshakes get HTTP 503",
       uint_field(&options::max_connections, 1, 10'000'000)},
      {"max-connections-per-uid", "64",
       "open connections of one uid on this node (HTTP 503); 0: no limit",
       uint_field(&options::max_connections_per_uid, 0, 10'000'000)},
      {"max-connections-per-address", "1000",
       "open connections from one client address on this node (HTTP 503); "
       "0: no limit",
       uint_field(&options::max_connections_per_address, 0, 10'000'000)},
      {"handshake-rate-per-address", "100",
       "WebSocket handshakes one client address (IPv6: one /64) may start "
       "per second on this node, bursts of ten seconds' worth (HTTP 503); "
       "0: no limit",
       uint_field(&options::handshake_rate_per_address, 0, 1'000'000)},
      {"handshake-timeout", "10s",
       "time a client has to complete the HTTP request and upgrade",
       duration_field(&options::handshake_timeout, 100ms)},
      {"handshake-chain", "origin,identity",
       "handshake middlewares in order (registered names)",
       list_field(&options::handshake_chain)},
      {"open-chain", "-", "open middlewares in order (registered names)",
       list_field(&options::open_chain)},
      {"frame-codec", "json",
       "wire form of client frames: json, swoft ({\"cmd\":..,\"data\":..,"
       "\"ext\":..}) or a codec registered by an embedding application",
       text_field(&options::frame_codec)},
  };
}

/// The options of what a connection may do.
std::vector<option_spec> client_options() {
  return {
      {"client-broadcast", "false", "may clients send broadcast frames",
       field(&options::client_broadcast, parse_bool)},
      {"max-message-bytes", "65536",
       "larger frames close the connection with 1009",
       uint_field(&options::max_message_bytes, 64, 64u << 20)},
      {"rate-limit", "100",
       "client frames per second per connection (burst 2x); 0 turns it off",
       uint_field(&options::rate_limit, 0, 1'000'000)},
      {"send-queue-limit", "1024",
       "frames queued for a slow reader before it is closed with 1008",
       uint_field(&options::send_queue_limit, 1, 1'000'000)},
      {"send-queue-bytes", "1048576",
       "bytes queued for a slow reader before it is closed with 1008",
       uint_field(&options::send_queue_bytes, 1024, 1ull << 32)},
      {"socket-send-buffer", "262144",
       "SO_SNDBUF of each client socket: bounds what the kernel holds for a "
       "client that does not read, besides send-queue-bytes (Linux caps it "
       "at net.core.wmem_max and doubles that); 0: the kernel's autotuning "
       "(up to 4 MB a socket)",
       uint_field(&options::socket_send_buffer, 0, 1ull << 30)},
      {"idle-timeout", "60s",
       "no frame and no pong for this long closes the connection (at least "
       "1s)",
       duration_field(&options::idle_timeout, 1s)},
      {"max-fanout-bytes", "1048576",
       "most receivers x payload bytes one send or publish (frame or API) "
       "may produce; more: error too_large (HTTP 413)",
       uint_field(&options::max_fanout_bytes, 1024, 1ull << 32)},
      {"stored-bytes-rate", "1048576",
       "bytes per second one uid's durable sends and publishes may store on "
       "this node (receivers x payload, plus ~4.4 KB per inbox a message "
       "starts; burst: twice this or max-fanout-bytes); beyond: error "
       "rate_limited",
       uint_field(&options::stored_bytes_rate, 1024, 1ull << 32)},
      {"stored-bytes-kept", "1073741824",
       "bytes one uid's durable sends and publishes may store on this node "
       "per inbox-max-age (counted as for stored-bytes-rate; refilled "
       "evenly over inbox-max-age, after which messages may be dropped): "
       "bounds what Redis keeps of one uid's messages; beyond: error "
       "rate_limited; 0: no bound",
       uint_field(&options::stored_bytes_kept, 0, 1ull << 50)},
      {"stored-bytes-rate-per-address", "4194304",
       "bytes per second the durable sends and publishes of all uids "
       "connected from one client address (as max-connections-per-address "
       "counts it) may store on this node, counted as for stored-bytes-rate "
       "(burst: twice the larger of this and max-fanout-bytes); beyond: "
       "error rate_limited; 0: no per-address budget at all, kept included "
       "(behind a proxy every client has the proxy's address)",
       uint_field(&options::stored_bytes_rate_per_address, 0, 1ull << 32)},
      {"stored-bytes-kept-per-address", "4294967296",
       "bytes the durable sends and publishes of all uids of one client "
       "address may store on this node per inbox-max-age, as "
       "stored-bytes-kept counts for one uid; 0: no such bound",
       uint_field(&options::stored_bytes_kept_per_address, 0, 1ull << 50)},
      {"memory-store-max-bytes", "268435456",
       "state=memory: bytes all inboxes of this node may hold together "
       "(each receiver's copy of a message and its bookkeeping); a durable "
       "send or publish beyond: error unavailable; 0: no bound",
       uint_field(&options::memory_store_max_bytes, 0, 1ull << 50)},
      {"max-resumes-per-uid", "4",
       "inbox replays of one uid in progress at once on this node; more "
       "are closed with 1013 (try again later)",
       uint_field(&options::max_resumes_per_uid, 1, 10'000)},
      {"max-groups", "100", "groups a uid may join (too_many_groups)",
       uint_field(&options::max_groups, 1, 1'000'000)},
      {"max-group-members", "10000",
       "members of one group; a join beyond: error group_full",
       uint_field(&options::max_group_members, 1, 10'000'000)},
      {"members-limit", "1000", "most uids a members answer lists",
       uint_field(&options::members_limit, 1, 1'000'000)},
      {"group-join", "open",
       "open (any client joins any group) or token (only the groups of its "
       "JWT groups claim, or joined by the application)",
       one_of(&options::group_join, {"open", "token"})},
      {"group-membership", "persistent",
       "persistent (a uid stays in its groups while offline; its inbox gets "
       "their messages) or session (membership ends with its last "
       "connection); the same on every node",
       one_of(&options::group_membership, {"persistent", "session"})},
  };
}

/// The options of threads, timeouts and logs.
std::vector<option_spec> runtime_options() {
  return {
      {"log-level", "info", "debug, info, warn or error",
       one_of(&options::log_level, {"debug", "info", "warn", "error"})},
      {"io-threads", "1", "threads running socket I/O",
       uint_field(&options::io_threads, 1, 64)},
      {"actor-threads", "2", "threads of the actor scheduler",
       uint_field(&options::actor_threads, 1, 64)},
      {"scheduler-policy", "loop",
       "actor scheduler: loop (actors run on the io-threads event loops of "
       "the sockets), or sharing or stealing (CAF's pool of actor-threads "
       "threads)",
       one_of(&options::scheduler_policy, {"sharing", "stealing", "loop"})},
      {"request-timeout", "5s", "timeout of every request between actors",
       duration_field(&options::request_timeout, 100ms)},
      {"store-batch-delay", "1ms",
       "how long the Redis state store waits after a request for more to "
       "send in the same round trip (0: at once); adds up to this much "
       "latency, saves Redis and node CPU at moderate rates",
       duration_field(&options::store_batch_delay, 0ms, 50ms)},
      {"web-root",
       "<binary's folder>/" WSC_INSTALLED_WEB_ROOT
       " if it exists, else the source tree's web/",
       "folder of the demo (/), the dashboard (/dashboard) and their assets",
       text_field(&options::web_root)},
  };
}

/// The options of what is stored, and for how long.
std::vector<option_spec> store_options() {
  return {
      {"durable-replicas", "0",
       "Redis replicas (WAIT) that must have a durable message before its "
       "receivers are acked as stored; fewer within durable-replicas-timeout: "
       "they are answered unavailable (0: no WAIT, a failover may lose "
       "acked messages)",
       uint_field(&options::durable_replicas, 0, 5)},
      {"durable-replicas-timeout", "500ms",
       "how long a durable send waits for durable-replicas (at most a "
       "quarter of request-timeout)",
       duration_field(&options::durable_replicas_timeout, 0ms, 5s)},
      {"volatile-types", "-",
       "frame types not stored in inboxes (at most once), e.g. publish,typing",
       list_field(&options::volatile_types)},
      {"inbox-max-messages", "1000", "messages kept per uid inbox",
       uint_field(&options::inbox_max_messages, 1, 10'000'000)},
      {"inbox-max-age", "24h",
       "age after which inbox messages may be dropped (at least 1s)",
       duration_field(&options::inbox_max_age, 1s)},
      {"idempotency-window", "10m",
       "a durable send or publish repeating its sender's idem within this "
       "time is acked again with the same msg_id, not stored twice; 0: off",
       duration_field(&options::idempotency_window)},
  };
}

/// The options of webhooks and unread events.
std::vector<option_spec> webhook_options() {
  return {
      {"webhook-url", "-",
       "http:// or https:// URL that node events are POSTed to (webhooks)",
       text_field(&options::webhook_url)},
      {"webhook-secret", "-",
       "key of the X-Wscluster-Signature HMAC-SHA256 of each webhook body",
       text_field(&options::webhook_secret)},
      {"webhook-events", "online,offline",
       "events sent to webhook-url: online, offline, register, logout, "
       "join, leave, unread",
       [](options& opts, const std::string& text) -> caf::error {
         static const std::vector<std::string> known{
             "online", "offline", "register", "logout",
             "join",   "leave",   "unread"};
         auto names = split_list(text);
         for (auto& name : names)
           if (std::find(known.begin(), known.end(), name) == known.end())
             return invalid("no webhook event is called '" + name + "'");
         opts.webhook_events = std::move(names);
         return caf::none;
       }},
      {"webhook-ca", "-",
       "PEM file of a CA trusted for https webhooks besides the system store",
       text_field(&options::webhook_ca)},
      {"webhook-retry-base", "500ms",
       "first back-off after a failed webhook POST (doubled, jittered, at "
       "most 10s)",
       duration_field(&options::webhook_retry_base, 10ms, 10s)},
      {"webhook-retry-window", "60s",
       "how long webhook events are retried before they are dropped",
       duration_field(&options::webhook_retry_window)},
      {"webhook-coalesce-from", "50000",
       "queued webhook events (of 100000) from which a uid's online/offline "
       "replaces its queued one, a join/leave that membership's queued one, "
       "an unread the uid's queued one of that conversation, and a logout "
       "cancels its queued register",
       uint_field(&options::webhook_coalesce_from, 1, 100'000)},
      {"unread-after", "30s",
       "a durable message no device of its uid read within this time gives "
       "an unread webhook/event; 0: off",
       [](options& opts, const std::string& text) -> caf::error {
         if (text == "0") {
           opts.unread_after = options::duration{0};
           return caf::none;
         }
         auto value = parse_duration(text);
         if (!value)
           return std::move(value.error());
         opts.unread_after = *value;
         return caf::none;
       }},
  };
}

} // namespace

const std::vector<option_spec>& all() {
  static const std::vector<option_spec> table = [] {
    std::vector<option_spec> result;
    for (auto section : {node_options, connect_options, client_options,
                         store_options, webhook_options, runtime_options})
      for (auto& spec : section())
        result.push_back(std::move(spec));
    return result;
  }();
  return table;
}

const option_spec* find(const std::string& name) {
  for (auto& spec : all())
    if (name == spec.name)
      return &spec;
  return nullptr;
}

} // namespace wsc::option_table
