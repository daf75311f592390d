#include "middleware/middleware.hpp"

#include "middleware/jwt.hpp"

#include <caf/sec.hpp>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <random>

namespace wsc {

// -- handshake_request --------------------------------------------------------

namespace {

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

std::string url_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '+') {
      out += ' ';
    } else if (in[i] == '%' && i + 2 < in.size() && hex_value(in[i + 1]) >= 0 &&
               hex_value(in[i + 2]) >= 0) {
      out +=
          static_cast<char>(hex_value(in[i + 1]) * 16 + hex_value(in[i + 2]));
      i += 2;
    } else {
      out += in[i];
    }
  }
  return out;
}

} // namespace

std::string handshake_request::header(const std::string& lower_name) const {
  auto i = headers.find(lower_name);
  return i == headers.end() ? std::string{} : i->second;
}

std::string handshake_request::param(const std::string& name) const {
  auto i = query.find(name);
  return i == query.end() ? std::string{} : i->second;
}

handshake_request handshake_request::from_target(std::string method,
                                                 std::string target) {
  handshake_request req;
  req.method = std::move(method);
  req.target = std::move(target);
  std::string_view t = req.target;
  auto qmark = t.find('?');
  req.path = url_decode(t.substr(0, qmark));
  if (qmark == std::string_view::npos)
    return req;
  auto rest = t.substr(qmark + 1);
  while (!rest.empty()) {
    auto amp = rest.find('&');
    auto pair = rest.substr(0, amp);
    auto eq = pair.find('=');
    auto key = url_decode(pair.substr(0, eq));
    auto value = eq == std::string_view::npos ? std::string{}
                                              : url_decode(pair.substr(eq + 1));
    if (!key.empty())
      req.query.emplace(std::move(key), std::move(value));
    if (amp == std::string_view::npos)
      break;
    rest = rest.substr(amp + 1);
  }
  return req;
}

// -- default middleware hooks -------------------------------------------------

handshake_middleware::~handshake_middleware() = default;

std::optional<http_rejection> handshake_middleware::before(handshake_context&) {
  return std::nullopt;
}

void handshake_middleware::after(handshake_context&,
                                 const std::optional<http_rejection>&) {
  // nop
}

open_middleware::~open_middleware() = default;

std::optional<close_request> open_middleware::before(open_context&) {
  return std::nullopt;
}

void open_middleware::after(open_context&,
                            const std::optional<close_request>&) {
  // nop
}

// -- chains -------------------------------------------------------------------

std::optional<http_rejection>
handshake_chain::run(handshake_context& ctx) const {
  std::optional<http_rejection> rejection;
  size_t entered = 0;
  for (; entered < steps.size(); ++entered) {
    rejection = steps[entered]->before(ctx);
    if (rejection) {
      ++entered; // the rejecting step sees its own outcome in after()
      break;
    }
  }
  while (entered > 0)
    steps[--entered]->after(ctx, rejection);
  return rejection;
}

std::optional<close_request> open_chain::enter(open_context& ctx) const {
  for (size_t i = 0; i < steps.size(); ++i) {
    if (auto refused = steps[i]->before(ctx)) {
      for (size_t j = i + 1; j > 0; --j)
        steps[j - 1]->after(ctx, refused);
      return refused;
    }
  }
  return std::nullopt;
}

void open_chain::leave(open_context& ctx,
                       const std::optional<close_request>& refused) const {
  for (auto i = steps.rbegin(); i != steps.rend(); ++i)
    (*i)->after(ctx, refused);
}

// -- built-in middlewares -----------------------------------------------------

std::string bearer_token(const std::string& authorization) {
  // RFC 7235: the scheme is case-insensitive.
  constexpr std::string_view scheme = "bearer ";
  if (authorization.size() < scheme.size() ||
      !std::equal(scheme.begin(), scheme.end(), authorization.begin(),
                  [](char a, char b) {
                    return a == std::tolower(static_cast<unsigned char>(b));
                  }))
    return {};
  return authorization.substr(scheme.size());
}

namespace {

/// Refuses an Origin outside `allowed-origins` with 403 (cross-site
/// WebSocket hijacking). Requests without Origin (non-browser clients) pass.
class origin_check : public handshake_middleware {
public:
  explicit origin_check(std::vector<std::string> allowed)
      : allowed_(std::move(allowed)) {
    // nop
  }

