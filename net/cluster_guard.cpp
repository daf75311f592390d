#include "net/cluster_guard.hpp"

#include "loop/write_through_scribe.hpp"
#include "net/cluster_tls.hpp"
#include "util/log.hpp"

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/io/abstract_broker.hpp>
#include <caf/io/basp/header.hpp>
#include <caf/io/basp/message_type.hpp>
#include <caf/io/doorman.hpp>
#include <caf/io/network/acceptor.hpp>
#include <caf/io/network/interfaces.hpp>
#include <caf/sec.hpp>

#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

namespace wsc::net {

namespace {

namespace basp = caf::io::basp;
namespace network = caf::io::network;

/// Logs the first of every thousand events of a kind.
void warn_every_1000(std::atomic<uint64_t>& count, const char* what) {
  if (count++ % 1000 == 0)
    log::warn("cluster port: {} ({} so far)", what, count.load());
}

/// A scribe that refuses oversized or premature BASP messages and, for a
/// connection a peer dialled, counts in `pending_peers` until BASP has taken
/// the peer's handshake.
template<class Scribe>
class guarded_scribe final : public Scribe {
public:
  template<class... Ts>
  explicit guarded_scribe(guarded_multiplexer& mpx, bool accepted, Ts&&... xs)
      : Scribe(mpx, std::forward<Ts>(xs)...), mpx_(mpx), accepted_(accepted),
        pending_(mpx.pending()) {
    // nop
  }

  ~guarded_scribe() override { over(); }

  bool consume(caf::execution_unit* ctx, const void* buf,
               size_t num_bytes) override {
    // A peer's first message is its side's handshake, with a payload.
    // Anything else closes the connection: a heartbeat would leave the
    // pending count for free, and CAF 0.17.6 crashes (null payload) on a
    // server handshake without payload sent to a server (helper-49).
    if (!header_seen_ && num_bytes == basp::header_size) {
      header_seen_ = true;
      if (!opens_as_peer(static_cast<const uint8_t*>(buf))) {
        refused();
        this->io_failure(ctx, network::operation::read);
        return false;
      }
    }
    payload_next_ = false;
    auto keep = Scribe::consume(ctx, buf, num_bytes);
    // BASP took the handshake's payload and asked for the next header.
    if (keep && payloads_ > 0 && !payload_next_)
      over();
    return keep;
  }

  void configure_read(caf::io::receive_policy::config config) override {
    if (accepted_ && !watched_) {
      watched_ = awaiting_ = true;
      mpx_.awaiting_handshake(this);
    }
    auto size = config.second;
    if (size != basp::header_size) { // a payload
      payload_next_ = true;
      auto limit = payloads_ > 0 ? max_basp_payload : max_handshake_payload;
      ++payloads_;
      if (size > limit) {
        refused();
        config = caf::io::receive_policy::exactly(1);
      }
    }
    Scribe::configure_read(config);
  }

  void detach_from(caf::io::abstract_broker* ptr) override {
    over();
    Scribe::detach_from(ptr);
  }

private:
  /// Whether a first header (network byte order: the operation, two
  /// padding bytes, flags, then the payload's length) is the handshake
  /// this side expects: a client's where a peer dialled us, a server's
  /// where we dialled.
  bool opens_as_peer(const uint8_t* header) const {
    auto expected = accepted_ ? basp::message_type::client_handshake
                              : basp::message_type::server_handshake;
    auto payload = uint32_t{header[4]} << 24 | uint32_t{header[5]} << 16 |
                   uint32_t{header[6]} << 8 | uint32_t{header[7]};
    return static_cast<basp::message_type>(header[0]) == expected &&
           payload > 0 && payload <= max_handshake_payload;
  }

  static void refused() {
    static std::atomic<uint64_t> count{0};
    warn_every_1000(count, "refused a BASP message whose size or place is "
                           "not a peer's; connection closed");
  }

  void over() {
    if (awaiting_) {
      awaiting_ = false;
      pending_->remove(this);
    }
  }

