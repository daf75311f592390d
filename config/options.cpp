#include "config/options.hpp"

#include "config/option_table.hpp"

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

using option_table::invalid;
using option_table::parse_uint;
using option_table::trim;

caf::error apply(options& opts, const std::string& name,
                 const std::string& value, const std::string& origin) {
  auto spec = option_table::find(name);
  if (!spec)
    return invalid("unknown option '" + name + "'" + origin + " (see --help)");
  if (auto err = spec->set(opts, value))
    return invalid("bad value for '" + name + "'" + origin + ": " +
                   option_table::reason_of(err));
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
    auto spec =
        std::find_if(option_table::all().begin(), option_table::all().end(),
                     [&key](const option_table::option_spec& candidate) {
                       return environment_name(candidate.name) == key;
                     });
    if (spec == option_table::all().end())
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
  for (auto& spec : option_table::all()) {
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
