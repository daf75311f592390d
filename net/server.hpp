#pragma once

// The node's HTTP and WebSocket front: no Beast type leaks out of net/.

#include "actors/actors.hpp"
#include "actors/connection.hpp"
#include "actors/metrics.hpp"
#include "actors/node_health.hpp"
#include "actors/node_identity.hpp"
#include "config/options.hpp"
#include "middleware/middleware.hpp"
#include "protocol/codec.hpp"

#include <caf/expected.hpp>
#include <caf/fwd.hpp>

#include <cstdint>
#include <memory>

namespace wsc {

class connection_quota;
class handshake_budget;

/// What the HTTP and WebSocket front needs of its node; built once by the
/// node, after the actors it names.
struct server_setup {
  /// The front's settings: `listen`, `web-root`, `io-threads`, `api-key`,
  /// and the limits and timeouts of sockets and handshakes.
  options opts;
  /// Gives each new connection its id.
  std::shared_ptr<conn_id_source> conn_ids;
  /// Counts the open connections; refuses handshakes while draining.
  node_health_ptr health;
  /// Connections per uid and per client address.
  std::shared_ptr<connection_quota> quota;
  /// Handshakes per client address and second.
  std::shared_ptr<handshake_budget> handshakes;
  std::shared_ptr<node_metrics> metrics;
  /// The `frame-codec` of the WebSocket sessions (null: json).
  frame_codec_ptr codec;
  /// What every CONNECTION actor shares.
  connection_env_ptr connections;
};

/// Accepts HTTP requests and WebSocket upgrades on `listen`, runs socket I/O
/// on its own threads (or, with `scheduler-policy=loop`, on the actor
/// scheduler's event loops) and hands everything else to actors.
class server {
public:
  ~server();

  /// Binds the listener. Fails (e.g. address in use) without side effects.
  static caf::expected<std::unique_ptr<server>> make(caf::actor_system& sys,
                                                     server_setup setup,
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
