#include "net/server.hpp"

#include "net/listener.hpp"

#include <caf/all.hpp>

#include <thread>
#include <vector>

namespace wsc {

namespace asio = net::asio;

struct server::impl {
  asio::io_context ioc;
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
                                                    node_context_ptr node,
                                                    handshake_chain chain,
                                                    http_api_actor api) {
  auto ptr = std::make_unique<impl>();
  boost::system::error_code ec;
  auto& listen = node->opts.listen;
  auto address = asio::ip::make_address(listen.host, ec);
  if (ec)
    return caf::make_error(caf::sec::invalid_argument,
                           "cannot listen on " + listen.to_string() +
                               ": not an IP address");
  auto shared = std::make_shared<const net::http_shared>(
      net::http_shared{sys, node, std::move(chain), std::move(api),
                       std::make_shared<static_files>(node->opts.web_root),
                       std::make_shared<std::atomic<uint64_t>>(0)});
  ptr->listener = std::make_shared<net::listener>(ptr->ioc, shared);
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
  impl_->work.emplace(impl_->ioc.get_executor());
  impl_->listener->start();
  for (size_t i = 0; i < threads; ++i)
    impl_->threads.emplace_back([this] { impl_->ioc.run(); });
}

void server::stop_accepting() {
  impl_->listener->stop();
}

void server::stop() {
  if (!impl_)
    return;
  impl_->work.reset();
  impl_->ioc.stop();
  for (auto& t : impl_->threads)
    if (t.joinable())
      t.join();
  impl_->threads.clear();
}

} // namespace wsc