  std::optional<http_rejection> before(handshake_context& ctx) override {
    if (allowed_.empty())
      return std::nullopt;
    auto origin = ctx.request.header("origin");
    if (origin.empty() ||
        std::find(allowed_.begin(), allowed_.end(), origin) != allowed_.end())
      return std::nullopt;
    return http_rejection{403, "origin not allowed"};
  }

private:
  std::vector<std::string> allowed_;
};

/// Establishes the uid. With `auth=none` it is taken on trust from the query
/// (`uid=`) or the `auth` header, or generated; with `auth=jwt` it is the
/// verified token's `sub`.
class identity : public handshake_middleware {
public:
  explicit identity(const options& opts)
      : jwt_(opts.auth == "jwt"),
        secret_(opts.jwt_secret), required_{opts.jwt_audience,
                                            opts.jwt_issuer} {
    // nop
  }

  std::optional<http_rejection> before(handshake_context& ctx) override {
    return jwt_ ? from_token(ctx) : from_claim(ctx);
  }

private:
  std::optional<http_rejection> from_claim(handshake_context& ctx) {
    auto uid = ctx.request.param("uid");
    if (uid.empty())
      uid = ctx.request.header("auth");
    if (uid.empty()) {
      thread_local std::mt19937_64 rng{std::random_device{}()};
      static constexpr char digits[] = "0123456789abcdef";
      uid = "anon-";
      auto bits = rng();
      for (int i = 0; i < 12; ++i, bits >>= 4)
        uid += digits[bits & 0xF];
    }
    if (!valid_name(uid))
      return http_rejection{400, "malformed uid"};
    ctx.uid = std::move(uid);
    return std::nullopt;
  }

  std::optional<http_rejection> from_token(handshake_context& ctx) {
    auto token = ctx.request.param("token");
    if (token.empty())
      token = bearer_token(ctx.request.header("authorization"));
    using namespace std::chrono;
    auto now = duration_cast<seconds>(system_clock::now().time_since_epoch());
    auto claims = verify_jwt(token, secret_, now.count(), required_);
    if (!claims) {
      auto& ctx_msg = claims.error().context();
      return http_rejection{401, ctx_msg.match_elements<std::string>()
                                     ? ctx_msg.get_as<std::string>(0)
                                     : "bad token"};
    }
    ctx.uid = std::move(claims->sub);
    ctx.groups = std::move(claims->groups);
    ctx.attributes["jwt.exp"] = std::to_string(claims->exp);
    return std::nullopt;
  }

  bool jwt_;
  std::string secret_;
  /// `jwt-audience` and `jwt-issuer`, empty when not required.
  jwt_requirements required_;
};

} // namespace

// -- middleware_registry ------------------------------------------------------

middleware_registry::middleware_registry() {
  add_handshake("origin", [](const options& opts) {
    return std::make_shared<origin_check>(opts.allowed_origins);
  });
  add_handshake("identity", [](const options& opts) {
    return std::make_shared<identity>(opts);
  });
}

void middleware_registry::add_handshake(const std::string& name,
                                        handshake_factory factory) {
  handshake_[name] = std::move(factory);
}

void middleware_registry::add_open(const std::string& name,
                                   open_factory factory) {
  open_[name] = std::move(factory);
}

caf::expected<handshake_chain>
middleware_registry::make_handshake_chain(const options& opts) const {
  handshake_chain chain;
  bool has_identity = false;
  for (auto& name : opts.handshake_chain) {
    auto i = handshake_.find(name);
    if (i == handshake_.end())
      return caf::make_error(caf::sec::invalid_argument,
                             "unknown handshake middleware '" + name + "'");
    has_identity |= name == "identity";
    chain.steps.push_back(i->second(opts));
  }
  if (!has_identity)
    return caf::make_error(caf::sec::invalid_argument,
                           "handshake-chain must contain 'identity'");
  return chain;
}

caf::expected<open_chain>
middleware_registry::make_open_chain(const options& opts) const {
  open_chain chain;
  for (auto& name : opts.open_chain) {
    auto i = open_.find(name);
    if (i == open_.end())
      return caf::make_error(caf::sec::invalid_argument,
                             "unknown open middleware '" + name + "'");
    chain.steps.push_back(i->second(opts));
  }
  return chain;
}

} // namespace wsc
