#define CAF_SUITE middleware

#include "middleware/middleware.hpp"

#include "middleware/jwt.hpp"

#include <caf/test/unit_test.hpp>

#include <memory>

using namespace wsc;

namespace {

/// Records the order in which chain steps run.
struct trace_step : handshake_middleware {
  trace_step(std::string name, std::vector<std::string>& log,
             std::optional<http_rejection> verdict = std::nullopt)
      : name(std::move(name)), log(log), verdict(std::move(verdict)) {}

  std::optional<http_rejection> before(handshake_context&) override {
    log.push_back(name + ".before");
    return verdict;
  }

  void after(handshake_context&,
             const std::optional<http_rejection>& rejection) override {
    log.push_back(name + ".after" + (rejection ? "!" : ""));
  }

  std::string name;
  std::vector<std::string>& log;
  std::optional<http_rejection> verdict;
};

struct open_step : open_middleware {
  open_step(std::string name, std::vector<std::string>& log, bool refuse)
      : name(std::move(name)), log(log), refuse(refuse) {}

  std::optional<close_request> before(open_context&) override {
    log.push_back(name + ".before");
    if (refuse)
      return close_request{4000, "no"};
    return std::nullopt;
  }

  void after(open_context&, const std::optional<close_request>& r) override {
    log.push_back(name + ".after" + (r ? "!" : ""));
  }

  std::string name;
  std::vector<std::string>& log;
  bool refuse;
};

using strings = std::vector<std::string>;

handshake_context ws_request(const std::string& target) {
  handshake_context ctx;
  ctx.request = handshake_request::from_target("GET", target);
  return ctx;
}

} // namespace

CAF_TEST(handshake chain runs as an onion) {
  strings log;
  handshake_chain chain;
  chain.steps.push_back(std::make_shared<trace_step>("a", log));
  chain.steps.push_back(std::make_shared<trace_step>("b", log));
  auto ctx = ws_request("/ws");
  CAF_CHECK(!chain.run(ctx));
  CAF_CHECK_EQUAL(log, strings({"a.before", "b.before", "b.after", "a.after"}));
}

CAF_TEST(a rejecting step stops the chain with its status) {
  strings log;
  handshake_chain chain;
  chain.steps.push_back(std::make_shared<trace_step>("a", log));
  chain.steps.push_back(
      std::make_shared<trace_step>("b", log, http_rejection{418, "teapot"}));
  chain.steps.push_back(std::make_shared<trace_step>("c", log));
  auto ctx = ws_request("/ws");
  auto rejection = chain.run(ctx);
  CAF_REQUIRE(rejection);
  CAF_CHECK_EQUAL(rejection->status, 418u);
  CAF_CHECK_EQUAL(log,
                  strings({"a.before", "b.before", "b.after!", "a.after!"}));
}

CAF_TEST(open chain enters and leaves in order) {
  strings log;
  open_chain chain;
  chain.steps.push_back(std::make_shared<open_step>("a", log, false));
  chain.steps.push_back(std::make_shared<open_step>("b", log, false));
  open_context ctx;
  CAF_CHECK(!chain.enter(ctx));
  log.push_back("bind");
  chain.leave(ctx, std::nullopt);
  CAF_CHECK_EQUAL(
      log, strings({"a.before", "b.before", "bind", "b.after", "a.after"}));
  log.clear();
  open_chain refusing;
  refusing.steps.push_back(std::make_shared<open_step>("a", log, false));
  refusing.steps.push_back(std::make_shared<open_step>("b", log, true));
  refusing.steps.push_back(std::make_shared<open_step>("c", log, false));
  auto refused = refusing.enter(ctx);
  CAF_REQUIRE(refused);
  CAF_CHECK_EQUAL(refused->code, 4000);
  CAF_CHECK_EQUAL(log,
                  strings({"a.before", "b.before", "b.after!", "a.after!"}));
}

CAF_TEST(registry builds chains in configured order) {
  strings log;
  middleware_registry registry;
  registry.add_handshake("trace", [&log](const options&) {
    return std::make_shared<trace_step>("trace", log);
  });
  options opts;
  opts.handshake_chain = {"trace", "origin", "identity"};
  auto chain = registry.make_handshake_chain(opts);
  CAF_REQUIRE(chain);
  CAF_CHECK_EQUAL(chain->steps.size(), 3u);
  opts.handshake_chain = {"nope", "identity"};
  CAF_CHECK(!registry.make_handshake_chain(opts));
  opts.handshake_chain = {"origin"};
  CAF_CHECK(!registry.make_handshake_chain(opts));
}

CAF_TEST(identity takes the uid from query or header) {
  middleware_registry registry;
  options opts;
  auto chain = registry.make_handshake_chain(opts);
  CAF_REQUIRE(chain);
  auto ctx = ws_request("/ws?uid=alice&x=1");
  CAF_CHECK(!chain->run(ctx));
  CAF_CHECK_EQUAL(ctx.uid, "alice");
  ctx = ws_request("/ws");
  ctx.request.headers["auth"] = "bob";
  CAF_CHECK(!chain->run(ctx));
  CAF_CHECK_EQUAL(ctx.uid, "bob");
  ctx = ws_request("/ws");
  CAF_CHECK(!chain->run(ctx));
  CAF_CHECK_EQUAL(ctx.uid.compare(0, 5, "anon-"), 0);
  ctx = ws_request("/ws?uid=a%20b");
  auto rejection = chain->run(ctx);
  CAF_REQUIRE(rejection);
  CAF_CHECK_EQUAL(rejection->status, 400u);
}

CAF_TEST(origin allow list answers 403) {
  middleware_registry registry;
  options opts;
  opts.allowed_origins = {"https://chat.example"};
  auto chain = registry.make_handshake_chain(opts);
  CAF_REQUIRE(chain);
  auto ctx = ws_request("/ws?uid=a");
  ctx.request.headers["origin"] = "https://evil.example";
  auto rejection = chain->run(ctx);
  CAF_REQUIRE(rejection);
  CAF_CHECK_EQUAL(rejection->status, 403u);
  ctx = ws_request("/ws?uid=a");
  ctx.request.headers["origin"] = "https://chat.example";
  CAF_CHECK(!chain->run(ctx));
}

CAF_TEST(jwt verification) {
  const std::string secret = "k3y";
  const int64_t now = 1'700'000'000;
  auto ok =
      sign_jwt(R"({"sub":"alice","exp":1700000100,"groups":["g1"]})", secret);
  auto claims = verify_jwt(ok, secret, now);
  CAF_REQUIRE(claims);
  CAF_CHECK_EQUAL(claims->sub, "alice");
  CAF_CHECK_EQUAL(claims->groups, strings({"g1"}));
  CAF_CHECK(!verify_jwt(ok, "other", now));
  CAF_CHECK(!verify_jwt(ok, secret, now + 1000));
  CAF_CHECK(!verify_jwt(sign_jwt(R"({"sub":"alice"})", secret), secret, now));
  CAF_CHECK(!verify_jwt(
      sign_jwt(R"({"sub":"a","exp":1700000100,"nbf":1700000050})", secret),
      secret, now));
  // alg:none with an empty signature.
  CAF_CHECK(
      !verify_jwt("eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIiwiZXhwIjo5OTk5OTk5OTk5fQ.",
                  secret, now));
  CAF_CHECK(!verify_jwt("not-a-token", secret, now));
  CAF_CHECK(!verify_jwt("", secret, now));
}
