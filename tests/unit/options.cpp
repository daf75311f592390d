#define CAF_SUITE options

#include "config/options.hpp"

#include "protocol/error.hpp"

#include <caf/test/unit_test.hpp>

#include <algorithm>
#include <cstdio>
#include <fstream>

using namespace wsc;

namespace {

// The environment is an explicit input: these tests never see the real one.
caf::expected<parsed_options> parse(std::vector<std::string> args,
                                    environment env = {}) {
  return parse_options(args, env);
}

std::string failure(std::vector<std::string> args, environment env = {}) {
  auto result = parse(std::move(args), std::move(env));
  if (result)
    return "<no error>";
  return error_message(result.error());
}

} // namespace

CAF_TEST(defaults match the contract) {
  auto result = parse({});
  CAF_REQUIRE(result);
  auto& o = result->opts;
  CAF_CHECK_EQUAL(o.listen.to_string(), "127.0.0.1:8080");
  CAF_CHECK_EQUAL(o.state, "memory");
  CAF_CHECK_EQUAL(o.redis_prefix, "wscluster");
  CAF_CHECK_EQUAL(o.cluster_listen.to_string(), "127.0.0.1:0");
  CAF_CHECK_EQUAL(o.heartbeat.count(), 1000);
  CAF_CHECK_EQUAL(o.node_timeout.count(), 3000);
  CAF_CHECK_EQUAL(o.drain_period.count(), 5000);
  CAF_CHECK_EQUAL(o.auth, "none");
  CAF_CHECK_EQUAL(o.client_broadcast, false);
  CAF_CHECK_EQUAL(o.max_message_bytes, 65536u);
  CAF_CHECK_EQUAL(o.max_connections, 100000u);
  CAF_CHECK_EQUAL(o.send_queue_limit, 1024u);
  CAF_CHECK_EQUAL(o.rate_limit, 100u);
  CAF_CHECK_EQUAL(o.idle_timeout.count(), 60000);
}

CAF_TEST(durations endpoints and urls parse) {
  CAF_CHECK_EQUAL(parse_duration("500ms")->count(), 500);
  CAF_CHECK_EQUAL(parse_duration("2min")->count(), 120000);
  CAF_CHECK_EQUAL(parse_duration("1h")->count(), 3600000);
  CAF_CHECK(!parse_duration("abc"));
  CAF_CHECK(!parse_duration("10"));
  CAF_CHECK(!parse_duration("-1s"));
  auto ep = parse_endpoint("127.0.0.2:9000");
  CAF_REQUIRE(ep);
  CAF_CHECK_EQUAL(ep->host, "127.0.0.2");
  CAF_CHECK_EQUAL(ep->port, 9000);
  CAF_CHECK(!parse_endpoint("localhost"));
  CAF_CHECK(!parse_endpoint("h:70000"));
  auto url = parse_redis_url("redis://:s3cret@10.0.0.1:6380/2");
  CAF_REQUIRE(url);
  CAF_CHECK_EQUAL(url->host, "10.0.0.1");
  CAF_CHECK_EQUAL(url->port, 6380);
  CAF_CHECK_EQUAL(url->password, "s3cret");
  CAF_CHECK_EQUAL(url->db, 2);
  CAF_CHECK_EQUAL(url->redacted().find("s3cret"), std::string::npos);
  CAF_CHECK(!parse_redis_url("http://x:1"));
}

