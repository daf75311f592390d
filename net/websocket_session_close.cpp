#include "actors/connection.hpp"
#include "loop/loop_coordinator.hpp"
#include "net/connection_quota.hpp"
#include "net/socket_limits.hpp"
#include "net/websocket_session_detail.hpp"
#include "util/log.hpp"

#include <caf/all.hpp>

#include <boost/asio/bind_allocator.hpp>

#include <algorithm>
#include <array>

namespace wsc::net {

namespace {

/// How long a closing connection may take to flush its queue and finish the
/// closing handshake before its socket is shut.
constexpr auto close_grace = std::chrono::seconds(3);

/// The same when the queue was dropped (a failure, an overflow).
constexpr auto close_grace_dropped = std::chrono::seconds(1);

} // namespace

websocket_session::~websocket_session() {
  // Out of the wheel before the memory goes (it may still be in after an
  // abort: the io_context destroying its handlers).
  cancel_timer();
  if (scheduled_close_)
    scheduled_close_->cancel();
  notify_closed();
  --setup_->health->open_connections;
  setup_->quota->release(uid_, address_);
}

void websocket_session::close(uint16_t code, std::string reason) {
  asio::post(socket_.get_executor(), [self = shared_from_this(), code,
                                      reason = std::move(reason)]() mutable {
    self->begin_close(code, reason, false);
  });
}

void websocket_session::close_after(std::chrono::milliseconds after,
                                    uint16_t code, std::string reason) {
  on_socket([self = shared_from_this(),
             deadline = std::chrono::steady_clock::now() + after, code,
             reason = std::move(reason)]() mutable {
    if (self->closing_ || self->shut_down_)
      return;
    if (!self->scheduled_close_)
      self->scheduled_close_ = std::make_unique<scheduled_close>(*self);
    auto& sc = *self->scheduled_close_;
    sc.deadline = deadline;
    sc.code = code;
    sc.reason = std::move(reason);
    sc.arm();
  });
}

// -- closing ------------------------------------------------------------------

void websocket_session::begin_close(uint16_t code, std::string_view reason,
                                    bool drop_queue) {
  if (closing_ || shut_down_)
    return;
  closing_ = true;
  // Keep the frames being written: the socket still reads from them.
  if (drop_queue)
    drop_queued(head_ + writing_frames_);
  push(ws::opcode::close,
       std::make_shared<const std::string>(ws::close_payload(code, reason)),
       false);
  // A reader that never reads would keep the last write and the closing
  // handshake pending forever: shut the socket after a grace period.
  arm_timer(drop_queue ? close_grace_dropped : close_grace);
  // A paused reader reads on (data frames are dropped now) to see the
  // peer's answer.
  if (read_paused_.exchange(false))
    asio::post(socket_.get_executor(),
               [self = shared_from_this()] { self->resume_read(); });
}

void websocket_session::fail(uint16_t code, const char* reason) {
  peer_closed_ = true; // no close frame is awaited after a failure
  if (closing_) {
    if (close_sent_)
      teardown();
    return;
  }
  begin_close(code, reason, true);
}

void websocket_session::teardown() {
  if (shut_down_)
    return;
  shut_down_ = true;
  beast::error_code ignored;
  socket_.shutdown(tcp::socket::shutdown_send, ignored);
  // Both close frames are through: the peer sends nothing more, and the
  // server closes the TCP connection first (RFC 6455 7.1.1).
  if (close_received_)
    return finish();
  // We failed the connection: the peer may still be sending. Reading on
  // until its end lets it read our close frame (closing with unread input
  // would reset the connection instead); the close deadline bounds it.
  notify_closed();
}

void websocket_session::finish() {
  cancel_timer();
  if (scheduled_close_)
    scheduled_close_->cancel();
  // The closing handshake is complete: the peer reads (ours answered its
  // close frame, or its answered ours), so what is left, our answer at
  // most, gets a second; anything else reads nothing and is reset.
  drop_unsent_bytes(socket_, close_sent_ && close_received_
                                 ? std::chrono::milliseconds{1000}
                                 : std::chrono::milliseconds{0});
  // Aborts whatever still waits on the socket; its handler ends here too.
  beast::error_code ignored;
  socket_.close(ignored);
  shut_down_ = true;
  // A paused reader will not see the end of the socket.
  paused_self_.reset();
  unread_.reset();
  notify_closed();
}

void websocket_session::on_actor_down(std::string reason) {
  if (closed_notified_) {
    // The usual end: the actor quit because the socket closed.
    paused_self_.reset();
    return;
  }
  // It threw or was killed: nobody answers the frames read, nobody is left
  // to tell. Close with 1011; the close deadline bounds the rest.
  log::warn("connection actor of uid {} ended while its socket was open: {}",
            uid_, reason);
  closed_notified_ = true;
  begin_close(1011, "internal error", true);
  // A paused session reads no more: the deadline ends it.
  paused_self_.reset();
}

void websocket_session::notify_closed() {
  if (closed_notified_ || !actor_)
    return;
  closed_notified_ = true;
  caf::anon_send(actor_, atom::closed_v);
}

// -- the timer ----------------------------------------------------------------

timer_wheel& websocket_session::wheel() const {
  return timer_wheel::of(
      const_cast<asio::execution_context&>(*socket_context_));
}

void websocket_session::arm_timer(std::chrono::steady_clock::duration after) {
  if (after.count() <= 0)
    return cancel_timer(); // no idle timeout configured
  wheel().arm(*this, after);
}

void websocket_session::cancel_timer() {
  // Never armed: no wheel to look up (the io_context may be going).
  if (generation() != 0)
    wheel().cancel(*this);
}

std::shared_ptr<void> websocket_session::hold() {
  return weak_from_this().lock();
}

void websocket_session::expired(uint32_t generation) {
  // On the wheel's loop: at once where that is the socket's thread, else
  // onto its strand (scheduler-policy=sharing with several io-threads).
  asio::dispatch(socket_.get_executor(),
                 [self = shared_from_this(), generation] {
                   // Armed again or cancelled since: not due any more.
                   if (generation == self->generation())
                     self->on_timer();
                 });
}

void websocket_session::on_timer() {
  if (closing_ || shut_down_)
    return finish(); // the close deadline
  if (deferred_close_.load() != 0)
    return close_deferred(); // answers too slow: close without them
  if (input_seen_) {
    input_seen_ = false;
    ping_sent_ = false;
  } else if (!ping_sent_) {
    ping_sent_ = true;
    push(ws::opcode::ping, std::make_shared<const std::string>(), false);
  } else {
    return finish(); // silent through a ping and a whole idle timeout
  }
  arm_timer(setup_->opts.idle_timeout / 2);
}

} // namespace wsc::net