  guarded_multiplexer& mpx_;
  bool accepted_;
  /// Outlives the multiplexer if need be (scribes may go after it).
  std::shared_ptr<guarded_multiplexer::pending_list> pending_;
  bool header_seen_ = false;
  bool watched_ = false;
  bool awaiting_ = false;
  bool payload_next_ = false;
  uint64_t payloads_ = 0;
};

using plain_scribe = guarded_scribe<write_through_scribe>;
using secure_scribe = guarded_scribe<tls_scribe>;

/// Accepts with close-on-exec and non-blocking set, and tells when no
/// descriptor is left: the listening socket then stays readable, and CAF's
/// acceptor polled it in a busy loop.
class accept_policy {
public:
  bool try_accept(network::native_socket& result, network::native_socket fd) {
    out_of_descriptors_ = false;
    result = ::accept4(fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (result >= 0)
      return true;
    out_of_descriptors_ = errno == EMFILE || errno == ENFILE ||
                          errno == ENOBUFS || errno == ENOMEM;
    result = network::invalid_native_socket;
    return false;
  }

  bool out_of_descriptors() const noexcept { return out_of_descriptors_; }

private:
  bool out_of_descriptors_ = false;
};

/// CAF's doorman_impl with the acceptor above, which pauses for a second
/// when no descriptor is left, and the multiplexer's scribes (TLS when
/// configured).
class peer_doorman final : public caf::io::doorman {
public:
  peer_doorman(guarded_multiplexer& mpx, network::native_socket fd)
      : doorman(network::accept_hdl_from_socket(fd)), mpx_(mpx),
        acceptor_(mpx, fd, *this) {
    // nop
  }

  bool new_connection() override {
    auto fd = acceptor_.accepted_socket();
    if (detached() || !mpx_.admit(fd)) {
      network::close_socket(fd);
      return false;
    }
    auto conn = mpx_.accepted_scribe(fd);
    if (!conn) {
      network::close_socket(fd);
      return false;
    }
    auto hdl = conn->hdl();
    parent()->add_scribe(std::move(conn));
    return doorman::new_connection(&mpx_, hdl);
  }

  void graceful_shutdown() override {
    acceptor_.graceful_shutdown();
    detach(&mpx_, false);
  }

  void launch() override { acceptor_.start(this); }

  std::string addr() const override {
    auto x = network::local_addr_of_fd(acceptor_.fd());
    return x ? *x : std::string{};
  }

  uint16_t port() const override {
    auto x = network::local_port_of_fd(acceptor_.fd());
    return x ? *x : 0;
  }

  void add_to_loop() override { acceptor_.activate(this); }

  void remove_from_loop() override { acceptor_.passivate(); }

private:
  class acceptor final : public network::acceptor {
  public:
    acceptor(guarded_multiplexer& mpx, network::native_socket fd,
             peer_doorman& owner)
        : network::acceptor(mpx, fd), owner_(owner) {
      // nop
    }

    void handle_event(network::operation op) override {
      handle_event_impl(op, policy_);
      if (policy_.out_of_descriptors()) {
        static std::atomic<uint64_t> paused{0};
        warn_every_1000(paused, "no file descriptor left: accepting paused "
                                "for a second");
        owner_.remove_from_loop();
        owner_.mpx_.resume_later(&owner_);
      }
    }

  private:
    accept_policy policy_;
    peer_doorman& owner_;
  };

