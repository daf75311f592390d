#include "net/cluster_tls.hpp"

#include "util/log.hpp"

#include <caf/io/network/interfaces.hpp>
#include <caf/io/network/native_socket.hpp>
#include <caf/sec.hpp>

#include <openssl/err.h>

#include <algorithm>
#include <limits>

namespace wsc::net {

namespace {

namespace network = caf::io::network;

/// OpenSSL's queued errors as one line (and the queue emptied: it is
/// per thread and would be blamed on the next connection).
std::string openssl_errors() {
  std::string text;
  while (auto err = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof(buf));
    if (!text.empty())
      text += "; ";
    text += buf;
  }
  return text.empty() ? "unknown error" : text;
}

/// OpenSSL counts bytes in ints.
int clamp_to_int(size_t len) {
  return static_cast<int>(
      std::min<size_t>(len, std::numeric_limits<int>::max()));
}

} // namespace

// -- tls_context --------------------------------------------------------------

caf::expected<std::shared_ptr<tls_context>>
tls_context::load(const std::string& cert, const std::string& key,
                  const std::string& ca) {
  auto fail = [](SSL_CTX* ctx, std::string what) {
    SSL_CTX_free(ctx);
    return caf::make_error(caf::sec::runtime_error,
                           "cluster TLS: " + what + ": " + openssl_errors());
  };
  auto ctx = SSL_CTX_new(TLS_method());
  if (ctx == nullptr)
    return fail(ctx, "cannot create an OpenSSL context");
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  // No renegotiation (it would make a write wait for a read) and no
  // session tickets (nodes do not resume; a ticket is a write after the
  // handshake).
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
  SSL_CTX_set_num_tickets(ctx, 0);
  // CAF's stream retries a write from where it left off, in the buffer it
  // may have moved since.
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                            SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1)
    return fail(ctx, "cannot load the certificate " + cert);
  if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1)
    return fail(ctx, "cannot load the private key " + key);
  if (SSL_CTX_check_private_key(ctx) != 1)
    return fail(ctx, "the private key does not match the certificate");
  if (SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr) != 1)
    return fail(ctx, "cannot load the CA " + ca);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                     nullptr);
  if (SSL_CTX_set_cipher_list(ctx, "HIGH:!aNULL:!MD5") != 1)
    return fail(ctx, "cannot set the cipher list");
  return std::shared_ptr<tls_context>{new tls_context(ctx)};
}

tls_context::~tls_context() {
  SSL_CTX_free(ctx_);
}

SSL* tls_context::new_session(int fd, bool accepting) const {
  auto ssl = SSL_new(ctx_);
  if (ssl == nullptr || SSL_set_fd(ssl, fd) != 1) {
    log::warn("cluster TLS: cannot start a session: {}", openssl_errors());
    SSL_free(ssl);
    return nullptr;
  }
  if (accepting)
    SSL_set_accept_state(ssl);
  else
    SSL_set_connect_state(ssl);
  return ssl;
}

// -- tls_policy ---------------------------------------------------------------

tls_policy::~tls_policy() {
  SSL_free(ssl_);
}

bool tls_policy::handshake() {
  if (failed_)
    return false;
  ERR_clear_error(); // SSL_get_error reads the thread's queue
  auto ret = SSL_do_handshake(ssl_);
  if (ret == 1) {
    handshaking_ = false;
    wants_write_ = false;
    return true;
  }
  switch (SSL_get_error(ssl_, ret)) {
  case SSL_ERROR_WANT_READ:
    wants_write_ = false;
    break;
  case SSL_ERROR_WANT_WRITE:
    wants_write_ = true;
    break;
  default:
    failed_ = true;
    wants_write_ = false;
    log::debug("cluster TLS: handshake failed: {}", openssl_errors());
  }
  return false;
}

tls_policy::rw_state tls_policy::after_io(int ret, bool writing) {
  switch (SSL_get_error(ssl_, ret)) {
  case SSL_ERROR_WANT_READ:
    // Without renegotiation a write never waits for the peer's bytes: were
    // it to, the writable socket would be polled in a busy loop.
    return writing ? rw_state::failure : rw_state::success;
  case SSL_ERROR_WANT_WRITE:
    return rw_state::success; // nothing now, the socket is polled
  case SSL_ERROR_ZERO_RETURN: // the peer closed the session
    return rw_state::failure;
  default:
    ERR_clear_error();
    return rw_state::failure;
  }
}

