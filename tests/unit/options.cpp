#define CAF_SUITE options

#include "config/options.hpp"

#include "actors/error.hpp"

#include <caf/test/unit_test.hpp>

#include <cstdio>
#include <fstream>

using namespace wsc;

namespace {

caf::expected<parsed_options> parse(std::vector<std::string> args) {
  return parse_options(args);
}

std::string failure(std::vector<std::string> args) {
  auto result = parse(std::move(args));
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
