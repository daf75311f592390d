#pragma once

// -- Bounds on what a stranger can make the cluster port allocate -----------
//
// CAF 0.17 reads a 32-byte BASP header and then allocates the payload it
// announces (up to 4 GiB) before any handshake: a few bytes of garbage on
// `cluster-listen` make a node allocate gigabytes. This network backend is
// CAF's own, with connections that accept as first message only a handshake
// of at most `max_handshake_payload` bytes and later messages of at most
// `max_basp_payload`. A read beyond is cut to one byte, which BASP reports
// as a malformed message: it closes the connection.
//
// Connections that have not sent their handshake yet are bounded in number
// and age (pending_peers); an accept that finds no descriptor left sheds the
// connection instead of leaving it queued (CAF's acceptor retried it in a
// busy loop). With `cluster-tls-*` the connections speak TLS (cluster_tls).

#include "loop/loop_multiplexer.hpp"
#include "net/pending_peers.hpp"

#include <caf/io/scribe.hpp>

#include <cstddef>
#include <memory>
#include <mutex>

namespace wsc::net {

class tls_context;

/// The largest payload of a connection's first BASP message (a handshake:
/// node id, app identifiers and the published REGISTRY's interface).
constexpr size_t max_handshake_payload = 64 * 1024;

/// The largest payload of any later BASP message: a delivery batch is cut at
/// a few MiB (see the REGISTRY), a single delivery is at most
/// `max-message-bytes` (64 MiB at most) plus its envelope.
constexpr size_t max_basp_payload = 80u << 20;

/// CAF's default network backend with the bounds above, run on an event
/// loop with `scheduler-policy=loop` (loop_multiplexer). Load it as
/// `load<caf::io::middleman, guarded_multiplexer>()`; TLS is on when the
/// actor system's config names `openssl_certificate`.
class guarded_multiplexer : public loop_multiplexer {
public:
  explicit guarded_multiplexer(caf::actor_system* sys);

  ~guarded_multiplexer() override;

  caf::io::scribe_ptr new_scribe(caf::io::network::native_socket fd) override;

  caf::expected<caf::io::scribe_ptr> new_tcp_scribe(const std::string& host,
                                                    uint16_t port) override;

  caf::io::doorman_ptr new_doorman(caf::io::network::native_socket fd) override;

  caf::expected<caf::io::doorman_ptr>
  new_tcp_doorman(uint16_t port, const char* in, bool reuse_addr) override;

  /// The scribe for a connection a peer dialled; null if TLS cannot start.
  caf::io::scribe_ptr accepted_scribe(caf::io::network::native_socket fd);

  /// A connection starts waiting for its peer's handshake.
  void awaiting_handshake(caf::io::scribe* conn);

  /// The connection's peer introduced itself, or the connection is gone.
  void handshake_over(const caf::io::scribe* conn);

protected:
  void on_tick() override;

private:
  caf::io::scribe_ptr make_scribe(caf::io::network::native_socket fd,
                                  bool accepting);

  /// Closes the connections, on the multiplexer's thread, outside the
  /// broker's handler that may be running now.
  void close_later(std::vector<pending_peers::key> conns);

  std::shared_ptr<tls_context> tls_;
  caf::error tls_error_;
  mutable std::mutex pending_mtx_;
  pending_peers pending_;
};

} // namespace wsc::net
