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

#include "flow/handshake_budget.hpp"
#include "loop/loop_multiplexer.hpp"
#include "net/pending_peers.hpp"

#include <caf/io/doorman.hpp>
#include <caf/io/scribe.hpp>

#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

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

  /// Whether the address of a connection a peer dialled may open one now:
  /// `peer_accept_rate` a second (and ten seconds of it at once). Real
  /// peers dial once per link; each connection costs the node a TLS
  /// handshake (a key exchange and a signature) before it knows whom it
  /// talks to.
  bool admit(caf::io::network::native_socket fd);

  /// Connections an address may open per second.
  static constexpr double peer_accept_rate = 10;

  /// The scribe for a connection a peer dialled; null if TLS cannot start.
  caf::io::scribe_ptr accepted_scribe(caf::io::network::native_socket fd);

  /// Connections a peer dialled that wait for its handshake (shared with
  /// the connections, which may be destroyed after the multiplexer).
  class pending_list {
  public:
    explicit pending_list(pending_peers::limits bounds) : peers_(bounds) {
      // nop
    }

    /// Counts the connection; returns those to close (displaced or
    /// expired).
    std::vector<pending_peers::key> add(caf::io::scribe* conn,
                                        const std::string& address);

    /// The peer introduced itself, or the connection is gone.
    void remove(const caf::io::scribe* conn);

    std::vector<pending_peers::key> expired();

  private:
    std::mutex mtx_;
    pending_peers peers_;
  };

  const std::shared_ptr<pending_list>& pending() const noexcept {
    return pending_;
  }

  /// A connection a peer dialled starts waiting for its handshake.
  void awaiting_handshake(caf::io::scribe* conn);

  /// An acceptor out of descriptors: back in the loop at the next tick.
  void resume_later(caf::io::doorman* acceptor);

protected:
  /// Closes expired connections and resumes paused acceptors.
  void on_tick() override;

private:
  caf::io::scribe_ptr make_scribe(caf::io::network::native_socket fd,
                                  bool accepting);

  /// Closes the connections, on the multiplexer's thread, outside the
  /// broker's handler that may be running now.
  void close_later(std::vector<pending_peers::key> conns);

  std::shared_ptr<tls_context> tls_;
  caf::error tls_error_;
  std::shared_ptr<pending_list> pending_;
  handshake_budget accepts_{peer_accept_rate};
  /// Acceptors paused for lack of descriptors (multiplexer's thread only).
  std::vector<caf::io::doorman_ptr> paused_;
};

} // namespace wsc::net