CAF_TEST(bad input names the option) {
  CAF_CHECK_NOT_EQUAL(failure({"--bogus=1"}).find("unknown option 'bogus'"),
                      std::string::npos);
  CAF_CHECK_NOT_EQUAL(failure({"--heartbeat=abc"}).find("heartbeat"),
                      std::string::npos);
  CAF_CHECK_NOT_EQUAL(failure({"--max-connections=-1"}).find("max-connections"),
                      std::string::npos);
  CAF_CHECK_NOT_EQUAL(failure({"--node-timeout=11s"}).find("node-timeout"),
                      std::string::npos);
  CAF_CHECK_NOT_EQUAL(failure({"--state=redis"}).find("redis"),
                      std::string::npos);
  CAF_CHECK_NOT_EQUAL(failure({"--auth=jwt"}).find("jwt-secret"),
                      std::string::npos);
  CAF_CHECK_NOT_EQUAL(failure({"--cluster-tls-cert=a"}).find("all three"),
                      std::string::npos);
  CAF_CHECK_NOT_EQUAL(failure({"positional"}).find("--name=value"),
                      std::string::npos);
}

CAF_TEST(durations that would turn a protection off are refused) {
  // idle-timeout=0 disabled the idle close; inbox-max-age=0ms acked durable
  // messages that no replay could find.
  for (auto arg :
       {"--idle-timeout=0ms", "--idle-timeout=999ms", "--inbox-max-age=0ms",
        "--request-timeout=0ms", "--handshake-timeout=0ms",
        "--node-timeout=0ms", "--webhook-retry-base=0ms"}) {
    auto name = std::string{arg}.substr(2, std::string{arg}.find('=') - 2);
    CAF_CHECK_NOT_EQUAL(failure({arg}).find("'" + name + "'"),
                        std::string::npos);
  }
  auto set = parse({"--idle-timeout=1s", "--inbox-max-age=1s",
                    "--store-batch-delay=0ms", "--drain-period=0ms"});
  CAF_REQUIRE(set);
  CAF_CHECK_EQUAL(set->opts.idle_timeout.count(), 1000);
  CAF_CHECK_EQUAL(set->opts.inbox_max_age.count(), 1000);
  CAF_CHECK_EQUAL(set->opts.store_batch_delay.count(), 0);
}

CAF_TEST(durable replicas are bounded and fit in a request) {
  auto result = parse({});
  CAF_REQUIRE(result);
  CAF_CHECK_EQUAL(result->opts.durable_replicas, 0u);
  CAF_CHECK_EQUAL(result->opts.durable_replicas_timeout.count(), 500);
  auto set = parse({"--durable-replicas=2", "--durable-replicas-timeout=1s"});
  CAF_REQUIRE(set);
  CAF_CHECK_EQUAL(set->opts.durable_replicas, 2u);
  CAF_CHECK_EQUAL(set->opts.durable_replicas_timeout.count(), 1000);
  CAF_CHECK_NOT_EQUAL(
      failure({"--durable-replicas=6"}).find("durable-replicas"),
      std::string::npos);
  // The WAIT must leave room for the failover retries of the request.
  CAF_CHECK_NOT_EQUAL(
      failure({"--durable-replicas=1", "--durable-replicas-timeout=2s"})
          .find("durable-replicas-timeout"),
      std::string::npos);
  CAF_CHECK_NOT_EQUAL(
      failure({"--durable-replicas=1", "--durable-replicas-timeout=0ms"})
          .find("durable-replicas-timeout"),
      std::string::npos);
  // Without durable-replicas the timeout is not used, so not checked.
  CAF_CHECK(parse({"--durable-replicas-timeout=2s"}));
}

CAF_TEST(the command line wins over the config file) {
  auto path = std::string{"/tmp/wsc-options-test.ini"};
  {
    std::ofstream out{path};
    out << "# a node\n[wscluster]\nlisten = 127.0.0.1:9001\n"
           "rate-limit = 7\nallowed-origins = \"https://a, https://b\"\n";
  }
  auto result = parse({"--config-file=" + path, "--listen=127.0.0.1:9002"});
  std::remove(path.c_str());
  CAF_REQUIRE(result);
  CAF_CHECK_EQUAL(result->opts.listen.port, 9002);
  CAF_CHECK_EQUAL(result->opts.rate_limit, 7u);
  CAF_REQUIRE_EQUAL(result->opts.allowed_origins.size(), 2u);
  CAF_CHECK_EQUAL(result->opts.allowed_origins[1], "https://b");
}

