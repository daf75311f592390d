#pragma once

// The node's HTTP and WebSocket front: no Beast type leaks out of net/.

#include "actors/actors.hpp"
#include "actors/node_context.hpp"
#include "middleware/middleware.hpp"

#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include <cstdint>
#include <memory>

namespace wsc {

/// Accepts HTTP requests and WebSocket upgrades on `listen`, runs socket I/O
/// on its own threads (or, with `scheduler-policy=loop`, on the actor
/// scheduler's event loops) and hands everything else to actors.
class server {
public:
  ~server();

  /// Binds the listener. Fails (e.g. address in use) without side effects.
  static caf::expected<std::unique_ptr<server>> make(caf::actor_system& sys,
                                                     node_context_ptr node,
                                                     handshake_chain chain,
                                                     http_api_actor api);

  /// The bound port (useful with port 0).
  uint16_t port() const;

  /// Starts accepting on `threads` I/O threads (ignored on the scheduler's
  /// loops: `io-threads` made them).
  void start(size_t threads);

  /// Stops accepting new connections; open ones stay.
  void stop_accepting();

  /// Closes every socket that is still open and joins the I/O threads (on
  /// the scheduler's loops: closes the WebSockets and waits, bounded, until
  /// they are gone; must not run on a loop).
  void stop();

private:
  void stop_on_loops();

  struct impl;
  explicit server(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

} // namespace wsc
