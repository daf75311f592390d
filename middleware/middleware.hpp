#pragma once

// -- Middleware chains
// ---------------------------------------------------------
//
// As in the original component, a connection passes two chains. The HANDSHAKE
// chain runs on the HTTP upgrade request and may reject it with an HTTP
// response; it establishes the uid. The OPEN chain runs once the WebSocket is
// open, around the default step that binds the uid to the connection. Both are
// onions: every `before` in chain order, the inner step, then every `after` in
// reverse order. Middlewares are shared by all connections and called from
// several threads: keep them free of mutable state or guard it.

#include "config/options.hpp"
#include "protocol/messages.hpp"
#include "protocol/names.hpp"

#include <caf/expected.hpp>

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace wsc {

/// What the handshake chain sees of the HTTP upgrade request.
struct handshake_request {
  std::string method;
  std::string target;
  std::string path;
  /// Decoded query parameters.
  std::map<std::string, std::string> query;
  /// Header fields by lower-case name.
  std::map<std::string, std::string> headers;
  std::string remote_address;

  /// A header's value by lower-case name, or empty.
  std::string header(const std::string& lower_name) const;

  /// A query parameter's value, or empty.
  std::string param(const std::string& name) const;

  /// Splits and decodes `target` into `path` and `query`.
  static handshake_request from_target(std::string method, std::string target);
};

/// The state a handshake builds up; the identity step sets `uid`.
struct handshake_context {
  handshake_request request;
  std::string uid;
  /// Groups joined when the connection opens (e.g. a JWT `groups` claim).
  std::vector<std::string> groups;
  /// Free for middlewares to pass facts to later steps.
  std::map<std::string, std::string> attributes;
};

/// An HTTP answer instead of the upgrade.
struct http_rejection {
  unsigned status = 400;
  std::string reason;
};

/// One step of the handshake chain.
class handshake_middleware {
public:
  virtual ~handshake_middleware();

  /// Runs in chain order before the upgrade. A rejection answers the request
  /// and skips the remaining steps.
  virtual std::optional<http_rejection> before(handshake_context& ctx);

  /// Runs in reverse chain order after the inner steps, with their rejection
  /// if there was one.
  virtual void after(handshake_context& ctx,
                     const std::optional<http_rejection>& rejection);
};

/// The state of a connection that is opening.
struct open_context {
  conn_ref who;
  std::vector<std::string> groups;
  std::map<std::string, std::string> attributes;
};

/// Why an open middleware refused a connection: it is closed with this code.
struct close_request {
  uint16_t code = 1008;
  std::string reason;
};

/// One step of the open chain.
class open_middleware {
public:
  virtual ~open_middleware();

  /// Runs in chain order before the uid is bound. A close request closes the
  /// connection before anything is bound.
  virtual std::optional<close_request> before(open_context& ctx);

  /// Runs in reverse chain order once the uid is bound (or the open failed).
  /// `ctx.who` is what was bound: changing it here changes nothing.
  virtual void after(open_context& ctx,
                     const std::optional<close_request>& refused);
};

/// The handshake chain in configured order.
class handshake_chain {
public:
  std::vector<std::shared_ptr<handshake_middleware>> steps;

  /// Runs the onion; returns the rejection of the step that rejected, if any.
  std::optional<http_rejection> run(handshake_context& ctx) const;
};

/// The open chain in configured order. Split in two halves because the inner
/// step (binding the uid) is asynchronous.
class open_chain {
public:
  std::vector<std::shared_ptr<open_middleware>> steps;

  /// Runs every `before` in order; on a refusal, runs the `after` of the steps
  /// already entered and returns it.
  std::optional<close_request> enter(open_context& ctx) const;

  /// Runs every `after` in reverse order.
  void leave(open_context& ctx,
             const std::optional<close_request>& refused) const;
};

/// Builds middlewares by name, so that config can order them
/// (`handshake-chain`, `open-chain`). The built-ins are `origin` (the
/// `allowed-origins` check) and `identity` (uid from `auth`).
class middleware_registry {
public:
  using handshake_factory =
      std::function<std::shared_ptr<handshake_middleware>(const options&)>;
  using open_factory =
      std::function<std::shared_ptr<open_middleware>(const options&)>;

  /// A registry holding the built-in middlewares.
  middleware_registry();

  void add_handshake(const std::string& name, handshake_factory factory);
  void add_open(const std::string& name, open_factory factory);

  caf::expected<handshake_chain>
  make_handshake_chain(const options& opts) const;
  caf::expected<open_chain> make_open_chain(const options& opts) const;

private:
  std::map<std::string, handshake_factory> handshake_;
  std::map<std::string, open_factory> open_;
};

/// The credentials of an `Authorization: Bearer <token>` header (any case
/// of the scheme, RFC 7235), or an empty string.
std::string bearer_token(const std::string& authorization);

} // namespace wsc
