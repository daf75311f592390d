#define CAF_SUITE middleware

#include "middleware/middleware.hpp"

#include "middleware/jwt.hpp"
#include "util/hmac.hpp"

#include <caf/test/unit_test.hpp>

#include <ctime>
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

namespace {

std::string b64url(std::string_view in) {
  return wsc::b64url_encode(in);
}

/// A token with any header text, correctly signed.
std::string sign_with_header(std::string_view header, std::string_view payload,
                             std::string_view secret) {
  auto input = b64url(header) + "." + b64url(payload);
  return input + "." + b64url(hmac_sha256(secret, input));
}

/// The reason text of a refusal.
template<class T>
std::string reason(const caf::expected<T>& x) {
  if (x)
    return "accepted";
  auto& ctx = x.error().context();
  return ctx.template match_elements<std::string>()
             ? ctx.template get_as<std::string>(0)
             : "?";
}

} // namespace

CAF_TEST(jwt times beyond year 9999 are refused) {
  const std::string secret = "k3y";
  const int64_t now = 1'700'000'000;
  auto with = [&](const std::string& claims) {
    return verify_jwt(sign_jwt(R"({"sub":"alice",)" + claims + "}", secret),
                      secret, now);
  };
  // The last second of year 9999 is fine (and exp * 1000 fits int64).
  auto last = with(R"("exp":253402300799)");
  CAF_REQUIRE(last);
  CAF_CHECK_EQUAL(last->exp, jwt_max_time_s);
  // Beyond: refused, so that no later computation overflows.
  CAF_CHECK_EQUAL(reason(with(R"("exp":253402300800)")), "exp out of range");
  CAF_CHECK_EQUAL(reason(with(R"("exp":9223372036854775807)")),
                  "exp out of range");
  CAF_CHECK_EQUAL(reason(with(R"("exp":18446744073709551615)")),
                  "exp out of range");
  CAF_CHECK(!with(R"("exp":-9223372036854775808)"));
  CAF_CHECK(!with(R"("exp":1e300)"));
  // An unsigned nbf beyond int64 used to wrap to a negative (valid) time.
  CAF_CHECK_EQUAL(reason(with(R"("exp":1700000100,"nbf":9223372036854775808)")),
                  "nbf out of range");
  CAF_CHECK_EQUAL(reason(with(R"("exp":1700000100,"nbf":253402300800)")),
                  "nbf out of range");
  CAF_CHECK(with(R"("exp":1700000100,"nbf":1699999000)"));
}