CAF_TEST(help lists every contract option) {
  auto text = help_text();
  for (auto name : {"listen",
                    "node-id",
                    "state",
                    "redis",
                    "redis-prefix",
                    "cluster-listen",
                    "cluster-advertise",
                    "heartbeat",
                    "node-timeout",
                    "cluster-tls-cert",
                    "cluster-tls-key",
                    "cluster-tls-ca",
                    "cluster-insecure",
                    "drain-period",
                    "auth",
                    "jwt-secret",
                    "api-key",
                    "allowed-origins",
                    "client-broadcast",
                    "max-message-bytes",
                    "max-connections",
                    "send-queue-limit",
                    "rate-limit",
                    "idle-timeout"})
    CAF_CHECK_NOT_EQUAL(text.find(std::string{"--"} + name + "="),
                        std::string::npos);
}

CAF_TEST(environment names) {
  CAF_CHECK_EQUAL(environment_name("max-connections"),
                  "WSCLUSTER_MAX_CONNECTIONS");
  CAF_CHECK_EQUAL(environment_name("listen"), "WSCLUSTER_LISTEN");
  CAF_CHECK_EQUAL(environment_name("config-file"), "WSCLUSTER_CONFIG_FILE");
}

CAF_TEST(the environment sets options) {
  auto result = parse({}, {{"WSCLUSTER_MAX_CONNECTIONS", "5"},
                           {"WSCLUSTER_ALLOWED_ORIGINS", "https://a,https://b"},
                           {"WSCLUSTER_CLIENT_BROADCAST", "true"},
                           {"WSCLUSTER_HEARTBEAT", "500ms"},
                           {"HOME", "/root"},
                           {"WSC_BINARY", "x"}});
  CAF_REQUIRE(result);
  CAF_CHECK_EQUAL(result->opts.max_connections, 5u);
  CAF_CHECK_EQUAL(result->opts.allowed_origins.size(), 2u);
  CAF_CHECK_EQUAL(result->opts.client_broadcast, true);
  CAF_CHECK_EQUAL(result->opts.heartbeat.count(), 500);
}

CAF_TEST(every option has an environment variable) {
  // Each option's name, as the environment spells it, is accepted. Values
  // that every option rejects would fail with "bad value", not "unknown".
  std::string text = help_text();
  size_t pos = 0;
  size_t count = 0;
  while ((pos = text.find("\n  --", pos)) != std::string::npos) {
    pos += 5;
    auto end = text.find_first_of("=. ", pos);
    auto name = text.substr(pos, end - pos);
    if (name == "config-file" || name == "help" || name == "version")
      continue;
    ++count;
    auto msg = failure({}, {{environment_name(name), std::string{"\x01"}}});
    CAF_CHECK_EQUAL(msg.find("unknown"), std::string::npos);
  }
  CAF_CHECK_GREATER(count, 40u);
}

CAF_TEST(precedence is command line then environment then file) {
  auto path = std::string{"/tmp/wsc-options-env-test.ini"};
  {
    std::ofstream out{path};
    out << "listen = 127.0.0.1:9001\nrate-limit = 7\nmax-groups = 3\n"
           "members-limit = 4\n";
  }
  auto result = parse(
      {"--config-file=" + path, "--listen=127.0.0.1:9002"},
      {{"WSCLUSTER_LISTEN", "127.0.0.1:9003"}, {"WSCLUSTER_RATE_LIMIT", "8"}});
  CAF_REQUIRE(result);
  CAF_CHECK_EQUAL(result->opts.listen.port, 9002); // command line
  CAF_CHECK_EQUAL(result->opts.rate_limit, 8u);    // environment over file
  CAF_CHECK_EQUAL(result->opts.max_groups, 3u);    // file over default
  CAF_CHECK_EQUAL(result->opts.members_limit, 4u);
  CAF_CHECK_EQUAL(result->opts.max_connections, 100000u); // default
  // The config file may itself come from the environment; the command
  // line's --config-file replaces it.
  auto from_env = parse({}, {{"WSCLUSTER_CONFIG_FILE", path}});
  CAF_REQUIRE(from_env);
  CAF_CHECK_EQUAL(from_env->opts.rate_limit, 7u);
  auto replaced = parse({"--config-file=" + path},
                        {{"WSCLUSTER_CONFIG_FILE", "/nonexistent.ini"}});
  CAF_CHECK(replaced);
  std::remove(path.c_str());
  CAF_CHECK_NOT_EQUAL(
      failure({}, {{"WSCLUSTER_CONFIG_FILE", "/nonexistent.ini"}})
          .find("/nonexistent.ini"),
      std::string::npos);
}

