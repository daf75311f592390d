#include "net/server.hpp"

#include "loop/loop_coordinator.hpp"
#include "net/listener.hpp"
#include "net/session_list.hpp"
#include "util/log.hpp"
#include "util/run_loop.hpp"

#include <caf/all.hpp>

#include <chrono>
#include <thread>
#include <vector>

namespace wsc {

namespace asio = net::asio;

struct server::impl {
  /// The server's own event loop (`scheduler-policy` sharing or stealing),
  /// run by `threads`.
  std::optional<asio::io_context> ioc;
  /// With `scheduler-policy=loop`: the actor scheduler's loops, which run
  /// the sockets and outlive the server; it closes its WebSockets itself.
  loop_coordinator* loops = nullptr;
  std::shared_ptr<net::session_list> websockets;
  std::shared_ptr<const server_setup> setup;
  std::shared_ptr<std::atomic<uint64_t>> http_sessions;
  std::shared_ptr<net::listener> listener;
  std::vector<std::thread> threads;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>>
      work;
};

server::server(std::unique_ptr<impl> ptr) : impl_(std::move(ptr)) {
  // nop
}

server::~server() {
  stop();
}

caf::expected<std::unique_ptr<server>> server::make(caf::actor_system& sys,
                                                    server_setup setup,
                                                    handshake_chain chain,
                                                    http_api_actor api) {
  auto ptr = std::make_unique<impl>();
  auto shared_setup = std::make_shared<const server_setup>(std::move(setup));
  ptr->setup = shared_setup;
  std::vector<asio::io_context*> contexts;
  if (auto loops = loop_coordinator::of(sys)) {
    ptr->loops = loops;
    ptr->websockets = std::make_shared<net::session_list>();
    for (size_t i = 0; i < loops->num_loops(); ++i)
      contexts.push_back(&loops->context(i));
  } else {
    ptr->ioc.emplace();
    contexts.push_back(&*ptr->ioc);
  }
  ptr->http_sessions = std::make_shared<std::atomic<uint64_t>>(0);
  boost::system::error_code ec;
  auto& listen = shared_setup->opts.listen;
  auto address = asio::ip::make_address(listen.host, ec);
  if (ec)
    return caf::make_error(caf::sec::invalid_argument,
                           "cannot listen on " + listen.to_string() +
                               ": not an IP address");
  auto shared = std::make_shared<const net::http_shared>(net::http_shared{
      sys, shared_setup, std::move(chain), std::move(api),
      std::make_shared<static_files>(shared_setup->opts.web_root),
      ptr->http_sessions, ptr->websockets});
  ptr->listener = std::make_shared<net::listener>(std::move(contexts), shared);
  if (auto err = ptr->listener->bind({address, listen.port}))
    return caf::make_error(caf::sec::cannot_open_port,
                           "cannot listen on " + listen.to_string() + ": " +
                               err.message());
  return std::unique_ptr<server>{new server(std::move(ptr))};
}

uint16_t server::port() const {
  return impl_->listener->port();
}

void server::start(size_t threads) {
  impl_->listener->start();
  if (impl_->loops)
    return; // the scheduler's loops run it
  impl_->work.emplace(impl_->ioc->get_executor());
  for (size_t i = 0; i < threads; ++i)
    impl_->threads.emplace_back([this] { run_loop(*impl_->ioc, "wsc.io"); });
}

void server::stop_accepting() {
  impl_->listener->stop();
}

void server::stop() {
  if (!impl_)
    return;
  if (impl_->loops) {
    stop_on_loops();
    return;
  }
  impl_->work.reset();
  impl_->ioc->stop();
  for (auto& t : impl_->threads)
    if (t.joinable())
      t.join();
  impl_->threads.clear();
}

void server::stop_on_loops() {
  using namespace std::chrono_literals;
  if (!impl_->websockets)
    return; // stopped before
  impl_->listener->stop();
  // Each session tells its CONNECTION actor when its socket is gone, so the
  // actor system can end (its destructor waits for every actor). Bounded by
  // the sessions' close deadline (3 s).
  impl_->websockets->close_all(1001, "server stopping");
  impl_->websockets.reset();
  auto& open = impl_->setup->health->open_connections;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (open.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(10ms);
  if (auto left = open.load(); left > 0)
    log::warn("{} WebSocket sessions still open after the server stopped",
              left);
  // HTTP sessions hold no actor: the loops close them when they end.
}

} // namespace wsc