  guarded_multiplexer& mpx_;
  acceptor acceptor_;
};

/// A peer has `node-timeout` (BASP's connection timeout) to send its
/// handshake, as a peer has to send anything later.
pending_peers::limits limits_for(const caf::actor_system_config& cfg) {
  pending_peers::limits result;
  auto timeout = caf::get_or(cfg, "middleman.connection-timeout",
                             caf::timespan{std::chrono::seconds{10}});
  result.deadline =
      std::max(std::chrono::duration_cast<std::chrono::milliseconds>(timeout),
               std::chrono::milliseconds{1000});
  return result;
}

} // namespace

guarded_multiplexer::guarded_multiplexer(caf::actor_system* sys)
    : loop_multiplexer(sys),
      pending_(std::make_shared<pending_list>(limits_for(sys->config()))) {
  auto& cfg = sys->config();
  if (!cfg.openssl_certificate.empty()) {
    if (auto ctx = tls_context::load(cfg.openssl_certificate, cfg.openssl_key,
                                     cfg.openssl_cafile))
      tls_ = std::move(*ctx);
    else
      tls_error_ = std::move(ctx.error());
  }
}

guarded_multiplexer::~guarded_multiplexer() {
  // nop
}

caf::io::scribe_ptr guarded_multiplexer::make_scribe(network::native_socket fd,
                                                     bool accepting) {
  network::keepalive(fd, true);
  if (!tls_)
    return caf::make_counted<plain_scribe>(*this, accepting, fd);
  auto ssl = tls_->new_session(fd, accepting);
  if (ssl == nullptr)
    return nullptr;
  return caf::make_counted<secure_scribe>(*this, accepting, fd, ssl);
}

caf::io::scribe_ptr guarded_multiplexer::new_scribe(network::native_socket fd) {
  return make_scribe(fd, false);
}

caf::io::scribe_ptr
guarded_multiplexer::accepted_scribe(network::native_socket fd) {
  return make_scribe(fd, true);
}

caf::expected<caf::io::scribe_ptr>
guarded_multiplexer::new_tcp_scribe(const std::string& host, uint16_t port) {
  if (tls_error_)
    return tls_error_;
  auto fd = network::new_tcp_connection(host, port);
  if (!fd)
    return std::move(fd.error());
  if (auto conn = make_scribe(*fd, false))
    return conn;
  network::close_socket(*fd);
  return caf::make_error(caf::sec::cannot_connect_to_node,
                         "cluster TLS: cannot start a session");
}

caf::io::doorman_ptr
guarded_multiplexer::new_doorman(network::native_socket fd) {
  return caf::make_counted<peer_doorman>(*this, fd);
}

caf::expected<caf::io::doorman_ptr>
guarded_multiplexer::new_tcp_doorman(uint16_t port, const char* in,
                                     bool reuse_addr) {
  if (tls_error_)
    return tls_error_;
  return loop_multiplexer::new_tcp_doorman(port, in, reuse_addr);
}

bool guarded_multiplexer::admit(network::native_socket fd) {
  auto address = network::remote_addr_of_fd(fd);
  if (!address || accepts_.admit(*address, handshake_budget::clock::now()))
    return true;
  static std::atomic<uint64_t> refused{0};
  warn_every_1000(refused, "an address opened connections faster than "
                           "peers do; closed at accept");
  return false;
}

void guarded_multiplexer::awaiting_handshake(caf::io::scribe* conn) {
  close_later(pending_->add(conn, conn->addr()));
}

void guarded_multiplexer::resume_later(caf::io::doorman* acceptor) {
  paused_.emplace_back(acceptor);
}

void guarded_multiplexer::on_tick() {
  close_later(pending_->expired());
  if (paused_.empty())
    return;
  // Posted: the pause's removal from epoll may still be queued in this
  // round (under CAF's own loop on_tick runs amid a round's events), and
  // an add now would be lost with it; a posted job also runs a round that
  // applies the add.
  post([this, paused = std::exchange(paused_, {})] {
    for (auto& acceptor : paused)
      if (!acceptor->detached())
        acceptor->add_to_loop();
  });
}

std::vector<pending_peers::key>
guarded_multiplexer::pending_list::add(caf::io::scribe* conn,
                                       const std::string& address) {
  std::lock_guard<std::mutex> guard{mtx_};
  auto now = pending_peers::clock::now();
  auto displaced = peers_.expired(now);
  auto more = peers_.add(conn, address, now);
  displaced.insert(displaced.end(), more.begin(), more.end());
  return displaced;
}

void guarded_multiplexer::pending_list::remove(const caf::io::scribe* conn) {
  std::lock_guard<std::mutex> guard{mtx_};
  peers_.remove(conn);
}

std::vector<pending_peers::key> guarded_multiplexer::pending_list::expired() {
  std::lock_guard<std::mutex> guard{mtx_};
  return peers_.expired(pending_peers::clock::now());
}

void guarded_multiplexer::close_later(std::vector<pending_peers::key> conns) {
  if (conns.empty())
    return;
  static std::atomic<uint64_t> closed{0};
  for (size_t i = 0; i < conns.size(); ++i)
    warn_every_1000(closed, "closed a connection whose peer sent no "
                            "handshake in time or that too many others "
                            "waiting for theirs displaced");
  std::vector<caf::io::scribe_ptr> victims;
  for (auto key : conns)
    victims.emplace_back(static_cast<caf::io::scribe*>(const_cast<void*>(key)));
  post([this, victims = std::move(victims)] {
    for (auto& conn : victims)
      conn->io_failure(this, network::operation::read);
  });
}

} // namespace wsc::net