CAF_TEST(unknown or malformed environment variables are errors) {
  auto unknown = failure({}, {{"WSCLUSTER_FOO", "1"}});
  CAF_CHECK_NOT_EQUAL(unknown.find("WSCLUSTER_FOO"), std::string::npos);
  // Only the exact upper-case spelling names an option.
  CAF_CHECK_NOT_EQUAL(failure({}, {{"WSCLUSTER_max_connections", "1"}})
                          .find("WSCLUSTER_max_connections"),
                      std::string::npos);
  CAF_CHECK_NOT_EQUAL(failure({}, {{"WSCLUSTER_MAX-CONNECTIONS", "1"}})
                          .find("unknown environment variable"),
                      std::string::npos);
  auto bad = failure({}, {{"WSCLUSTER_MAX_CONNECTIONS", "many"}});
  CAF_CHECK_NOT_EQUAL(bad.find("max-connections"), std::string::npos);
  CAF_CHECK_NOT_EQUAL(bad.find("WSCLUSTER_MAX_CONNECTIONS"), std::string::npos);
  // The combination is validated after all layers.
  CAF_CHECK_NOT_EQUAL(failure({}, {{"WSCLUSTER_STATE", "redis"}}).find("redis"),
                      std::string::npos);
  CAF_CHECK(
      parse({"--redis=redis://127.0.0.1:1"}, {{"WSCLUSTER_STATE", "redis"}}));
  // A valid command line does not hide a bad variable...
  CAF_CHECK(!parse({"--max-connections=3"}, {{"WSCLUSTER_FOO", "1"}}));
  // ...but --help and --version do not read the environment.
  auto help = parse({"--help"}, {{"WSCLUSTER_FOO", "1"}});
  CAF_REQUIRE(help);
  CAF_CHECK(help->help);
  auto version = parse({"--version"}, {{"WSCLUSTER_FOO", "1"}});
  CAF_REQUIRE(version);
  CAF_CHECK(version->version);
}

CAF_TEST(version is major minor patch) {
  std::string v = wsc::version();
  CAF_CHECK_EQUAL(std::count(v.begin(), v.end(), '.'), 2);
  CAF_CHECK_NOT_EQUAL(v, "0.0.0");
}

CAF_TEST(the default web root is the source tree in the build tree) {
  // build/../share/wscluster/web does not exist: the compiled-in default.
  CAF_CHECK_EQUAL(default_web_root(), WSC_DEFAULT_WEB_ROOT);
  auto result = parse({});
  CAF_REQUIRE(result);
  CAF_CHECK_EQUAL(result->opts.web_root, WSC_DEFAULT_WEB_ROOT);
  // The checks compare copies: the parsed results are temporaries.
  auto from_flag = parse({"--web-root=/srv/x"})->opts.web_root;
  CAF_CHECK_EQUAL(from_flag, "/srv/x");
  auto from_env = parse({}, {{"WSCLUSTER_WEB_ROOT", "/srv/y"}})->opts.web_root;
  CAF_CHECK_EQUAL(from_env, "/srv/y");
}
