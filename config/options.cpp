#include "config/options.hpp"

#include <caf/error.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <sstream>

// Set by CMake for this file: the project version and where the web files
// lie relative to the installed binary's folder.
#ifndef WSC_VERSION
#define WSC_VERSION "0.0.0"
#endif
#ifndef WSC_INSTALLED_WEB_ROOT
#define WSC_INSTALLED_WEB_ROOT "../share/wscluster/web"
#endif

namespace wsc {

namespace {

constexpr const char* env_prefix = "WSCLUSTER_";

using setter = std::function<caf::error(options&, const std::string&)>;

caf::error invalid(const std::string& what) {
  return caf::make_error(caf::sec::invalid_argument, what);
}

/// The text `invalid` put into `err` (every error of this file is made by it).
std::string reason_of(const caf::error& err) {
  const auto& ctx = err.context();
  return ctx.match_elements<std::string>() ? ctx.get_as<std::string>(0)
                                           : caf::to_string(err);
}

/// One documented option: its name, default as shown in --help, meaning and
/// how to store a value.
struct option_spec {
  const char* name;
  const char* default_text;
  const char* help;
  setter set;
};

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

setter duration_field(options::duration options::*member,
                      options::duration max = options::duration::max()) {
  return [member, max](options& opts, const std::string& text) -> caf::error {
    auto value = parse_duration(text);
    if (!value)
      return std::move(value.error());
    if (*value > max)
      return invalid("duration " + text + " exceeds the maximum of " +
                     std::to_string(max.count()) + "ms");
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

const std::vector<option_spec>& option_table() {
  static const std::vector<option_spec> table{
      {"listen", "127.0.0.1:8080", "HTTP + WebSocket listener (WS at /ws)",
       field(&options::listen, parse_endpoint)},
      {"node-id", "generated, unique",
       "this node's id in the cluster ([A-Za-z0-9_-], at most 64)",
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
       duration_field(&options::node_timeout, std::chrono::seconds(10))},
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
      {"auth", "none", "none (uid from query uid= or header auth) or jwt",
       one_of(&options::auth, {"none", "jwt"})},
      {"jwt-secret", "-", "HS256 secret, required with auth=jwt",
       text_field(&options::jwt_secret)},
      {"api-key", "-",
       "when set, the HTTP API requires Authorization: Bearer <api-key>",
       text_field(&options::api_key)},
      {"allowed-origins", "any",
       "comma-separated Origin values accepted at the handshake",
       list_field(&options::allowed_origins)},
      {"client-broadcast", "false", "may clients send broadcast frames",
       field(&options::client_broadcast, parse_bool)},
      {"max-message-bytes", "65536",
       "larger frames close the connection with 1009",
       uint_field(&options::max_message_bytes, 64, 64u << 20)},
      {"max-connections", "100000", "further handshakes get HTTP 503",
       uint_field(&options::max_connections, 1, 10'000'000)},
      {"send-queue-limit", "1024",
       "frames queued for a slow reader before it is closed with 1008",
       uint_field(&options::send_queue_limit, 1, 1'000'000)},
      {"rate-limit", "100",
       "client frames per second per connection (burst 2x); 0 turns it off",
       uint_field(&options::rate_limit, 0, 1'000'000)},
      {"idle-timeout", "60s",
       "no frame and no pong for this long closes the connection",
       duration_field(&options::idle_timeout)},
      {"handshake-timeout", "10s",
       "time a client has to complete the HTTP request and upgrade",
       duration_field(&options::handshake_timeout)},
      {"max-groups", "100", "groups a uid may join (too_many_groups)",
       uint_field(&options::max_groups, 1, 1'000'000)},
      {"members-limit", "1000", "most uids a members answer lists",
       uint_field(&options::members_limit, 1, 1'000'000)},
      {"handshake-chain", "origin,identity",
       "handshake middlewares in order (registered names)",
       list_field(&options::handshake_chain)},
      {"open-chain", "-", "open middlewares in order (registered names)",
       list_field(&options::open_chain)},
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
       duration_field(&options::request_timeout)},
      {"store-batch-delay", "1ms",
       "how long the Redis state store waits after a request for more to "
       "send in the same round trip (0: at once); adds up to this much "
       "latency, saves Redis and node CPU at moderate rates",
       duration_field(&options::store_batch_delay,
                      std::chrono::milliseconds(50))},
      {"durable-replicas", "0",
       "Redis replicas (WAIT) that must have a durable message before its "
       "receivers are acked as stored; fewer within durable-replicas-timeout: "
       "they are answered unavailable (0: no WAIT, a failover may lose "
       "acked messages)",
       uint_field(&options::durable_replicas, 0, 5)},
      {"durable-replicas-timeout", "500ms",
       "how long a durable send waits for durable-replicas (at most a "
       "quarter of request-timeout)",
       duration_field(&options::durable_replicas_timeout,
                      std::chrono::milliseconds(5000))},
      {"volatile-types", "-",
       "frame types not stored in inboxes (at most once), e.g. publish,typing",
       list_field(&options::volatile_types)},
      {"inbox-max-messages", "1000", "messages kept per uid inbox",
       uint_field(&options::inbox_max_messages, 1, 10'000'000)},
      {"inbox-max-age", "24h", "age after which inbox messages may be dropped",
       duration_field(&options::inbox_max_age)},
      {"idempotency-window", "10m",
       "a durable send or publish repeating its sender's idem within this "
       "time is acked again with the same msg_id, not stored twice; 0: off",
       duration_field(&options::idempotency_window)},
      {"api-insecure", "false",
       "serve the HTTP API without api-key on a non-loopback listen",
       field(&options::api_insecure, parse_bool)},
      {"max-fanout-bytes", "1048576",
       "most receivers x payload bytes one send or publish (frame or API) "
       "may produce; more: error too_large (HTTP 413)",
       uint_field(&options::max_fanout_bytes, 1024, 1ull << 32)},
      {"send-queue-bytes", "1048576",
       "bytes queued for a slow reader before it is closed with 1008",
       uint_field(&options::send_queue_bytes, 1024, 1ull << 32)},
      {"max-connections-per-uid", "64",
       "open connections of one uid on this node (HTTP 503); 0: no limit",
       uint_field(&options::max_connections_per_uid, 0, 10'000'000)},
      {"max-connections-per-address", "1000",
       "open connections from one client address on this node (HTTP 503); "
       "0: no limit",
       uint_field(&options::max_connections_per_address, 0, 10'000'000)},
      {"max-resumes-per-uid", "4",
       "inbox replays of one uid in progress at once on this node; more "
       "are closed with 1013 (try again later)",
       uint_field(&options::max_resumes_per_uid, 1, 10'000)},
      {"stored-bytes-rate", "1048576",
       "bytes per second one uid's durable sends and publishes may store on "
       "this node (receivers x payload, plus ~4.4 KB per inbox a message "
       "starts; burst: twice this or max-fanout-bytes); beyond: error "
       "rate_limited",
       uint_field(&options::stored_bytes_rate, 1024, 1ull << 32)},
      {"max-group-members", "10000",
       "members of one group; a join beyond: error group_full",
       uint_field(&options::max_group_members, 1, 10'000'000)},
      {"group-join", "open",
       "open (any client joins any group) or token (only the groups of its "
       "JWT groups claim, or joined by the application)",
       one_of(&options::group_join, {"open", "token"})},
      {"group-membership", "persistent",
       "persistent (a uid stays in its groups while offline; its inbox gets "
       "their messages) or session (membership ends with its last "
       "connection); the same on every node",
       one_of(&options::group_membership, {"persistent", "session"})},
      {"frame-codec", "json",
       "wire form of client frames: json, swoft ({\"cmd\":..,\"data\":..,"
       "\"ext\":..}) or a codec registered by an embedding application",
       text_field(&options::frame_codec)},
      {"jwt-audience", "-", "when set, JWTs must carry this aud",
       text_field(&options::jwt_audience)},
      {"jwt-issuer", "-", "when set, JWTs must carry this iss",
       text_field(&options::jwt_issuer)},
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
       duration_field(&options::webhook_retry_base, std::chrono::seconds(10))},
      {"webhook-retry-window", "60s",
       "how long webhook events are retried before they are dropped",
       duration_field(&options::webhook_retry_window)},
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
      {"web-root",
       "<binary's folder>/" WSC_INSTALLED_WEB_ROOT
       " if it exists, else the source tree's web/",
       "folder of the demo (/), the dashboard (/dashboard) and their assets",
       text_field(&options::web_root)},
  };
  return table;
}

const option_spec* find_option(const std::string& name) {
  for (auto& spec : option_table())
    if (name == spec.name)
      return &spec;
  return nullptr;
}

caf::error apply(options& opts, const std::string& name,
                 const std::string& value, const std::string& origin) {
  auto spec = find_option(name);
  if (!spec)
    return invalid("unknown option '" + name + "'" + origin + " (see --help)");
  if (auto err = spec->set(opts, value))
    return invalid("bad value for '" + name + "'" + origin + ": " +
                   reason_of(err));
  return caf::none;
}

/// Splits `--name=value`; a bare `--flag` means `true`.
caf::error split_argument(const std::string& arg, std::string& name,
                          std::string& value) {
  if (arg.size() < 3 || arg.compare(0, 2, "--") != 0)
    return invalid("unexpected argument '" + arg +
                   "' (options are written --name=value)");
  auto eq = arg.find('=');
  name = arg.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
  value = eq == std::string::npos ? "true" : arg.substr(eq + 1);
  return caf::none;
}

std::string unquote(std::string s) {
  if (s.size() >= 2 && (s.front() == '"' || s.front() == '\'') &&
      s.back() == s.front())
    return s.substr(1, s.size() - 2);
  return s;
}

caf::error read_config_file(options& opts, const std::string& path) {
  std::ifstream in{path};
  if (!in)
    return invalid("cannot read config file '" + path + "'");
  std::string line;
  for (int lineno = 1; std::getline(in, line); ++lineno) {
    line = trim(line);
    if (line.empty() || line[0] == '#' || line[0] == ';' || line[0] == '[')
      continue;
    auto eq = line.find('=');
    auto where = " (" + path + ":" + std::to_string(lineno) + ")";
    if (eq == std::string::npos)
      return invalid("expected name = value" + where);
    if (auto err = apply(opts, trim(line.substr(0, eq)),
                         unquote(trim(line.substr(eq + 1))), where))
      return err;
  }
  return caf::none;
}

} // namespace

std::string endpoint::to_string() const {
  return host + ":" + std::to_string(port);
}

std::string redis_url::redacted() const {
  if (is_cluster()) {
    auto seeds = cluster.substr(cluster.rfind('@') == std::string::npos
                                    ? std::string{"cluster://"}.size()
                                    : cluster.rfind('@') + 1);
    return "cluster://" + std::string{password.empty() ? "" : ":***@"} + seeds;
  }
  return "redis://" + std::string{password.empty() ? "" : ":***@"} + host +
         ":" + std::to_string(port) + "/" + std::to_string(db);
}

caf::expected<options::duration> parse_duration(const std::string& text) {
  size_t digits = 0;
  while (digits < text.size() &&
         std::isdigit(static_cast<unsigned char>(text[digits])))
    ++digits;
  if (digits == 0 || digits > 12)
    return invalid("expected a duration like 500ms, 1s or 2min, got '" + text +
                   "'");
  auto count = std::stoll(text.substr(0, digits));
  auto unit = text.substr(digits);
  if (unit == "ms")
    return options::duration{count};
  if (unit == "s")
    return options::duration{count * 1000};
  if (unit == "min" || unit == "m") // `m` as the contract's `10m`
    return options::duration{count * 60'000};
  if (unit == "h")
    return options::duration{count * 3'600'000};
  return invalid("expected a duration like 500ms, 1s or 2min, got '" + text +
                 "'");
}

caf::expected<endpoint> parse_endpoint(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0)
    return invalid("expected host:port, got '" + text + "'");
  auto port = parse_uint(text.substr(colon + 1), 0, 65535);
  if (!port)
    return invalid("expected host:port with a port of 0-65535, got '" + text +
                   "'");
  auto host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  return endpoint{host, static_cast<uint16_t>(*port)};
}

namespace {

/// Moves the `[user][:password]@` part in front of the host of a Redis URL
/// (`rest`: the URL without its scheme) into `url.password`.
void take_password(std::string& rest, redis_url& url) {
  if (auto at = rest.rfind('@'); at != std::string::npos) {
    auto userinfo = rest.substr(0, at);
    auto colon = userinfo.find(':');
    url.password =
        colon == std::string::npos ? userinfo : userinfo.substr(colon + 1);
    rest = rest.substr(at + 1);
  }
}

} // namespace

caf::expected<redis_url> parse_redis_url(const std::string& text) {
  if (text.compare(0, 10, "cluster://") == 0) {
    // Seeds are checked here with the same rules as the cluster client's.
    auto rest = text.substr(10);
    redis_url url;
    take_password(rest, url);
    bool first = true;
    for (size_t pos = 0;;) {
      auto comma = rest.find(',', pos);
      auto part = rest.substr(
          pos, comma == std::string::npos ? std::string::npos : comma - pos);
      auto ep = parse_endpoint(part);
      if (!ep || ep->host.empty() || ep->port == 0)
        return invalid(
            "expected cluster://[:password@]host:port[,host:port...]");
      if (first) {
        url.host = ep->host;
        url.port = ep->port;
        first = false;
      }
      if (comma == std::string::npos)
        break;
      pos = comma + 1;
    }
    url.cluster = text;
    return url;
  }
  const std::string scheme = "redis://";
  if (text.compare(0, scheme.size(), scheme) != 0)
    return invalid("expected redis://[:password@]host:port[/db]");
  auto rest = text.substr(scheme.size());
  redis_url url;
  take_password(rest, url);
  if (auto slash = rest.find('/'); slash != std::string::npos) {
    auto db = parse_uint(rest.substr(slash + 1), 0, 15);
    if (!db)
      return invalid("the Redis db must be a number 0-15");
    url.db = static_cast<int>(*db);
    rest = rest.substr(0, slash);
  }
  if (rest.find(':') == std::string::npos)
    rest += ":6379";
  auto ep = parse_endpoint(rest);
  if (!ep || ep->host.empty() || ep->port == 0)
    return invalid("expected redis://[:password@]host:port[/db]");
  url.host = ep->host;
  url.port = ep->port;
  return url;
}

environment process_environment() {
  environment result;
  for (auto entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    std::string text{*entry};
    auto eq = text.find('=');
    if (eq != std::string::npos && eq > 0)
      result.emplace(text.substr(0, eq), text.substr(eq + 1));
  }
  return result;
}

std::string environment_name(const std::string& name) {
  std::string result = env_prefix;
  for (unsigned char c : name)
    result += c == '-' ? '_' : static_cast<char>(std::toupper(c));
  return result;
}

caf::expected<parsed_options>
parse_options(const std::vector<std::string>& args, const environment& env) {
  parsed_options result;
  result.opts.web_root = default_web_root();
  // Lowest layer first: the config file, then the environment, then the
  // command line, each overwriting what the one before set.
  std::vector<std::string> config_files;
  std::string name;
  std::string value;
  for (auto& arg : args) {
    if (arg == "--help" || arg == "-h") {
      result.help = true;
      return result;
    }
    if (arg == "--version") {
      result.version = true;
      return result;
    }
    if (auto err = split_argument(arg, name, value))
      return err;
    if (name == "config-file")
      config_files.push_back(value);
  }
  const auto config_env = environment_name("config-file");
  if (config_files.empty())
    if (auto i = env.find(config_env); i != env.end())
      config_files.push_back(i->second);
  for (auto& path : config_files)
    if (auto err = read_config_file(result.opts, path))
      return err;
  const std::string prefix = env_prefix;
  for (auto& entry : env) {
    // (A plain reference: clang 14 cannot capture structured bindings.)
    const std::string& key = entry.first;
    if (key.compare(0, prefix.size(), prefix) != 0 || key == config_env)
      continue;
    auto spec = std::find_if(option_table().begin(), option_table().end(),
                             [&key](const option_spec& candidate) {
                               return environment_name(candidate.name) == key;
                             });
    if (spec == option_table().end())
      return invalid("unknown environment variable " + key +
                     " (it names no option; see --help)");
    if (auto err = apply(result.opts, spec->name, entry.second,
                         " (environment " + key + ")"))
      return err;
  }
  for (auto& arg : args) {
    split_argument(arg, name, value);
    if (name == "config-file")
      continue;
    if (auto err = apply(result.opts, name, value, ""))
      return err;
  }
  if (auto err = validate(result.opts))
    return err;
  return result;
}

const char* version() {
  return WSC_VERSION;
}

std::string default_web_root() {
  namespace fs = std::filesystem;
  std::error_code ec;
  auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto installed =
        (exe.parent_path() / WSC_INSTALLED_WEB_ROOT).lexically_normal();
    if (fs::is_directory(installed, ec))
      return installed.string();
  }
  return WSC_DEFAULT_WEB_ROOT;
}

bool is_loopback(const std::string& host) {
  if (host == "localhost")
    return true;
  in_addr v4;
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1)
    return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6;
  return inet_pton(AF_INET6, host.c_str(), &v6) == 1 &&
         IN6_IS_ADDR_LOOPBACK(&v6);
}

caf::error validate(const options& opts) {
  if (opts.state == "redis" && !opts.has_redis)
    return invalid("state=redis needs --redis=redis://host:port");
  if (opts.auth == "jwt" && opts.jwt_secret.empty())
    return invalid("auth=jwt needs --jwt-secret");
  int tls = !opts.cluster_tls_cert.empty() + !opts.cluster_tls_key.empty() +
            !opts.cluster_tls_ca.empty();
  if (tls != 0 && tls != 3)
    return invalid("cluster-tls-cert, cluster-tls-key and cluster-tls-ca go "
                   "together: give all three or none");
  if (opts.state == "redis" && tls == 0 && !opts.cluster_insecure &&
      !is_loopback(opts.cluster_listen.host))
    return invalid("refusing plain node-to-node traffic on " +
                   opts.cluster_listen.to_string() +
                   ": set cluster-tls-cert/key/ca or cluster-insecure=true");
  if (opts.heartbeat.count() < 50)
    return invalid("heartbeat must be at least 50ms");
  if (opts.node_timeout < 2 * opts.heartbeat)
    return invalid("node-timeout must be at least twice the heartbeat");
  if (opts.listen.port == 0)
    return invalid("listen needs a port");
  // A durable send waits through the failover retries (60 % of the request
  // timeout) and then for its replicas: both within one request.
  if (opts.durable_replicas > 0 &&
      (opts.durable_replicas_timeout.count() < 1 ||
       opts.durable_replicas_timeout > opts.request_timeout / 4))
    return invalid("durable-replicas-timeout must be 1ms to a quarter of "
                   "request-timeout");
  if (!opts.webhook_url.empty() && opts.webhook_url.rfind("http://", 0) != 0 &&
      opts.webhook_url.rfind("https://", 0) != 0)
    return invalid("webhook-url must start with http:// or https://");
  if (opts.webhook_retry_base.count() < 1)
    return invalid("webhook-retry-base must be at least 1ms");
  if (opts.api_key.empty() && !opts.api_insecure &&
      !is_loopback(opts.listen.host))
    return invalid("refusing to serve the HTTP API without api-key on " +
                   opts.listen.to_string() +
                   ": set api-key (or api-insecure=true)");
  return caf::none;
}

std::string help_text() {
  std::ostringstream out;
  out << "usage: wscluster [--config-file=PATH] [--name=value ...]\n"
         "       wscluster --version | --help\n\n"
         "Every option works as --name=value, as the environment variable\n"
         "WSCLUSTER_<NAME> (upper case, '-' as '_', e.g.\n"
         "WSCLUSTER_MAX_CONNECTIONS=5) and as 'name = value' in the config\n"
         "file. Precedence:\n"
         "  command line > environment > config file > default\n"
         "A WSCLUSTER_ variable that names no option is an error.\n\n";
  for (auto& spec : option_table()) {
    out << "  --" << spec.name << "=...";
    auto width = std::string{spec.name}.size() + 7;
    out << std::string(width < 28 ? 28 - width : 1, ' ') << spec.help
        << " (default: " << spec.default_text << ")\n";
  }
  out << "  --config-file=PATH" << std::string(10, ' ')
      << "read options from an INI file (name = value lines;\n"
      << std::string(30, ' ') << "also WSCLUSTER_CONFIG_FILE)\n"
      << "  --version" << std::string(19, ' ') << "print wscluster "
      << version() << " and exit\n"
      << "  --help" << std::string(22, ' ') << "print this help\n";
  return out.str();
}

} // namespace wsc