CAF_TEST(jwt audience and issuer when required) {
  const std::string secret = "k3y";
  const int64_t now = 1'700'000'000;
  jwt_requirements req{"chat", "https://id.example"};
  auto with = [&](const std::string& claims, const jwt_requirements& r) {
    return verify_jwt(
        sign_jwt(R"({"sub":"alice","exp":1700000100)" + claims + "}", secret),
        secret, now, r);
  };
  const std::string iss = R"(,"iss":"https://id.example")";
  CAF_CHECK(with(R"(,"aud":"chat")" + iss, req));
  CAF_CHECK(with(R"(,"aud":["other","chat"])" + iss, req));
  CAF_CHECK_EQUAL(reason(with(iss, req)), "audience not accepted");
  CAF_CHECK_EQUAL(reason(with(R"(,"aud":"other")" + iss, req)),
                  "audience not accepted");
  CAF_CHECK_EQUAL(reason(with(R"(,"aud":["other"])" + iss, req)),
                  "audience not accepted");
  CAF_CHECK_EQUAL(reason(with(R"(,"aud":[])" + iss, req)),
                  "audience not accepted");
  CAF_CHECK_EQUAL(reason(with(R"(,"aud":[1,"chat"])" + iss, req)),
                  "audience not accepted");
  CAF_CHECK_EQUAL(reason(with(R"(,"aud":{"chat":1})" + iss, req)),
                  "audience not accepted");
  CAF_CHECK_EQUAL(reason(with(R"(,"aud":"chat")", req)), "issuer not accepted");
  CAF_CHECK_EQUAL(reason(with(R"(,"aud":"chat","iss":"https://evil")", req)),
                  "issuer not accepted");
  CAF_CHECK_EQUAL(
      reason(with(R"(,"aud":"chat","iss":["https://id.example"])", req)),
      "issuer not accepted");
  // Not required: not checked.
  CAF_CHECK(with(R"(,"aud":"other","iss":"anyone")", {}));
  CAF_CHECK(with(R"(,"aud":"chat")", {"chat", ""}));
  CAF_CHECK(with(iss, {"", "https://id.example"}));
}

CAF_TEST(jwt repeated keys are refused) {
  const std::string secret = "k3y";
  const int64_t now = 1'700'000'000;
  auto payload = [&](const std::string& json) {
    return verify_jwt(sign_jwt(json, secret), secret, now);
  };
  CAF_CHECK_EQUAL(
      reason(payload(R"({"sub":"alice","exp":1700000100,"sub":"mallory"})")),
      "repeated key in token");
  CAF_CHECK_EQUAL(
      reason(payload(R"({"exp":1,"sub":"alice","exp":1700000100})")),
      "repeated key in token");
  CAF_CHECK_EQUAL(
      reason(payload(R"({"sub":"a","exp":1700000100,"x":{"k":1,"k":2}})")),
      "repeated key in token");
  CAF_CHECK_EQUAL(
      reason(payload(R"({"sub":"a","exp":1700000100,"x":[{"k":1,"k":2}]})")),
      "repeated key in token");
  // The same key in different objects is no repetition.
  CAF_CHECK(payload(R"({"sub":"a","exp":1700000100,"x":{"sub":1,"exp":2}})"));
  CAF_CHECK(
      payload(R"({"sub":"a","exp":1700000100,"x":[{"k":1},{"k":2}],"k":3})"));
  CAF_CHECK(payload(R"({"sub":"a","exp":1700000100,"x":{"y":{"k":1}},)"
                    R"("y":{"k":2}})"));
  // In the header too.
  auto body = R"({"sub":"alice","exp":1700000100})";
  CAF_CHECK(verify_jwt(
      sign_with_header(R"({"alg":"HS256","typ":"JWT"})", body, secret), secret,
      now));
  CAF_CHECK_EQUAL(
      reason(verify_jwt(
          sign_with_header(R"({"alg":"none","alg":"HS256"})", body, secret),
          secret, now)),
      "repeated key in token");
  CAF_CHECK_EQUAL(reason(verify_jwt(
                      sign_with_header(R"({"alg":"HS256","typ":"a","typ":"b"})",
                                       body, secret),
                      secret, now)),
                  "repeated key in token");
}

CAF_TEST(identity passes jwt - audience and jwt - issuer on) {
  middleware_registry registry;
  options opts;
  opts.auth = "jwt";
  opts.jwt_secret = "a-secret-of-at-least-32-bytes-0123456789";
  opts.jwt_audience = "chat";
  opts.jwt_issuer = "https://id.example";
  auto chain = registry.make_handshake_chain(opts);
  CAF_REQUIRE(chain);
  auto exp = std::to_string(std::time(nullptr) + 300);
  auto token = [&](const std::string& extra) {
    return sign_jwt(R"({"sub":"alice","exp":)" + exp + extra + "}",
                    opts.jwt_secret);
  };
  auto ctx = ws_request("/ws?token=" +
                        token(R"(,"aud":["chat"],"iss":"https://id.example")"));
  CAF_CHECK(!chain->run(ctx));
  CAF_CHECK_EQUAL(ctx.uid, "alice");
  for (auto extra : {R"(,"iss":"https://id.example")",
                     R"(,"aud":"other","iss":"https://id.example")",
                     R"(,"aud":"chat")", R"(,"aud":"chat","iss":"x")"}) {
    ctx = ws_request("/ws?token=" + token(extra));
    auto rejection = chain->run(ctx);
    CAF_REQUIRE(rejection);
    CAF_CHECK_EQUAL(rejection->status, 401u);
  }
}
