#pragma once

#include "net/beast.hpp"
#include "net/http_session.hpp"

#include <chrono>
#include <memory>

namespace wsc::net {

/// Accepts TCP connections and gives each an HTTP session on its own strand.
class listener : public std::enable_shared_from_this<listener> {
public:
  listener(asio::io_context& ioc, std::shared_ptr<const http_shared> shared);

  /// Opens, binds and listens; an error (address in use) is returned.
  beast::error_code bind(const tcp::endpoint& endpoint);

  uint16_t port() const;

  void start();

  /// Stops accepting (posted to the acceptor's strand).
  void stop();

private:
  void do_accept();
  void on_accept(beast::error_code ec, tcp::socket socket);

  asio::io_context& ioc_;
  tcp::acceptor acceptor_;
  /// Paces accepts after errors (e.g. out of file descriptors).
  asio::steady_timer retry_;
  std::chrono::milliseconds backoff_{0};
  /// Sockets closed at once because too many were open, since the last log.
  uint64_t refused_ = 0;
  std::chrono::steady_clock::time_point refusal_logged_;
  std::shared_ptr<const http_shared> shared_;
};

} // namespace wsc::net
