#pragma once

// -- Mutual TLS on the cluster port, without busy loops -----------------------
//
// CAF's openssl module (0.17.6, libcaf_openssl/src/openssl/) drives the TLS
// handshake from the socket's write readiness: an accepted connection's
// BASP broker queues its server handshake at once, and while SSL_accept
// waits for the peer's first bytes each write attempt answers "success, 0
// bytes", so the socket stays registered for writing. One silent TCP
// connection kept the multiplexer's loop at a full core for as long as it
// stayed open (helper-45's probe). It also built an OpenSSL context, and
// read the certificate files, for every connection.
//
// Here one context serves every connection, and until the handshake has
// finished what BASP writes waits in the scribe: the socket is polled for
// writing only when OpenSSL has handshake bytes to send, and for reading
// otherwise, as the handshake needs.

#include <caf/expected.hpp>
#include <caf/io/network/default_multiplexer.hpp>
#include <caf/io/network/stream.hpp>
#include <caf/io/scribe.hpp>

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

namespace wsc::net {

/// The node's certificate, key and cluster CA: every connection presents
/// the certificate and requires the peer's, signed by the CA.
class tls_context {
public:
  static caf::expected<std::shared_ptr<tls_context>>
  load(const std::string& cert, const std::string& key, const std::string& ca);

  ~tls_context();

  tls_context(const tls_context&) = delete;
  tls_context& operator=(const tls_context&) = delete;

  /// A session on `fd` that accepts (a peer dialled) or connects; null
  /// when OpenSSL cannot make one.
  SSL* new_session(int fd, bool accepting) const;

private:
  explicit tls_context(SSL_CTX* ctx) : ctx_(ctx) {
    // nop
  }

  SSL_CTX* ctx_;
};

/// The OpenSSL side of one connection, as the policy of CAF's stream.
class tls_policy {
public:
  using rw_state = caf::io::network::rw_state;
  using native_socket = caf::io::network::native_socket;

  explicit tls_policy(SSL* ssl) : ssl_(ssl) {
    // nop
  }

  ~tls_policy();

  tls_policy(const tls_policy&) = delete;
  tls_policy& operator=(const tls_policy&) = delete;

  rw_state read_some(size_t& result, native_socket fd, void* buf, size_t len);

  rw_state write_some(size_t& result, native_socket fd, const void* buf,
                      size_t len);

  bool must_read_more(native_socket fd, size_t threshold);

  bool handshaking() const noexcept { return handshaking_; }

  /// Whether the handshake waits for the socket to take its bytes.
  bool handshake_wants_write() const noexcept { return wants_write_; }

private:
  /// Advances the handshake; false while it has not finished or failed.
  bool handshake();

  /// What a failed SSL_read or SSL_write means for the stream.
  rw_state after_io(int ret, bool writing);

  /// Drives the handshake, then moves up to `len` bytes with `io`;
  /// `idle` is the answer while there is nothing to move.
  template<class Io>
  rw_state transfer(size_t& result, size_t len, rw_state idle, bool writing,
                    Io io);

  SSL* ssl_;
  bool handshaking_ = true;
  bool wants_write_ = false;
  bool failed_ = false;
};

/// A BASP connection over TLS (CAF's scribe_impl with tls_policy, and the
/// bytes BASP writes held back until the handshake has finished).
class tls_scribe : public caf::io::scribe {
public:
  tls_scribe(caf::io::network::default_multiplexer& mpx,
             caf::io::network::native_socket fd, SSL* ssl);

  void configure_read(caf::io::receive_policy::config config) override;
  void ack_writes(bool enable) override;
  std::vector<char>& wr_buf() override;
  std::vector<char>& rd_buf() override;
  void graceful_shutdown() override;
  void flush() override;
  std::string addr() const override;
  uint16_t port() const override;
  void add_to_loop() override;
  void remove_from_loop() override;

private:
  class stream : public caf::io::network::stream {
  public:
    stream(caf::io::network::default_multiplexer& mpx,
           caf::io::network::native_socket fd, SSL* ssl, tls_scribe& owner);

    void handle_event(caf::io::network::operation op) override;

    bool handshaking() const noexcept { return policy_.handshaking(); }

  private:
    tls_policy policy_;
    tls_scribe& owner_;
  };

  void launch();

  /// The handshake finished: what BASP wrote meanwhile leaves now.
  void handshake_done();

  bool launched_ = false;
  /// Until the handshake has finished (and until the end of the event that
  /// finished it, so that bytes keep BASP's order), BASP writes to `held_`.
  bool holding_ = true;
  std::vector<char> held_;
  stream stream_;
};

} // namespace wsc::net