template<class Io>
tls_policy::rw_state tls_policy::transfer(size_t& result, size_t len,
                                          rw_state idle, bool writing, Io io) {
  result = 0;
  if (handshaking_ && !handshake())
    return failed_ ? rw_state::failure : idle;
  if (len == 0)
    return idle;
  ERR_clear_error();
  auto ret = io(clamp_to_int(len));
  if (ret <= 0)
    return after_io(ret, writing);
  result = static_cast<size_t>(ret);
  return rw_state::success;
}

tls_policy::rw_state tls_policy::read_some(size_t& result, native_socket,
                                           void* buf, size_t len) {
  return transfer(result, len, rw_state::success, false,
                  [&](int n) { return SSL_read(ssl_, buf, n); });
}

tls_policy::rw_state tls_policy::write_some(size_t& result, native_socket,
                                            const void* buf, size_t len) {
  // The scribe passes bytes only after the handshake; an empty write
  // drives the handshake and, unless it needs to send, ends the stream's
  // interest in writing ("indeterminate").
  return transfer(result, len, rw_state::indeterminate, true,
                  [&](int n) { return SSL_write(ssl_, buf, n); });
}

bool tls_policy::must_read_more(native_socket, size_t threshold) {
  return static_cast<size_t>(SSL_pending(ssl_)) >= threshold;
}

// -- tls_scribe ---------------------------------------------------------------

tls_scribe::stream::stream(network::default_multiplexer& mpx,
                           network::native_socket fd, SSL* ssl,
                           tls_scribe& owner)
    : network::stream(mpx, fd), policy_(ssl), owner_(owner) {
  // nop
}

void tls_scribe::stream::handle_event(network::operation op) {
  auto was_handshaking = policy_.handshaking();
  handle_event_impl(op, policy_);
  if (!was_handshaking || op == network::operation::propagate_error)
    return;
  if (!policy_.handshaking())
    owner_.handshake_done();
  else if (policy_.handshake_wants_write())
    force_empty_write(&owner_);
}

tls_scribe::tls_scribe(network::default_multiplexer& mpx,
                       network::native_socket fd, SSL* ssl)
    : caf::io::scribe(network::conn_hdl_from_socket(fd)),
      stream_(mpx, fd, ssl, *this) {
  // nop
}

void tls_scribe::configure_read(caf::io::receive_policy::config config) {
  stream_.configure_read(config);
  if (!launched_)
    launch();
}

void tls_scribe::ack_writes(bool enable) {
  stream_.ack_writes(enable);
}

std::vector<char>& tls_scribe::wr_buf() {
  return holding_ ? held_ : stream_.wr_buf();
}

std::vector<char>& tls_scribe::rd_buf() {
  return stream_.rd_buf();
}

void tls_scribe::graceful_shutdown() {
  stream_.graceful_shutdown();
  detach(&stream_.backend(), false);
}

void tls_scribe::flush() {
  if (!holding_)
    stream_.flush(this);
}

std::string tls_scribe::addr() const {
  auto x = network::remote_addr_of_fd(stream_.fd());
  return x ? *x : std::string{};
}

uint16_t tls_scribe::port() const {
  auto x = network::remote_port_of_fd(stream_.fd());
  return x ? *x : 0;
}

void tls_scribe::add_to_loop() {
  stream_.activate(this);
}

void tls_scribe::remove_from_loop() {
  stream_.passivate();
}

void tls_scribe::launch() {
  launched_ = true;
  stream_.start(this);
  // A client speaks first: one empty write sends its hello. A server's
  // handshake waits for the peer's bytes (the write ends at once).
  stream_.force_empty_write(this);
}

void tls_scribe::handshake_done() {
  holding_ = false;
  if (detached()) { // BASP closed it in the event that ended the handshake
    std::vector<char>{}.swap(held_);
    return;
  }
  auto& out = stream_.wr_buf();
  out.insert(out.end(), held_.begin(), held_.end());
  std::vector<char>{}.swap(held_);
  if (!out.empty())
    stream_.flush(this);
}

} // namespace wsc::net
