#include "net/http_session.hpp"

#include "actors/http_api.hpp"
#include "flow/handshake_budget.hpp"
#include "net/connection_quota.hpp"
#include "net/session_list.hpp"
#include "net/socket_limits.hpp"
#include "net/websocket_session.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <cctype>

namespace wsc::net {

namespace {

/// Limits of the HTTP phase: API bodies and upgrade requests are small.
constexpr size_t max_header_bytes = 16 * 1024;
constexpr size_t max_body_bytes = 1024 * 1024;
constexpr size_t max_unauthorized_body_bytes = 16 * 1024;
/// What the read buffer may hold at once: a request head, or a body's
/// bytes on their way to the body. Beast bounds the head (header_limit) and
/// the body (body_limit) but not the trailer fields after a chunked body,
/// which it keeps whole until their end: without this bound a client made
/// the node hold 240 MB, and one field of 64 KiB made Beast throw out of
/// the parser and end the process (probe helper-58).
constexpr size_t max_read_buffer_bytes = 2 * max_header_bytes;

/// How long the answers a client asked for before it ended may take to
/// leave without progress once the socket is closed (a slow or lossy link
/// needs several retransmissions' time; a client that reads nothing keeps
/// no more than this).
constexpr std::chrono::milliseconds answer_grace{10'000};

/// RFC 6455 4.2.1: one Sec-WebSocket-Key, the base64 encoding of 16 bytes
/// (22 characters and `==`). Beast checks only that there is one and that
/// it is not longer than that.
bool valid_websocket_key(const http::request<http::string_body>& req) {
  if (req.count(http::field::sec_websocket_key) != 1)
    return false;
  auto key = req[http::field::sec_websocket_key];
  auto base64 = [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
           (c >= '0' && c <= '9') || c == '+' || c == '/';
  };
  return key.size() == 24 && key.substr(22) == "==" &&
         std::all_of(key.begin(), key.begin() + 22, base64);
}

std::string lower(std::string_view text) {
  std::string out{text};
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  return out;
}

/// Paths answered by the HTTP_API actor rather than static files.
bool is_api_path(std::string_view target) {
  return target.rfind("/api/", 0) == 0 || target.rfind("/healthz", 0) == 0 ||
         target.rfind("/metrics", 0) == 0;
}

} // namespace

http_session::http_session(tcp::socket&& socket,
                           std::shared_ptr<const http_shared> shared,
                           std::string address)
    : stream_(std::move(socket)), buffer_(max_read_buffer_bytes),
      shared_(std::move(shared)), address_(std::move(address)) {
  ++*shared_->http_sessions;
}

http_session::~http_session() {
  --*shared_->http_sessions;
  shared_->setup->quota->release_socket(address_);
}

void http_session::run() {
  asio::dispatch(
      stream_.get_executor(),
      beast::bind_front_handler(&http_session::do_read, shared_from_this()));
}

void http_session::do_read() {
  parser_.emplace();
  parser_->header_limit(max_header_bytes);
  parser_->body_limit(max_body_bytes);
  // A client that sends half a request (slowloris) is dropped at the deadline,
  // with a reset if it has not taken our last answer either.
  stream_.expires_after(shared_->setup->opts.handshake_timeout);
  if (reset_at_deadline_)
    reset_at_deadline(holds_unsent_bytes(stream_.socket()));
  http::async_read_header(
      stream_, buffer_, *parser_,
      beast::bind_front_handler(&http_session::on_header, shared_from_this()));
}

bool http_session::failed(beast::error_code ec) {
  if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
      ec == asio::error::operation_aborted) {
    // Whoever ends its requests may still read the answers. (A deadline
    // closed the socket already; do_read armed the reset it needed.)
    if (ec == http::error::end_of_stream)
      drop_unsent_bytes(stream_.socket(), answer_grace);
    stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
    return true;
  }
  if (ec) {
    respond(400, "application/json", R"({"error":"malformed HTTP request"})",
            false);
    return true;
  }
  return false;
}

void http_session::on_header(beast::error_code ec, std::size_t) {
  if (failed(ec))
    return;
  // Only an /api/ request with the API key may bring a large body (up to
  // 1 MiB held per socket): no other request needs one, and otherwise anyone
  // who can connect would make the node hold it (a probe held +300 MB with
  // 300 sockets posting to `/` or to a percent-encoded `/%61pi/`).
  auto& req = parser_->get();
  bool api = std::string_view{req.target()}.rfind("/api/", 0) == 0;
  if (!parser_->is_done() &&
      !(api &&
        api_key_accepted(shared_->setup->opts.api_key,
                         std::string{req[http::field::authorization]}))) {
    auto length = parser_->content_length();
    if (!length || *length > max_unauthorized_body_bytes) {
      if (api)
        respond(401, "application/json",
                R"({"error":"missing or wrong API key"})", false);
      else
        respond(413, "application/json",
                R"({"error":"request body too large"})", false);
      return;
    }
  }
  if (parser_->is_done())
    return on_read({}, 0);
  http::async_read(
      stream_, buffer_, *parser_,
      beast::bind_front_handler(&http_session::on_read, shared_from_this()));
}

void http_session::on_read(beast::error_code ec, std::size_t) {
  if (failed(ec))
    return;
  auto req = parser_->release();
  if (websocket::is_upgrade(req)) {
    upgrade(std::move(req));
    return;
  }
  auto& setup = *shared_->setup;
  if (req.method() == http::verb::get && !is_api_path(req.target())) {
    auto target = std::string{req.target()};
    if (auto file = shared_->files->find(target.substr(0, target.find('?')))) {
      respond(200, file->content_type, *file->body, req.keep_alive());
      return;
    }
  }
  auto exchange = std::make_shared<http_exchange>();
  exchange->request.method = std::string{req.method_string()};
  exchange->request.target = std::string{req.target()};
  exchange->request.authorization =
      std::string{req[http::field::authorization]};
  exchange->request.body = std::move(req.body());
  bool keep_alive = req.keep_alive() && !setup.health->draining;
  if (auto answer = answer_without_actor(
          handshake_request::from_target(exchange->request.method,
                                         exchange->request.target)
              .path,
          exchange->request.authorization, setup.opts.api_key))
    return respond(answer->status, answer->content_type,
                   std::move(answer->body), keep_alive, answer->cors);
  // The answer comes from an actor thread: hop back onto this strand.
  exchange->respond = [self = shared_from_this(),
                       keep_alive](http_response res) {
    asio::post(self->stream_.get_executor(),
               [self, keep_alive, res = std::move(res)]() mutable {
                 self->respond(res.status, res.content_type,
                               std::move(res.body), keep_alive, res.cors);
               });
  };
  stream_.expires_after(setup.opts.request_timeout + std::chrono::seconds(1));
  caf::anon_send(shared_->api, std::move(exchange));
}

void http_session::upgrade(http::request<http::string_body> req) {
  auto& setup = *shared_->setup;
  auto reject = [&](unsigned status, const std::string& reason) {
    setup.metrics->count_rejection(status);
    respond(status, "text/plain", reason + "\n", false);
  };
  handshake_context ctx;
  ctx.request = handshake_request::from_target(std::string{req.method_string()},
                                               std::string{req.target()});
  if (ctx.request.path != "/ws")
    return reject(404, "not found");
  if (!valid_websocket_key(req))
    return reject(400, "malformed Sec-WebSocket-Key (one, 16 bytes in base64)");
  if (setup.health->draining)
    return reject(503, "node is draining");
  for (auto& field : req)
    ctx.request.headers[lower(field.name_string())] =
        std::string{field.value()};
  ctx.request.remote_address = address_;
  if (auto rejection = shared_->chain.run(ctx))
    return reject(rejection->status, rejection->reason);
  // Before everything a connection costs the state store, by the address
  // the middlewares left (one behind a proxy may set the client's), as the
  // connection quota counts it.
  if (setup.handshakes &&
      !setup.handshakes->admit(ctx.request.remote_address,
                               handshake_budget::clock::now())) {
    setup.metrics->count_rejection(503);
    return respond(503, "text/plain", "too many handshakes from this address\n",
                   false, false, true);
  }
  // Durable resume: the device whose cursor to use, or an explicit `since`.
  auto device = ctx.request.param("device");
  auto since = ctx.request.param("since");
  bool since_ok = since.size() <= 18 &&
                  std::all_of(since.begin(), since.end(),
                              [](char c) { return c >= '0' && c <= '9'; });
  if ((!device.empty() && !valid_name(device)) || !since_ok ||
      (!since.empty() && device.empty()))
    return reject(400, "malformed device or since (since needs a device)");
  if (++setup.health->open_connections > setup.opts.max_connections) {
    --setup.health->open_connections;
    return reject(503, "too many connections");
  }
  // Per node, not cluster-wide: max-connections-per-uid and
  // max-connections-per-address bound what one uid or one client address
  // holds on this node (a uid may hold as many on each other node).
  auto& opts = setup.opts;
  auto& address = ctx.request.remote_address;
  if (!setup.quota->acquire(ctx.uid, address, opts.max_connections_per_uid,
                            opts.max_connections_per_address)) {
    --setup.health->open_connections;
    // Which limit was it? The uid's alone decides (taking nothing if full).
    bool uid_full = !setup.quota->acquire(ctx.uid, address,
                                          opts.max_connections_per_uid, 0);
    if (!uid_full)
      setup.quota->release(ctx.uid, address);
    return reject(503, uid_full ? "too many connections of this uid"
                                : "too many connections from this address");
  }
  // From here the WebSocket session owns the counted connection and the
  // quota slot: nothing returns early, and its destructor gives both back.
  // It decides itself how its socket closes.
  reset_at_deadline(false);
  auto session = websocket_session::make(stream_.release_socket(),
                                         shared_->setup, ctx.uid, address);
  open_context opening;
  opening.who = conn_ref{setup.conn_ids->who().id, setup.conn_ids->next(),
                         std::move(ctx.uid), std::move(device)};
  opening.groups = std::move(ctx.groups);
  opening.attributes = std::move(ctx.attributes);
  if (!since.empty())
    opening.attributes["since"] = since;
  if (shared_->websockets)
    shared_->websockets->add(session);
  session->run(shared_->sys, std::move(req), std::move(opening));
}

void http_session::respond(unsigned status, const std::string& content_type,
                           std::string body, bool keep_alive, bool cors,
                           bool retry_soon) {
  response_ = std::make_shared<http::response<http::string_body>>(
      static_cast<http::status>(status), 11);
  response_->set(http::field::server, "wscluster");
  response_->set(http::field::content_type, content_type);
  if (cors)
    response_->set(http::field::access_control_allow_origin, "*");
  if (retry_soon)
    response_->set(http::field::retry_after, "1");
  response_->keep_alive(keep_alive);
  response_->body() = std::move(body);
  response_->prepare_payload();
  stream_.expires_after(std::chrono::seconds(10));
  // A write that meets its deadline met a client that reads nothing.
  reset_at_deadline(true);
  http::async_write(stream_, *response_,
                    beast::bind_front_handler(&http_session::on_write,
                                              shared_from_this(), keep_alive));
}

void http_session::on_write(bool keep_alive, beast::error_code ec,
                            std::size_t) {
  response_.reset();
  if (ec || !keep_alive) {
    // A write that timed out met a client that reads nothing (Beast's
    // deadline closed the socket: respond armed the reset).
    if (!ec)
      drop_unsent_bytes(stream_.socket(), answer_grace);
    stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
    return;
  }
  do_read();
}

void http_session::reset_at_deadline(bool reset) {
  if (reset == reset_at_deadline_)
    return;
  reset_at_deadline_ = reset;
  reset_on_close(stream_.socket(), reset);
}

} // namespace wsc::net
