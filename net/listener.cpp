#include "net/listener.hpp"

#include "loop/loop_coordinator.hpp"
#include "net/connection_quota.hpp"
#include "net/socket_limits.hpp"
#include "util/log.hpp"

#include <algorithm>

namespace wsc::net {

namespace {

/// Sockets in the HTTP phase (handshakes under way, API clients) allowed on
/// top of `max-connections`: past `max-connections + accept_margin` open
/// sockets, WebSockets included, a new one is closed at once. Raw sockets
/// that never finish a handshake are otherwise bounded by
/// `handshake-timeout`, the descriptor limit (docs/security.md F8) and, per
/// client address, `max-connections-per-address`.
constexpr uint64_t accept_margin = 1024;

} // namespace

listener::listener(std::vector<asio::io_context*> contexts,
                   std::shared_ptr<const http_shared> shared)
    : contexts_(std::move(contexts)),
      // The scheduler's loops have one thread each; the server's own
      // io_context has `io-threads` (server::start, from node::make).
      one_thread_each_(loop_coordinator::of(shared->sys) != nullptr ||
                       shared->setup->opts.io_threads <= 1),
      acceptor_(asio::make_strand(*contexts_.front())),
      retry_(acceptor_.get_executor()), shared_(std::move(shared)) {
  // nop
}

beast::error_code listener::bind(const tcp::endpoint& endpoint) {
  beast::error_code ec;
  acceptor_.open(endpoint.protocol(), ec);
  if (!ec)
    acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec)
    acceptor_.bind(endpoint, ec);
  if (!ec)
    acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  return ec;
}

uint16_t listener::port() const {
  beast::error_code ec;
  return acceptor_.local_endpoint(ec).port();
}

void listener::start() {
  asio::dispatch(
      acceptor_.get_executor(),
      beast::bind_front_handler(&listener::do_accept, shared_from_this()));
}

void listener::stop() {
  asio::post(acceptor_.get_executor(), [self = shared_from_this()] {
    beast::error_code ec;
    self->acceptor_.close(ec);
    self->retry_.cancel();
  });
}

void listener::do_accept() {
  if (!acceptor_.is_open())
    return;
  auto& ioc = *contexts_[next_context_];
  next_context_ = (next_context_ + 1) % contexts_.size();
  auto executor = one_thread_each_
                      ? asio::any_io_executor{ioc.get_executor()}
                      : asio::any_io_executor{asio::make_strand(ioc)};
  acceptor_.async_accept(
      executor,
      beast::bind_front_handler(&listener::on_accept, shared_from_this()));
}

void listener::refuse(tcp::socket& socket) {
  beast::error_code ignored;
  socket.close(ignored);
  ++refused_;
  auto now = std::chrono::steady_clock::now();
  if (now - refusal_logged_ >= std::chrono::seconds(10)) {
    log::warn("{} sockets closed at once: over max-connections + {} sockets "
              "open, or over max-connections-per-address sockets from one "
              "address",
              refused_, accept_margin);
    refused_ = 0;
    refusal_logged_ = now;
  }
  do_accept();
}

void listener::on_accept(beast::error_code ec, tcp::socket socket) {
  if (ec == asio::error::operation_aborted || !acceptor_.is_open())
    return;
  if (!ec) {
    backoff_ = std::chrono::milliseconds{0};
    beast::error_code ignored;
    auto& setup = *shared_->setup;
    if (shared_->http_sessions->load() +
            setup.health->open_connections.load() >=
        setup.opts.max_connections + accept_margin)
      return refuse(socket);
    auto remote = socket.remote_endpoint(ignored);
    auto address = ignored ? std::string{} : remote.address().to_string();
    // One address may not hold every socket the node accepts.
    if (!setup.quota->acquire_socket(address,
                                     setup.opts.max_connections_per_address))
      return refuse(socket);
    socket.set_option(tcp::no_delay(true), ignored);
    limit_send_buffer(socket, setup.opts.socket_send_buffer);
    std::make_shared<http_session>(std::move(socket), shared_,
                                   std::move(address))
        ->run();
    do_accept();
    return;
  }
  // Out of file descriptors and the like: retrying at once would spin. Back
  // off (100 ms doubling up to 1 s) and log once per pause.
  backoff_ = std::clamp(backoff_ * 2, std::chrono::milliseconds{100},
                        std::chrono::milliseconds{1000});
  log::warn("accept failed: {}; pausing accepts for {}ms", ec.message(),
            backoff_.count());
  retry_.expires_after(backoff_);
  retry_.async_wait([self = shared_from_this()](beast::error_code err) {
    if (!err)
      self->do_accept();
  });
}

} // namespace wsc::net
