#pragma once

#include "actors/actors.hpp"
#include "middleware/middleware.hpp"
#include "net/beast.hpp"
#include "net/server.hpp"
#include "util/static_files.hpp"

#include <caf/fwd.hpp>

#include <atomic>
#include <memory>
#include <optional>

namespace wsc::net {

class session_list;

/// What every HTTP session of a listener shares.
struct http_shared {
  caf::actor_system& sys;
  std::shared_ptr<const server_setup> setup;
  handshake_chain chain;
  http_api_actor api;
  std::shared_ptr<static_files> files;
  /// HTTP sessions alive (sockets accepted and not upgraded yet, or serving
  /// the API): bounded by the listener (see listener::on_accept).
  std::shared_ptr<std::atomic<uint64_t>> http_sessions;
  /// Null unless the server must close the WebSockets itself when it stops
  /// (its event loops outlive it: net/session_list.hpp).
  std::shared_ptr<session_list> websockets = nullptr;
};

/// One HTTP connection: answers API requests (keep-alive) until a request
/// upgrades to a WebSocket at /ws, which the handshake chain must admit.
class http_session : public std::enable_shared_from_this<http_session> {
public:
  /// `address`: the client's, for which the listener took a socket slot
  /// (`connection_quota::acquire_socket`); the session gives it back.
  http_session(tcp::socket&& socket, std::shared_ptr<const http_shared> shared,
               std::string address);

  ~http_session();

  void run();

private:
  void do_read();
  /// The header is in: an /api/ request without the API key may bring a
  /// small body only.
  void on_header(beast::error_code ec, std::size_t bytes);
  void on_read(beast::error_code ec, std::size_t bytes);
  /// Answers or drops a failed read; false if `ec` is no error.
  bool failed(beast::error_code ec);
  void upgrade(http::request<http::string_body> req);
  /// Writes an answer; `retry_soon` adds `Retry-After: 1` (a limit that
  /// frees up within a second).
  void respond(unsigned status, const std::string& content_type,
               std::string body, bool keep_alive, bool cors = false,
               bool retry_soon = false);
  void on_write(bool keep_alive, beast::error_code ec, std::size_t bytes);
  /// Whether Beast closing the socket at a deadline resets it; the socket
  /// option is set only when this changes (most sockets never need it: a
  /// handshake costs no extra system call).
  void reset_at_deadline(bool reset);

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::shared_ptr<const http_shared> shared_;
  std::optional<http::request_parser<http::string_body>> parser_;
  std::shared_ptr<http::response<http::string_body>> response_;
  std::string address_;
  bool reset_at_deadline_ = false;
};

} // namespace wsc::net
