#pragma once

#include "net/beast.hpp"
#include "net/http_session.hpp"

#include <chrono>
#include <memory>
#include <vector>

namespace wsc::net {

/// Accepts TCP connections and gives each an HTTP session, on the given
/// io_contexts in turn (the acceptor runs on the first). A socket gets a
/// strand of its own only if several threads run its io_context; where one
/// thread does (`scheduler-policy=loop`: every loop; or `io-threads=1`) its
/// handlers cannot run concurrently anyway, and a strand costs memory per
/// socket and a hop per handler.
class listener : public std::enable_shared_from_this<listener> {
public:
  listener(std::vector<asio::io_context*> contexts,
           std::shared_ptr<const http_shared> shared);

  /// Opens, binds and listens; an error (address in use) is returned.
  beast::error_code bind(const tcp::endpoint& endpoint);

  uint16_t port() const;

  void start();

  /// Stops accepting (posted to the acceptor's strand).
  void stop();

private:
  void do_accept();
  /// Closes an accepted socket over a limit, counts it (logged at most
  /// every 10 s) and accepts the next.
  void refuse(tcp::socket& socket);
  void on_accept(beast::error_code ec, tcp::socket socket);

  std::vector<asio::io_context*> contexts_;
  /// Each of `contexts_` is run by one thread (see the class comment).
  bool one_thread_each_;
  /// The io_context of the next accepted socket (on the acceptor's strand).
  size_t next_context_ = 0;
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
